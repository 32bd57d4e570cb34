//! Figures of the local plugin through its real HTTP API on a Unix socket:
//! create→running latency, and the cost of one status request while 1,000 pods
//! are tracked. Run: `cargo bench -p interlink-plugin-local --bench local`.
//! Set `BENCH_PODS` to change the number of tracked pods.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink::{PodStatus, RetrievedContainer, RetrievedPodData};
use interlink_plugin_kit::{Listen, serve};
use interlink_plugin_local::{LocalOptions, LocalProvider};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One HTTP/1.1 request over the socket (`Connection: close`); status and body.
fn http(sock: &Path, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(sock).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut rest = &raw[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let n =
            usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return (status, out);
        }
        out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
        rest = &rest[nl + 4 + n..];
    }
}

fn pod(name: &str, cmd: &[&str]) -> Pod {
    let uid = format!("bench-{name}-{}", std::process::id());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid),
            ..Default::default()
        },
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(0),
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox".into()),
                command: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

struct Client(PathBuf);

impl Client {
    fn create(&self, p: &Pod) {
        let d = RetrievedPodData {
            pod: p.clone(),
            containers: vec![RetrievedContainer {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (code, body) = http(&self.0, "POST", "/create", &serde_json::to_vec(&d).unwrap());
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    fn delete(&self, p: &Pod) {
        let (code, _) = http(&self.0, "POST", "/delete", &serde_json::to_vec(p).unwrap());
        assert_eq!(code, 200);
    }
    fn status_raw(&self, body: &[u8]) -> Vec<u8> {
        let (code, out) = http(&self.0, "GET", "/status", body);
        assert_eq!(code, 200);
        out
    }
    fn status(&self, pods: &[Pod]) -> Vec<PodStatus> {
        serde_json::from_slice(&self.status_raw(&serde_json::to_vec(pods).unwrap())).unwrap()
    }
}

fn state_is(
    st: &PodStatus,
    f: impl Fn(&k8s_openapi::api::core::v1::ContainerState) -> bool,
) -> bool {
    st.containers
        .iter()
        .all(|c| c.state.as_ref().is_some_and(&f))
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "{name:<46} n={:<4} mean={:>8.2} ms  p50={:>8.2} ms  p90={:>8.2} ms  max={:>8.2} ms",
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
            let stop = async {
                let _ = stop_rx.await;
            };
            serve(Arc::new(p), Listen::Unix(sock), stop).await.unwrap();
        })
    };
    let t0 = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the plugin did not listen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = Client(sock);
    println!("local plugin through HTTP on a Unix socket (supervisor: interlink-local __shim)");

    // create -> running
    let (mut create, mut running, mut pods) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..30 {
        let p = pod(&format!("lat-{i}"), &["sleep", "30"]);
        let t0 = Instant::now();
        c.create(&p);
        create.push(t0.elapsed());
        while !state_is(&c.status(std::slice::from_ref(&p))[0], |s| {
            s.running.is_some()
        }) {
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
        c.delete(p);
        delete.push(t0.elapsed());
    }
    stats("delete of a running pod (TERM, exits)", delete);

    // status while many pods are tracked
    let n: usize = std::env::var("BENCH_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let t0 = Instant::now();
    let pods: Vec<Pod> = (0..n)
        .map(|i| pod(&format!("many-{i}"), &["true"]))
        .collect();
    for p in &pods {
        c.create(p);
    }
    println!("created {n} pods in {:.2} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    while !c
        .status(&pods)
        .iter()
        .all(|s| state_is(s, |s| s.terminated.is_some()))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "pods did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let body = serde_json::to_vec(&pods).unwrap();
    let (mut full, mut size) = (Vec::new(), 0);
    for _ in 0..30 {
        let t0 = Instant::now();
        size = c.status_raw(&body).len();
        full.push(t0.elapsed());
    }
    stats(&format!("status of all {n} tracked pods (1 request)"), full);
    println!(
        "    request {} KiB, answer {} KiB",
        body.len() / 1024,
        size / 1024
    );
    let one = serde_json::to_vec(std::slice::from_ref(&pods[n / 2])).unwrap();
    let mut single = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        c.status_raw(&one);
        single.push(t0.elapsed());
    }
    stats(&format!("status of 1 pod among {n} tracked"), single);
    let mut live = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        c.status_raw(b"[]");
        live.push(t0.elapsed());
    }
    stats("liveness (status of [])", live);

    let t0 = Instant::now();
    for p in &pods {
        c.delete(p);
    }
    println!("deleted {n} pods in {:.2} s", t0.elapsed().as_secs_f64());
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap();
}
