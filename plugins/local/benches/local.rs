//! Figures of the local plugin through its real HTTP API on a Unix socket:
//! create→running latency, and the cost of one status request while 1,000 pods
//! are tracked. Run: `cargo bench -p interlink-plugin-local --bench local`.
//! Set `BENCH_PODS` to change the number of tracked pods.

use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_plugin_kit::{Listen, serve};
use interlink_plugin_local::{LocalOptions, LocalProvider};
use interlink_test_harness::plugin::{PluginClient, PodBuilder, all_terminated, is_running};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "{name:<48} n={:<5} mean={:>8.2} ms  p50={:>8.2} ms  p90={:>8.2} ms  max={:>8.2} ms",
        v.len(),
        mean,
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bench.sock");
    let opts = LocalOptions {
        shim: Some(env!("CARGO_BIN_EXE_interlink-local").into()),
        ..Default::default()
    };
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let sock = sock.clone();
        rt.spawn(async move {
            let p = LocalProvider::with_options(data, opts).unwrap();
            serve(Arc::new(p), Listen::Unix(sock), async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        })
    };
    interlink_test_harness::wait_for_unix_socket(&sock, Duration::from_secs(10)).unwrap();
    let c = PluginClient::unix(&sock);
    println!(
        "local plugin benchmark (supervisor: interlink-local __shim, debug={})",
        cfg!(debug_assertions)
    );

    // create -> running
    let mut create = Vec::new();
    let mut running = Vec::new();
    let mut pods = Vec::new();
    for i in 0..30 {
        let p = PodBuilder::new(&format!("lat-{i}"))
            .container("main", &["sleep", "30"])
            .grace(0);
        let t0 = Instant::now();
        c.create_ok(&p.data()).unwrap();
        create.push(t0.elapsed());
        loop {
            if is_running(&c.status_of(&p.pod).unwrap(), "main") {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        running.push(t0.elapsed());
        pods.push(p);
    }
    stats("create request", create);
    stats("create -> status says running", running);
    let mut delete = Vec::new();
    for p in &pods {
        let t0 = Instant::now();
        c.delete(&p.pod).unwrap().ok().unwrap();
        delete.push(t0.elapsed());
    }
    stats("delete of a running pod (TERM, sleep exits)", delete);

    // status with many tracked pods
    let n: usize = std::env::var("BENCH_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let t0 = Instant::now();
    let pods: Vec<PodBuilder> = (0..n)
        .map(|i| PodBuilder::new(&format!("many-{i}")).container("main", &["true"]))
        .collect();
    for p in &pods {
        c.create_ok(&p.data()).unwrap();
    }
    println!("created {n} pods in {:.2} s", t0.elapsed().as_secs_f64());
    let all: Vec<_> = pods.iter().map(|p| p.pod.clone()).collect();
    let t0 = Instant::now();
    loop {
        let st = c.status(&all).unwrap();
        if st.iter().all(all_terminated) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "pods did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = serde_json::to_vec(&all).unwrap();
    let mut full = Vec::new();
    let mut size = 0;
    for _ in 0..30 {
        let t0 = Instant::now();
        let r = c
            .request("GET", "/status", Some(&body))
            .unwrap()
            .ok()
            .unwrap();
        full.push(t0.elapsed());
        size = r.body.len();
    }
    stats(
        &format!("status of all {n} tracked pods (one request)"),
        full,
    );
    println!(
        "  request {} KiB, answer {} KiB",
        body.len() / 1024,
        size / 1024
    );
    let one = std::slice::from_ref(&all[n / 2]);
    let mut single = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        c.status(one).unwrap();
        single.push(t0.elapsed());
    }
    stats(&format!("status of 1 pod among {n} tracked"), single);
    let mut live = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        c.request("GET", "/status", Some(b"[]"))
            .unwrap()
            .ok()
            .unwrap();
        live.push(t0.elapsed());
    }
    stats("liveness (status of [])", live);

    let t0 = Instant::now();
    for p in &pods {
        c.delete(&p.pod).unwrap().ok().unwrap();
    }
    println!("deleted {n} pods in {:.2} s", t0.elapsed().as_secs_f64());
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap();
}
