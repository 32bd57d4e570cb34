//! Memory of `/getLogs` on a large log, through the real `interlink-local`
//! binary over HTTP. Prints figures; asserts nothing.
//!
//! A one-container pod runs and ends; its log file (CRI format) is then grown to
//! about 300 MB (BENCH_LOG_MB to change), and the plugin's resident memory
//! (`VmRSS`, and the peak `VmHWM`, from /proc) is read before and after:
//! `Tail: 1`, `Tail: 1000`, `Tail: 1` with a huge `SinceSeconds`, and the whole
//! log streamed (the client counts bytes and keeps none). Target: a `Tail: 1`
//! adds less than 16 MiB.
//!
//! `cargo bench -p interlink-plugin-local --bench logs_tail`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Send a request; answers the status and the body's length, and the body
/// itself when it is at most `keep` bytes (the rest is read and dropped).
fn request(port: u16, method: &str, path: &str, body: &Value, keep: usize) -> (u16, u64, Vec<u8>) {
    let body = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if h.to_ascii_lowercase().starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    let (mut out, mut total) = (Vec::new(), 0u64);
    let mut take = |b: &[u8]| {
        total += b.len() as u64;
        if out.len() + b.len() <= keep {
            out.extend_from_slice(b);
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    if chunked {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz).unwrap();
            let mut n = usize::from_str_radix(sz.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            while n > 0 {
                let got = r.read(&mut buf[..n.min(64 * 1024)]).unwrap();
                assert!(got > 0, "connection closed in a chunk");
                take(&buf[..got]);
                n -= got;
            }
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).unwrap();
        }
    } else {
        loop {
            let got = r.read(&mut buf).unwrap();
            if got == 0 {
                break;
            }
            take(&buf[..got]);
        }
    }
    (code, total, out)
}

/// The plugin process, killed when dropped.
struct Plugin(std::process::Child);

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let log_mb: u64 = std::env::var("BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::Builder::new()
        .prefix("il-local-logbench-")
        .tempdir()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interlink-local"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-root")
        .arg(dir.path().join("root"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let plugin = Plugin(cmd.spawn().expect("start interlink-local"));
    let pid = plugin.0.id();
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "the plugin did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let uid = format!("{:08x}-be4c-4000-8000-000000000001", std::process::id());
    let pod = json!({"metadata": {"name": "logbench", "namespace": "bench", "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo ready"]}]}});
    let (code, _, body) = request(
        port,
        "POST",
        "/create",
        &json!({"pod": pod, "container": []}),
        1 << 20,
    );
    assert_eq!(code, 200, "create: {}", String::from_utf8_lossy(&body));
    // wait for the container to end
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, _, st) = request(port, "GET", "/status", &json!([pod]), 1 << 20);
        let st: Value = serde_json::from_slice(&st).unwrap_or(Value::Null);
        if !st[0]["containers"][0]["state"]["terminated"].is_null() {
            break;
        }
        assert!(Instant::now() < end, "the container did not end: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // grow the container's log to the size asked for
    let log = Path::new(&dir.path().join("root/pods").join(&uid)).join("logs/c.log");
    let t = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("the container's log");
        let mut block = String::new();
        let mut i = 0u64;
        let target = log_mb * 1_000_000;
        let mut written = 0u64;
        while written < target {
            block.clear();
            while block.len() < 1 << 20 {
                block.push_str(&format!(
                    "2026-11-22T07:00:00.{:06}Z stdout F line {i:09} of a large log, padded to about a hundred bytes\n",
                    i % 1_000_000
                ));
                i += 1;
            }
            f.write_all(block.as_bytes()).unwrap();
            written += block.len() as u64;
        }
        f.write_all(b"2026-11-22T07:00:01Z stdout F the last line\n")
            .unwrap();
    }
    let size = std::fs::metadata(&log).unwrap().len();
    println!(
        "log file: {:.1} MB ({} written in {:.1} s)",
        size as f64 / 1e6,
        log.display(),
        t.elapsed().as_secs_f64()
    );

    let logs = |opts: Value, keep: usize| {
        request(
            port,
            "GET",
            "/getLogs",
            &json!({"Namespace": "bench", "PodUID": uid, "PodName": "logbench",
                    "ContainerName": "c", "Opts": opts}),
            keep,
        )
    };
    let (rss0, hwm0) = memory(pid);
    println!(
        "plugin before: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(rss0),
        mib(hwm0)
    );
    for (name, opts) in [
        ("Tail: 1", json!({"Tail": 1})),
        ("Tail: 1000", json!({"Tail": 1000})),
        (
            "Tail: 1, SinceSeconds: 400000000000",
            json!({"Tail": 1, "SinceSeconds": 400_000_000_000i64}),
        ),
        ("whole log (no Tail)", json!({})),
    ] {
        let (rss_b, hwm_b) = memory(pid);
        let t = Instant::now();
        let (code, total, body) = logs(opts, 4096);
        let took = t.elapsed();
        let (rss_a, hwm_a) = memory(pid);
        assert_eq!(code, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let tail = String::from_utf8_lossy(&body);
        println!(
            "{name}: {total} bytes in {:.1} ms; VmRSS {:.1} -> {:.1} MiB (+{:.1}), peak VmHWM {:.1} -> {:.1} MiB (+{:.1}){}",
            took.as_secs_f64() * 1000.0,
            mib(rss_b),
            mib(rss_a),
            mib(rss_a.saturating_sub(rss_b)),
            mib(hwm_b),
            mib(hwm_a),
            mib(hwm_a.saturating_sub(hwm_b)),
            if total < 200 {
                format!("; answer {:?}", tail.trim_end())
            } else {
                String::new()
            }
        );
    }
    let (rss1, hwm1) = memory(pid);
    println!(
        "plugin after all: VmRSS {:.1} MiB, VmHWM {:.1} MiB; growth over the start: RSS +{:.1} MiB, peak +{:.1} MiB",
        mib(rss1),
        mib(hwm1),
        mib(rss1.saturating_sub(rss0)),
        mib(hwm1.saturating_sub(hwm0))
    );
    let _ = request(port, "POST", "/delete", &pod, 1 << 20);
}
