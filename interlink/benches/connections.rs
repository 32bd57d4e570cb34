//! Connection bounds of the API server, measured (figures printed, nothing
//! asserted):
//! - how long N silent sockets take to be closed with `HeaderReadTimeoutSeconds: 1`;
//! - how long a body sent one byte at a time takes to be cut with
//!   `BodyReadTimeoutSeconds: 2`;
//! - descriptors the server holds and the latency of a normal request while
//!   1,000 idle sockets flood a server limited to 64 connections (with a head
//!   bound too long to help), against the same without the flood.
//!
//! The server runs in this process; its descriptors are this process's minus
//! the client sockets the bench holds. Run:
//! `cargo bench -p interlink --bench connections`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use interlink::server::{Server, ServerConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn start(rt: &tokio::runtime::Runtime, yaml: &str) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = ServerConfig::from_yaml_str(yaml).expect("config");
    cfg.interlink_address = "http://127.0.0.1".into();
    cfg.interlink_port = 0;
    cfg.sidecar_url = "http://127.0.0.1".into();
    cfg.sidecar_port = 9;
    cfg.shutdown_grace_seconds = 0.5;
    let server = rt.block_on(Server::bind(cfg)).expect("bind");
    let port = server.local_addr().expect("tcp").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(server.serve(async move {
        let _ = rx.await;
    }));
    (port, tx)
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

/// GET /healthz on a new connection; its latency.
fn healthz(port: u16) -> Duration {
    let t = Instant::now();
    let mut s = connect(port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"), "healthz failed");
    t.elapsed()
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.5), p(0.99))
}

fn reaping(rt: &tokio::runtime::Runtime, n: usize) {
    let (port, stop) = start(rt, "HeaderReadTimeoutSeconds: 1\nMaxConnections: 100000\n");
    let base = open_fds();
    let t = Instant::now();
    let mut socks: Vec<TcpStream> = (0..n).map(|_| connect(port)).collect();
    let opened = t.elapsed();
    let last = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let held = open_fds().saturating_sub(base + n);
    // every client sees EOF: the server closed them all
    let mut buf = [0u8; 16];
    for s in &mut socks {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.read(&mut buf);
    }
    let all_closed = last.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let after = open_fds().saturating_sub(base + n);
    println!(
        "{n} silent sockets (opened in {opened:.2?}): server held {held} descriptors for them 100 ms after; \
         all closed {all_closed:.2?} after the last was opened (bound 1 s); server holds {after} after"
    );
    drop(socks);
    let _ = stop.send(());
}

fn slow_body(rt: &tokio::runtime::Runtime) {
    let (port, stop) = start(rt, "BodyReadTimeoutSeconds: 2\n");
    let mut s = connect(port);
    s.write_all(
        b"POST /create HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 512];
    let status = loop {
        if s.write_all(b" ").is_ok() {
            sent += 1;
        }
        match s.read(&mut buf) {
            Ok(n) if n > 0 => break String::from_utf8_lossy(&buf[..12]).to_string(),
            Ok(_) => break "closed".into(),
            Err(_) if t.elapsed() > Duration::from_secs(30) => break "never cut".into(),
            Err(_) => {}
        }
    };
    println!(
        "body at 1 byte / 200 ms: answered {status:?} after {:.2?} and {sent} bytes (bound 2 s)",
        t.elapsed()
    );
    let _ = stop.send(());
}

fn flood(rt: &tokio::runtime::Runtime, n: usize) {
    let (port, stop) = start(
        rt,
        "HeaderReadTimeoutSeconds: 300\nIdleTimeoutSeconds: 300\nMaxConnections: 64\n",
    );
    for _ in 0..20 {
        healthz(port);
    }
    let quiet: Vec<Duration> = (0..200).map(|_| healthz(port)).collect();
    let base = open_fds();
    let t = Instant::now();
    // the flood is opened by another thread while this one keeps asking
    let flooder = std::thread::spawn(move || {
        let socks: Vec<TcpStream> = (0..n).map(|_| connect(port)).collect();
        (socks, t.elapsed())
    });
    let mut during = Vec::new();
    while !flooder.is_finished() {
        during.push(healthz(port));
        std::thread::sleep(Duration::from_millis(5));
    }
    let (socks, opened) = flooder.join().unwrap();
    if during.is_empty() {
        during.push(healthz(port));
    }
    let loud: Vec<Duration> = (0..200).map(|_| healthz(port)).collect();
    let held = open_fds().saturating_sub(base + n);
    let (q50, q99) = percentiles(quiet);
    let (l50, l99) = percentiles(loud);
    let worst = during.iter().max().copied().unwrap_or_default();
    let (d50, _) = percentiles(during.clone());
    println!(
        "{n} idle sockets against MaxConnections 64 (opened in {opened:.2?}): server holds {held} descriptors for connections; \
         /healthz p50 {q50:?} p99 {q99:?} before the flood; while it was opened: {} requests, p50 {d50:?}, slowest {worst:?}; \
         with it open: p50 {l50:?} p99 {l99:?}",
        during.len()
    );
    drop(socks);
    let _ = stop.send(());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    reaping(&rt, 1000);
    slow_body(&rt);
    flood(&rt, 1000);
}
