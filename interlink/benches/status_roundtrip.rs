//! Round trips through the API server to a plugin, against the same calls made
//! to the plugin directly (the difference is what the server adds):
//! - `/status` with 1,000 and 10,000 pods in one request;
//! - `/create` p50/p99.
//!
//! The plugin is an in-process HTTP server that decodes the request as the
//! plugin kit does (`PodRef`s) and answers a status per pod, like a real one,
//! without a backend behind it. The client sends the body encoded once, as the
//! CRI host's status loop does while its pods do not change.
//! Run: `cargo bench -p interlink --bench status_roundtrip`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use interlink::client::{Client, ClientConfig};
use interlink::server::{Server, ServerConfig};
use interlink::{CreateStruct, PodCreateRequests, PodRef, PodStatus, RetrievedPodData, pod_uid};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("bench-pod-{i}")),
            namespace: Some("default".into()),
            uid: Some(format!("{:08x}-0000-4000-8000-{:012x}", i, i)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox:stable".into()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

async fn plugin_status(body: Bytes) -> axum::Json<Vec<PodStatus>> {
    // what the plugin kit decodes of a `/status` request
    let pods: Vec<PodRef> = serde_json::from_slice(&body).unwrap_or_default();
    // a running container's start time does not change between rounds
    static STARTED: std::sync::OnceLock<jiff::Timestamp> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(jiff::Timestamp::now);
    axum::Json(
        pods.iter()
            .map(|p| PodStatus {
                pod_name: p.name.clone(),
                pod_uid: p.uid.clone(),
                pod_namespace: p.namespace.clone(),
                job_id: "1".into(),
                containers: vec![ContainerStatus {
                    name: "main".into(),
                    image: "busybox:stable".into(),
                    image_id: String::new(),
                    ready: true,
                    restart_count: 0,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                                started,
                            )),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                init_containers: vec![],
            })
            .collect(),
    )
}

async fn plugin_create(body: Bytes) -> axum::Json<CreateStruct> {
    let d: RetrievedPodData = serde_json::from_slice(&body).unwrap_or_default();
    axum::Json(CreateStruct {
        pod_uid: pod_uid(&d.pod).to_string(),
        pod_jid: "42".into(),
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let app = Router::new()
        .route("/status", get(plugin_status).post(plugin_status))
        .route("/create", post(plugin_create))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plugin_port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let server = Server::bind(ServerConfig {
        interlink_port: 0,
        sidecar_url: "http://127.0.0.1".into(),
        sidecar_port: plugin_port,
        max_body_bytes: 256 << 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let server_port = server.local_addr().unwrap().port();
    tokio::spawn(server.serve(std::future::pending()));

    let mk = |port: u16| {
        Client::new(ClientConfig {
            address: "http://127.0.0.1".into(),
            port: Some(port),
            request_timeout: Duration::from_secs(120),
            ..Default::default()
        })
        .unwrap()
    };
    let (direct, via) = (mk(plugin_port), mk(server_port));

    println!("status round trip (one request, N pods), client -> [server ->] plugin over TCP");
    for (n, iters) in [(1_000usize, 40usize), (10_000, 15)] {
        let pods: Vec<Pod> = (0..n).map(pod).collect();
        for c in [&direct, &via] {
            let st = c.status(&pods).await.unwrap();
            assert_eq!(st.len(), n);
        }
        // JSON alone (one side each): encode the pods, decode them (whole and as
        // the kit does), decode the statuses
        let st = direct.status(&pods).await.unwrap();
        let t = Instant::now();
        let pods_json = serde_json::to_vec(&pods).unwrap();
        let enc = t.elapsed();
        let t = Instant::now();
        let _: Vec<Pod> = serde_json::from_slice(&pods_json).unwrap();
        let dec = t.elapsed();
        let t = Instant::now();
        let _: Vec<PodRef> = serde_json::from_slice(&pods_json).unwrap();
        let dec_ref = t.elapsed();
        let st_json = serde_json::to_vec(&st).unwrap();
        let t = Instant::now();
        let _: Vec<PodStatus> = serde_json::from_slice(&st_json).unwrap();
        let dec_st = t.elapsed();
        println!(
            "  {n:>6} pods: JSON alone: encode pods {:.2} ms ({} KiB), decode pods {:.2} ms (as PodRefs {:.2} ms), decode statuses {:.2} ms ({} KiB)",
            ms(enc),
            pods_json.len() / 1024,
            ms(dec),
            ms(dec_ref),
            ms(dec_st),
            st_json.len() / 1024
        );
        // direct and via-server calls alternate, so machine load hits both alike
        let (mut d, mut v) = (Vec::new(), Vec::new());
        let body = interlink::client::encode_pods(&pods).unwrap();
        for _ in 0..iters {
            let t = Instant::now();
            direct.status_encoded(body.clone()).await.unwrap();
            d.push(t.elapsed());
            let t = Instant::now();
            via.status_encoded(body.clone()).await.unwrap();
            v.push(t.elapsed());
        }
        d.sort();
        v.sort();
        println!(
            "  {n:>6} pods: via server p50 {:8.2} ms  max {:8.2} ms | plugin direct p50 {:8.2} ms | server adds p50 {:7.2} ms",
            ms(pct(&v, 0.5)),
            ms(*v.last().unwrap()),
            ms(pct(&d, 0.5)),
            ms(pct(&v, 0.5)) - ms(pct(&d, 0.5)),
        );
    }

    println!("create (one pod), {} calls each", 2000);
    let reqs: Vec<PodCreateRequests> = (0..2200)
        .map(|i| PodCreateRequests {
            pod: pod(i),
            ..Default::default()
        })
        .collect();
    // warm-up
    for r in &reqs[..200] {
        direct.create(r).await.unwrap();
        via.create(r).await.unwrap();
    }
    let (mut d, mut v) = (Vec::new(), Vec::new());
    for r in &reqs[200..] {
        let t = Instant::now();
        direct.create(r).await.unwrap();
        d.push(t.elapsed());
        let t = Instant::now();
        via.create(r).await.unwrap();
        v.push(t.elapsed());
    }
    d.sort();
    v.sort();
    println!(
        "  via server:    p50 {:.3} ms  p99 {:.3} ms\n  plugin direct: p50 {:.3} ms  p99 {:.3} ms\n  server adds:   p50 {:.3} ms  p99 {:.3} ms",
        ms(pct(&v, 0.5)),
        ms(pct(&v, 0.99)),
        ms(pct(&d, 0.5)),
        ms(pct(&d, 0.99)),
        ms(pct(&v, 0.5)) - ms(pct(&d, 0.5)),
        ms(pct(&v, 0.99)) - ms(pct(&d, 0.99)),
    );
}
