//! What the Slurm plugin's benchmarks share: find the cluster of
//! scripts/slurm-start.sh, start the real `interlink-slurm` on it, and a small
//! HTTP/1.1 client for its API.
//!
//! (The local plugin's `logs_tail` bench has its own copy of the client: bench
//! targets of different crates share no module, and the test harness crate
//! cannot be its dev-dependency: the harness depends on `interlink-cri`, which
//! depends on `interlink-plugin-local`.)

#![allow(dead_code)] // each bench uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The cluster's config (`$SLURM_CONF`, else the one of scripts/slurm-start.sh)
/// if its controller answers; else prints `SKIP: ...` and gives `None`.
pub fn slurm_conf() -> Option<PathBuf> {
    let conf = std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/slurm-local/cluster/etc/slurm.conf"));
    let up = Command::new("scontrol")
        .arg("ping")
        .env("SLURM_CONF", &conf)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"));
    if !conf.exists() || !up {
        println!(
            "SKIP: no Slurm controller answers with SLURM_CONF={} (run scripts/slurm-start.sh)",
            conf.display()
        );
        return None;
    }
    Some(conf)
}

/// The plugin process, killed when dropped.
pub struct Plugin(pub std::process::Child);

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `interlink-slurm` for the cluster of `conf` (container runtime
/// `none`, no status cache) with its data under `dir`, on a free port; wait
/// until it listens. Answers the process and the port.
pub fn start_plugin(conf: &Path, dir: &Path) -> (Plugin, u16) {
    let cfg = dir.join("plugin.yaml");
    std::fs::write(
        &cfg,
        format!(
            "slurm:\n  container_runtime: none\n  slurm_conf: {}\n  status_cache_ms: 0\n",
            conf.display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interlink-slurm"));
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--data-root")
    .arg(dir.join("root"))
    .env("RUST_LOG", "warn")
    .stdin(std::process::Stdio::null());
    let plugin = Plugin(cmd.spawn().expect("start interlink-slurm"));
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "the plugin did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (plugin, port)
}

/// Send a request; answers the status and the body's length, and the body
/// itself when it is at most `keep` bytes (the rest is read and dropped).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: &Value,
    keep: usize,
) -> (u16, u64, Vec<u8>) {
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
