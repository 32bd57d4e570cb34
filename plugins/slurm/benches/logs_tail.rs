//! Memory of `/getLogs` on a large log, through the real `interlink-slurm` on
//! the local cluster (scripts/slurm-start.sh). Prints figures; asserts nothing.
//!
//! A one-container pod runs and ends; its log file is then grown to about
//! 300 MB (BENCH_LOG_MB to change) of timestamped lines, and the plugin's
//! resident memory (`VmRSS`, and the peak `VmHWM`, from /proc) is read before
//! and after: `Tail: 1`, `Tail: 1000`, `Tail: 1` with a huge `SinceSeconds`,
//! and the whole log streamed (the client counts bytes and keeps none).
//! Target: a `Tail: 1` adds less than 16 MiB.
//!
//! `cargo bench -p interlink-plugin-slurm --bench logs_tail`

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::request;

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
    let Some(conf) = common::slurm_conf() else {
        return;
    };
    let log_mb: u64 = std::env::var("BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::Builder::new()
        .prefix("il-slurm-logbench-")
        .tempdir()
        .unwrap();
    let (plugin, port) = common::start_plugin(&conf, dir.path());
    let pid = plugin.0.id();

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
    // wait for the job to end
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, _, st) = request(port, "GET", "/status", &json!([pod]), 1 << 20);
        let st: Value = serde_json::from_slice(&st).unwrap_or(Value::Null);
        if !st[0]["containers"][0]["state"]["terminated"].is_null() {
            break;
        }
        assert!(Instant::now() < end, "the job did not end: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // grow the container's log to the size asked for
    let log = Path::new(&dir.path().join("root/pods").join(&uid)).join("containers/c.log");
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
                    "2026-11-22T07:00:00.{:06}Z line {i:09} of a large log, padded to about a hundred bytes ........\n",
                    i % 1_000_000
                ));
                i += 1;
            }
            f.write_all(block.as_bytes()).unwrap();
            written += block.len() as u64;
        }
        f.write_all(b"2026-11-22T07:00:01Z the last line\n")
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
