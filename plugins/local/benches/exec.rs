//! Exec through the interLink exec extension with the local plugin: the
//! latency of an exec probe (`true`, run to its exit status, as an ExecSync
//! does) and of opening an exec session (WebSocket open through every hop),
//! p50/p99, straight to the plugin and through the `interlink` API server
//! (both in process, each on a Unix socket; a new connection per exec, as a
//! probe makes). Run: `cargo bench -p interlink-plugin-local --bench exec`.
//! Set `BENCH_EXECS` to change the number of execs (default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink::client::{Client, ClientConfig};
use interlink::exec::{ExecRequest, ExitStatus, Target};
use interlink::server::{Server, ServerConfig};
use interlink::{RetrievedContainer, RetrievedPodData};
use interlink_plugin_kit::{Listen, serve};
use interlink_plugin_local::LocalProvider;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const UID: &str = "6d1f8a2e-0b7c-4e55-9d3a-2f1e0c9b8a70";

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("exec-bench".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(0),
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox".into()),
                command: Some(vec!["sleep".into(), "600".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what:<52} n={:<5} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.99),
        v[v.len() - 1]
    );
}

async fn measure(client: &Client, req: &ExecRequest, n: usize, via: &str) {
    // warm up (the first exec pays for program lookups and page faults)
    for _ in 0..5 {
        let s = client.exec(req).await.unwrap();
        s.output.collect(1 << 20).await.unwrap();
    }
    let (mut setup, mut whole) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let s = client.exec(req).await.expect("exec");
        setup.push(t.elapsed());
        let o = s.output.collect(1 << 20).await.expect("exit status");
        whole.push(t.elapsed());
        assert_eq!(o.status, ExitStatus::Success);
    }
    report(&format!("session open ({via})"), setup);
    report(&format!("exec `true` to exit status ({via})"), whole);
}

fn main() {
    let n: usize = std::env::var("BENCH_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin_sock = dir.path().join("plugin.sock");
    let api_sock = dir.path().join("api.sock");
    rt.block_on(async {
        let provider = Arc::new(LocalProvider::new(dir.path().join("data")).unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let plugin = tokio::spawn(serve(
            provider.clone(),
            Listen::Unix(plugin_sock.clone()),
            async {
                let _ = stop_rx.await;
            },
        ));
        while !plugin_sock.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let server = Server::bind(ServerConfig {
            interlink_address: format!("unix://{}", api_sock.display()),
            interlink_port: 0,
            sidecar_url: format!("unix://{}", plugin_sock.display()),
            sidecar_port: 0,
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::spawn(server.serve(std::future::pending()));
        let client_of = |sock: &std::path::Path| {
            Client::new(ClientConfig {
                address: format!("unix://{}", sock.display()),
                port: None,
                ..Default::default()
            })
            .unwrap()
        };
        let direct = client_of(&plugin_sock);
        let via_api = client_of(&api_sock);

        let data = RetrievedPodData {
            pod: pod(),
            containers: vec![RetrievedContainer {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = data.pod.clone();
        via_api
            .create(&interlink::PodCreateRequests {
                pod: data.pod,
                ..Default::default()
            })
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = via_api.status(std::slice::from_ref(&p)).await.unwrap();
            let running = st
                .iter()
                .flat_map(|s| &s.containers)
                .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            if running {
                break;
            }
            assert!(Instant::now() < deadline, "the pod did not start: {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let req = ExecRequest {
            target: Target {
                pod_uid: UID.into(),
                namespace: "default".into(),
                pod_name: "exec-bench".into(),
            },
            container: "main".into(),
            command: vec!["true".into()],
            tty: false,
            stdin: false,
        };
        println!("exec through the local plugin, {n} execs each, one connection per exec");
        measure(&direct, &req, n, "plugin directly").await;
        measure(&via_api, &req, n, "through the API server").await;
        via_api.delete(&p).await.unwrap();
        let _ = stop_tx.send(());
        let _ = plugin.await;
    });
}
