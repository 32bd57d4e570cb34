//! Benchmark of `interlink-slurm` on the local cluster (scripts/slurm-start.sh),
//! through its HTTP API. Prints figures; asserts nothing about time.
//!
//! 1. create -> running latency of a one-container pod (container runtime `none`);
//! 2. the cost of one status request for 1,000 tracked pods (held jobs), and how
//!    many `squeue` calls it made (one, whatever the number of pods).
//!
//! `cargo bench -p interlink-plugin-slurm --bench slurm` (BENCH_PODS=N to change 1,000).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

fn request(port: u16, method: &str, path: &str, body: &Value) -> (u16, Vec<u8>) {
    let (code, _, body) = common::request(port, method, path, body, usize::MAX);
    (code, body)
}

fn uid(i: usize) -> String {
    format!("{:08x}-be4c-4000-8000-{:012x}", std::process::id(), i)
}

fn pod(i: usize, script: &str, flags: &str) -> Value {
    json!({"metadata": {"name": format!("bench-{i}"), "namespace": "bench", "uid": uid(i),
                        "annotations": {"slurm-job.vk.io/flags": flags}},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}})
}

fn squeue_calls(port: u16) -> u64 {
    let (_, body) = request(port, "GET", "/metrics", &Value::Null);
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("interlink_plugin_slurm_squeue_calls_total"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "{name}: n={} min={:.1} ms median={:.1} ms mean={:.1} ms max={:.1} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        mean,
        ms(v[v.len() - 1])
    );
}

/// Run `f` over `items` on `threads` threads.
fn par<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    f(&items[i]);
                }
            });
        }
    });
}

fn main() {
    let Some(conf) = common::slurm_conf() else {
        return;
    };
    let n_pods: usize = std::env::var("BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::Builder::new()
        .prefix("il-slurm-bench-")
        .tempdir()
        .unwrap();
    let (_plugin, port) = common::start_plugin(&conf, dir.path());
    bench_latency(port);
    bench_status(port, n_pods, &conf);
}

fn bench_latency(port: u16) {
    let rounds = 8;
    let mut create = Vec::new();
    let mut to_running = Vec::new();
    for i in 0..rounds {
        let p = pod(100_000 + i, "sleep 30", "");
        let t0 = Instant::now();
        let (code, body) = request(port, "POST", "/create", &json!({"pod": p, "container": []}));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        create.push(t0.elapsed());
        loop {
            let (_, body) = request(port, "GET", "/status", &json!([p]));
            let st: Value = serde_json::from_slice(&body).unwrap();
            if !st[0]["containers"][0]["state"]["running"].is_null() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "pod never ran: {st}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        to_running.push(t0.elapsed());
        request(port, "POST", "/delete", &p);
    }
    println!("== create -> running (one-container pod, runtime none, one job at a time)");
    stats("POST /create (script + sbatch)", create);
    stats("create -> container running", to_running);
}

fn bench_status(port: u16, n: usize, conf: &Path) {
    println!("== status with {n} tracked pods (held jobs, pending in the queue)");
    let pods: Vec<Value> = (0..n).map(|i| pod(i, "true", "--hold")).collect();
    let t0 = Instant::now();
    par(&pods, 4, |p| {
        let (code, body) = request(port, "POST", "/create", &json!({"pod": p, "container": []}));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    });
    let took = t0.elapsed();
    println!(
        "created {n} pods in {:.2} s ({:.0} pods/s, 4 clients)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    let body = json!(pods);
    let mut times = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let before = squeue_calls(port);
        let t = Instant::now();
        let (code, out) = request(port, "GET", "/status", &body);
        times.push(t.elapsed());
        calls.push(squeue_calls(port) - before);
        assert_eq!(code, 200);
        let st: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(st.as_array().unwrap().len(), n);
    }
    stats(&format!("GET /status of {n} pods"), times);
    println!("squeue calls per status request: {calls:?}");
    let mut sq = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let o = Command::new("squeue")
            .arg("--json")
            .env("SLURM_CONF", conf)
            .output()
            .unwrap();
        sq.push(t.elapsed());
        size = o.stdout.len();
    }
    stats(
        &format!("squeue --json alone ({} KiB of JSON)", size / 1024),
        sq,
    );

    let t0 = Instant::now();
    par(&pods, 4, |p| {
        request(port, "POST", "/delete", p);
    });
    println!("deleted {n} pods in {:.2} s", t0.elapsed().as_secs_f64());
}
