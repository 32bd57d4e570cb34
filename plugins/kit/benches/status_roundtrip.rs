//! Round trips through the interLink API server to a plugin served by this
//! kit, against the same calls made to the plugin directly (the difference is
//! what the server adds):
//! - `/status` with 1,000 and 10,000 pods in one request, two ways:
//!   - *steady*: what a CRI host's status loop sends round after round while
//!     nothing changes: the same request body, the same statuses; the client
//!     decodes only statuses whose JSON it has not seen (as the host does);
//!   - *all changed*: every round another body (the pods in another order)
//!     and every status different (a new job id): nothing can be reused.
//! - `/create` p50/p99.
//!
//! Everything is the real code (client, API server, the kit's HTTP layer and
//! its memo) but the provider: a backend double that answers a running
//! container per pod, as a provider with nothing to ask a backend would.
//! Run: `cargo bench -p interlink-plugin-kit --bench status_roundtrip`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interlink::client::{Client, ClientConfig};
use interlink::server::{Server, ServerConfig};
use interlink::{
    CreateStruct, LogStruct, PingResponse, PodCreateRequests, PodRef, PodStatus, RetrievedPodData,
    StatusAnswer, pod_uid,
};
use interlink_plugin_kit::metrics::Metrics;
use interlink_plugin_kit::serve::{ServeOptions, router};
use interlink_plugin_kit::{LogStream, PluginError, Provider};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio_util::sync::CancellationToken;

/// Backend double: every pod runs one container, started at a fixed time;
/// the job id is `generation` (the bench bumps it to change every status).
struct Answering {
    generation: AtomicU64,
    started: jiff::Timestamp,
}

impl Provider for Answering {
    async fn create(&self, d: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        Ok(CreateStruct {
            pod_uid: pod_uid(&d.pod).to_string(),
            pod_jid: "42".into(),
        })
    }
    async fn delete(&self, _: Pod) -> Result<(), PluginError> {
        Ok(())
    }
    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        let job = self.generation.load(Ordering::Relaxed).to_string();
        Ok(pods
            .iter()
            .map(|p| PodStatus {
                pod_name: p.name.clone(),
                pod_uid: p.uid.clone(),
                pod_namespace: p.namespace.clone(),
                job_id: job.clone(),
                containers: p
                    .containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        image: c.image.clone(),
                        ready: true,
                        state: Some(ContainerState {
                            running: Some(ContainerStateRunning {
                                started_at: Some(Time(self.started)),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                init_containers: vec![],
            })
            .collect())
    }
    async fn logs(&self, _: LogStruct) -> Result<LogStream, PluginError> {
        Err(PluginError::NotFound("no logs here".into()))
    }
    async fn ping(&self) -> Result<PingResponse, PluginError> {
        Ok(PingResponse::default())
    }
}

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

/// What a polling client keeps between rounds: the hashes of the statuses it
/// has decoded (the CRI host keeps more, see its `status_loop::Settled`).
#[derive(Default)]
struct Poller {
    seen: HashSet<u64>,
}

impl Poller {
    /// Decode the statuses not seen last round; answers how many.
    fn take(&mut self, answer: &StatusAnswer) -> usize {
        let mut seen = HashSet::with_capacity(answer.len());
        let mut decoded = 0;
        for raw in answer.raw() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            raw.hash(&mut h);
            let h = h.finish();
            if !self.seen.contains(&h) {
                let s = StatusAnswer::decode(raw).expect("a PodStatus");
                std::hint::black_box(s);
                decoded += 1;
            }
            seen.insert(h);
        }
        self.seen = seen;
        decoded
    }
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
    let provider = Arc::new(Answering {
        generation: AtomicU64::new(0),
        started: jiff::Timestamp::now(),
    });
    let app = router(
        provider.clone(),
        &ServeOptions {
            max_body_bytes: 256 << 20,
            ..Default::default()
        },
        Metrics::new(),
        CancellationToken::new(),
    );
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

    println!("status round trip (one request, N pods), client -> [server ->] kit plugin over TCP");
    for (n, iters) in [(1_000usize, 40usize), (10_000, 15)] {
        let pods: Vec<Pod> = (0..n).map(pod).collect();
        let reversed: Vec<Pod> = pods.iter().rev().cloned().collect();
        let body = interlink::client::encode_pods(&pods).unwrap();
        let other = interlink::client::encode_pods(&reversed).unwrap();
        // JSON alone: what the memos save, one side each
        let st = direct.status(&pods).await.unwrap();
        assert_eq!(st.len(), n);
        let t = Instant::now();
        let _: Vec<PodRef> = serde_json::from_slice(&body).unwrap();
        let dec_ref = t.elapsed();
        let st_json = serde_json::to_vec(&st).unwrap();
        let t = Instant::now();
        let _: Vec<PodStatus> = serde_json::from_slice(&st_json).unwrap();
        let dec_st = t.elapsed();
        let t = Instant::now();
        let split = StatusAnswer::parse(st_json.clone().into()).unwrap();
        let split_st = t.elapsed();
        assert_eq!(split.len(), n);
        println!(
            "  {n:>6} pods: JSON alone: request {} KiB, decode as PodRefs {:.2} ms | answer {} KiB, decode {:.2} ms, split {:.2} ms",
            body.len() / 1024,
            ms(dec_ref),
            st_json.len() / 1024,
            ms(dec_st),
            ms(split_st),
        );

        for steady in [true, false] {
            let (mut d, mut v) = (Vec::new(), Vec::new());
            let (mut pd, mut pv) = (Poller::default(), Poller::default());
            let (mut decoded, mut calls) = (0, 0);
            // one warm-up round, then measured ones; direct and via-server
            // calls alternate, so machine load hits both alike
            for i in 0..=iters {
                for (c, p, times) in [(&direct, &mut pd, &mut d), (&via, &mut pv, &mut v)] {
                    calls += 1;
                    let b = if steady || calls % 2 == 0 {
                        &body
                    } else {
                        &other
                    };
                    if !steady {
                        provider.generation.fetch_add(1, Ordering::Relaxed);
                    }
                    let t = Instant::now();
                    let a = c.status_answer(b.clone()).await.unwrap();
                    let k = p.take(&a);
                    let took = t.elapsed();
                    assert_eq!(a.len(), n);
                    if i > 0 {
                        times.push(took);
                        decoded += k;
                    }
                }
            }
            d.sort();
            v.sort();
            println!(
                "  {n:>6} pods, {:<11}: via server p50 {:8.2} ms  max {:8.2} ms | plugin direct p50 {:8.2} ms | server adds p50 {:7.2} ms | statuses decoded per call {}",
                if steady { "steady" } else { "all changed" },
                ms(pct(&v, 0.5)),
                ms(*v.last().unwrap()),
                ms(pct(&d, 0.5)),
                ms(pct(&v, 0.5)) - ms(pct(&d, 0.5)),
                decoded / (2 * iters),
            );
        }
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
