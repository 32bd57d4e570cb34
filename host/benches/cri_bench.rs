//! CRI host benchmarks (printed figures, nothing asserted):
//! - ListContainers / ContainerStatus p50/p99 over the real gRPC socket with
//!   1,000 and 10,000 tracked containers, and an empty call (`Version`) as floor;
//! - lifecycle throughput (runp + create + start + remote create + stop + rm) on
//!   the embedded backend (API server + local plugin in process);
//! - memory per tracked pod (RSS growth over 10,000 pods);
//! - CPU of one status round at 10,000 pods, as a share of a core at 1 s interval;
//! - ContainerStatus p50/p99 while a 10 ms state-mapping hook runs on the
//!   status path without pause (hooks run outside the store lock).
//!
//! `cargo bench -p interlink-cri --bench cri_bench` (all), or one part with
//! `-- reads`, `-- status-loop`, `-- slow-hook`, `-- lifecycle`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use interlink::{CreateStruct, LogStruct, PodCreateRequests, PodStatus};
use interlink_cri::config::Config;
use interlink_cri::hooks::{Hooks, NoHooks, StateDecision, StateInput};
use interlink_cri::proto::runtime::v1 as cri;
use interlink_cri::proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use interlink_cri::remote::{PodList, Remote, RemoteResult};
use interlink_cri::runtime::Runtime;
use interlink_cri::store::{Container, Kind, Phase, RemotePod, Sandbox, Store};
use k8s_openapi::api::core::v1 as k8s;
use tonic::transport::Channel;

mod common;
use common::{connect, cpu_time, pct, rss_bytes};

/// A remote whose `/status` costs what the client's would: JSON out, JSON in.
struct JsonRemote {
    answer: std::sync::Mutex<Vec<u8>>,
}

impl Remote for JsonRemote {
    fn create(&self, _r: PodCreateRequests) -> BoxFuture<'_, RemoteResult<CreateStruct>> {
        Box::pin(async { Ok(CreateStruct::default()) })
    }
    fn delete(&self, _p: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn status(&self, pods: Arc<PodList>) -> BoxFuture<'_, RemoteResult<interlink::StatusAnswer>> {
        Box::pin(async move {
            let body = pods.json().unwrap();
            std::hint::black_box(body);
            let a = self.answer.lock().unwrap().clone();
            Ok(interlink::StatusAnswer::parse(a.into()).unwrap())
        })
    }
    fn logs(&self, _r: LogStruct, _m: usize) -> BoxFuture<'_, RemoteResult<Bytes>> {
        Box::pin(async { Ok(Bytes::new()) })
    }
    fn logs_follow(
        &self,
        _r: LogStruct,
    ) -> BoxFuture<'_, RemoteResult<BoxStream<'static, RemoteResult<Bytes>>>> {
        Box::pin(async {
            Ok(Box::pin(futures::stream::empty()) as BoxStream<'static, RemoteResult<Bytes>>)
        })
    }
    fn ping(&self) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn update_cache(&self, _p: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

fn kubelet_like_pod(i: usize) -> cri::PodSandboxConfig {
    let name = format!("pod-{i}");
    let uid = uuid::Uuid::new_v4().to_string();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            namespace: "default".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: format!("/var/log/pods/default_{name}_{uid}"),
        labels: [
            ("io.kubernetes.pod.name", name.as_str()),
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.uid", uid.as_str()),
            ("app", "bench"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: [
            ("kubernetes.io/config.seen", "2026-11-22T08:00:00Z"),
            ("kubernetes.io/config.source", "api"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    }
}

fn kubelet_like_container(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), "sleep 3600".into()],
        envs: (0..8)
            .map(|i| cri::KeyValue {
                key: format!("ENV_{i}"),
                value: format!("value-{i}").into_bytes(),
            })
            .collect(),
        mounts: vec![cri::Mount {
            container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            host_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access"
                .into(),
            readonly: true,
            ..Default::default()
        }],
        labels: [
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", "pod"),
            ("io.kubernetes.pod.namespace", "default"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: [
            ("io.kubernetes.container.hash", "1a2b3c4d"),
            ("io.kubernetes.container.restartCount", "0"),
            (
                "io.kubernetes.container.terminationMessagePath",
                "/dev/termination-log",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// Fill the store with `n` running pods of one container each, as after their `/create`.
fn populate(store: &Store, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    store.update(|st, _| {
        for i in 0..n {
            let cfg = kubelet_like_pod(i);
            let sid = interlink_cri::ids::new_id();
            let cid = interlink_cri::ids::new_id();
            let uid = cfg.metadata.as_ref().unwrap().uid.clone();
            st.remotes.insert(
                uid.clone(),
                RemotePod {
                    uid: uid.clone(),
                    sandbox_id: sid.clone(),
                    name: format!("pod-{i}"),
                    namespace: "default".into(),
                    kind: Kind::Regular,
                    containers: vec![cid.clone()],
                    phase: Phase::Created,
                    job_id: format!("{i}"),
                    grace_seconds: None,
                    send_after: 0,
                    finished: false,
                },
            );
            st.sandboxes.insert(
                sid.clone(),
                Sandbox {
                    id: sid.clone(),
                    config: cfg,
                    created_at: 1,
                    ready: true,
                    runtime_handler: "interlink".into(),
                    uid: uid.clone(),
                    batches: 0,
                    main_used: true,
                    ip: String::new(),
                },
            );
            st.containers.insert(
                cid.clone(),
                Container {
                    id: cid.clone(),
                    sandbox_id: sid,
                    config: kubelet_like_container("main"),
                    kind: Kind::Regular,
                    image_ref: "docker.io/library/busybox:latest".into(),
                    image_id: interlink_cri::images::image_id("docker.io/library/busybox:latest"),
                    created_at: 1,
                    started_at: 2,
                    finished_at: 0,
                    state: interlink_cri::states::ContainerState::Running,
                    exit_code: 0,
                    reason: String::new(),
                    message: String::new(),
                    remote_uid: Some(uid),
                    spec: None,
                    log_file: None,
                    log_offset: 0,
                    log_done: true,
                    stop_requested: false,
                    remote_seen: 0,
                    rev: 0,
                    admitted: None,
                },
            );
            ids.push(cid);
        }
    });
    ids
}

/// A client codec that keeps a `ListContainers` answer as its bytes.
struct RawCodec;

struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = cri::ListContainersRequest;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<cri::ListContainersRequest>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(tonic::codec::BufferSettings::default())
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

fn bench_runtime(dir: &std::path::Path, remote: Arc<dyn Remote>) -> Arc<Runtime> {
    let cfg = Config {
        data_root_folder: dir.to_path_buf(),
        status_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    Runtime::new(cfg, Store::in_memory(), Arc::new(NoHooks), remote)
}

async fn reads(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let rt = bench_runtime(
        dir.path(),
        Arc::new(JsonRemote {
            answer: Default::default(),
        }),
    );
    let ids = populate(&rt.store, n);
    let sock = dir.path().join("cri.sock");
    let l = interlink_cri::server::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(interlink_cri::server::serve(rt.clone(), l, async move {
        let _ = rx.await;
    }));
    let channel = connect(&sock).await;
    let mut c = RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(256 << 20);
    // the same call with the answer kept as bytes: the transfer without the decoding
    let mut raw = tonic::client::Grpc::new(channel).max_decoding_message_size(256 << 20);
    let mut transfer_all = vec![];
    let iters = if n >= 10_000 { 200 } else { 1000 };
    let mut floor = vec![];
    let mut status = vec![];
    let mut list_all = vec![];
    let mut list_one = vec![];
    let mut decode_all = vec![];
    for i in 0..iters {
        let t = Instant::now();
        c.version(cri::VersionRequest::default()).await.unwrap();
        floor.push(t.elapsed());
        let t = Instant::now();
        c.container_status(cri::ContainerStatusRequest {
            container_id: ids[i * 7919 % n].clone(),
            verbose: false,
        })
        .await
        .unwrap();
        status.push(t.elapsed());
        let t = Instant::now();
        c.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: ids[i * 104729 % n].clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        list_one.push(t.elapsed());
        if i < 100 {
            let t = Instant::now();
            let r = c
                .list_containers(cri::ListContainersRequest::default())
                .await
                .unwrap()
                .into_inner();
            list_all.push(t.elapsed());
            assert_eq!(r.containers.len(), n);
            // what the client's decoding alone costs of that
            let wire = prost::Message::encode_to_vec(&r);
            let t = Instant::now();
            let d: cri::ListContainersResponse = prost::Message::decode(&wire[..]).unwrap();
            decode_all.push(t.elapsed());
            assert_eq!(d.containers.len(), n);
            raw.ready().await.unwrap();
            let t = Instant::now();
            let bytes = raw
                .unary(
                    tonic::Request::new(cri::ListContainersRequest::default()),
                    http::uri::PathAndQuery::from_static(
                        "/runtime.v1.RuntimeService/ListContainers",
                    ),
                    RawCodec,
                )
                .await
                .unwrap()
                .into_inner();
            transfer_all.push(t.elapsed());
            assert_eq!(bytes.len(), wire.len());
        }
    }
    println!(
        "reads @ {n:>6} containers: Version (floor) p50 {:>7.1?} p99 {:>7.1?} | ContainerStatus p50 {:>7.1?} p99 {:>7.1?} | ListContainers(id filter) p50 {:>7.1?} p99 {:>7.1?} | ListContainers(all {n}) p50 {:>7.1?} p99 {:>7.1?}",
        pct(&mut floor, 0.5),
        pct(&mut floor, 0.99),
        pct(&mut status, 0.5),
        pct(&mut status, 0.99),
        pct(&mut list_one, 0.5),
        pct(&mut list_one, 0.99),
        pct(&mut list_all, 0.5),
        pct(&mut list_all, 0.99)
    );
    // the server's own part of ListContainers(all): the answer assembled from
    // the containers' encoded entries and copied into one buffer, as the codec does
    let cache = interlink_cri::cri::list_wire::WireCache::default();
    let mut server_part = vec![];
    for _ in 0..100 {
        let t = Instant::now();
        let wire = cache.list(&rt.store.read(), None).to_vec();
        server_part.push(t.elapsed());
        assert!(!wire.is_empty());
    }
    println!(
        "reads @ {n:>6} containers: of ListContainers(all), the client's protobuf decoding alone p50 {:>7.1?}; the server's assembling of the answer p50 {:>7.1?}; the whole call with the answer kept as bytes (no decoding) p50 {:>7.1?}",
        pct(&mut decode_all, 0.5),
        pct(&mut server_part, 0.5),
        pct(&mut transfer_all, 0.5)
    );
    let _ = tx.send(());
    let _ = srv.await;
}

fn memory() {
    let store = Store::in_memory();
    // warm the allocator
    populate(&store, 1000);
    let before = rss_bytes();
    let n = 10_000;
    populate(&store, n);
    let after = rss_bytes();
    println!(
        "memory: {:.1} KiB RSS per tracked pod (sandbox + 1 container + remote-pod record, kubelet-like labels/env/mounts; {n} pods)",
        (after.saturating_sub(before)) as f64 / n as f64 / 1024.0
    );
}

async fn status_loop_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(JsonRemote {
        answer: Default::default(),
    });
    let rt = bench_runtime(dir.path(), remote.clone());
    let n = 10_000;
    populate(&rt.store, n);
    // the answer a plugin gives: every pod running
    let pods = rt.polled.get(&rt.store);
    let answer: Vec<PodStatus> = pods
        .iter()
        .map(|p| PodStatus {
            pod_name: p.metadata.name.clone().unwrap(),
            pod_uid: p.metadata.uid.clone().unwrap(),
            pod_namespace: "default".into(),
            job_id: "1".into(),
            containers: vec![k8s::ContainerStatus {
                name: "main".into(),
                image: "busybox".into(),
                ready: true,
                state: Some(k8s::ContainerState {
                    running: Some(k8s::ContainerStateRunning { started_at: None }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            init_containers: vec![],
        })
        .collect();
    *remote.answer.lock().unwrap() = serde_json::to_vec(&answer).unwrap();
    let mut settled = interlink_cri::status_loop::Settled::default();
    // rounds 1 and 2 decode every status (the first decides, the second finds
    // nothing to do); then steady rounds, where nothing changes
    for (what, rounds) in [("first 2 rounds", 2u32), ("steady", 10)] {
        let c0 = cpu_time();
        let t0 = Instant::now();
        let (mut t_build, mut t_remote, mut t_apply) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut decoded = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let pods = rt.polled.get(&rt.store);
            t_build += t.elapsed();
            let t = Instant::now();
            let answer = rt.remote.status(pods).await.unwrap();
            t_remote += t.elapsed();
            let t = Instant::now();
            decoded += interlink_cri::status_loop::apply_answer(&rt, &answer, &mut settled).decoded;
            t_apply += t.elapsed();
        }
        let cpu = (cpu_time() - c0) / rounds;
        let wall = t0.elapsed() / rounds;
        println!(
            "status loop @ {n} pods, {what}: {cpu:.1?} CPU ({wall:.1?} wall) per round = {:.1}% of a core at StatusInterval 1s; of which building the request {:.1?}, the client's share (JSON encode + split) {:.1?}, applying the answer {:.1?} ({} statuses decoded per round)",
            cpu.as_secs_f64() * 100.0,
            t_build / rounds,
            t_remote / rounds,
            t_apply / rounds,
            decoded / rounds as usize,
        );
    }
}

async fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let api = match interlink_cri::embedded::start(dir.path(), rx).await {
        Ok(p) => p,
        Err(e) => {
            println!("lifecycle: skipped ({e})");
            return;
        }
    };
    let client =
        interlink::client::Client::new(interlink_cri::embedded::client_config(&api)).unwrap();
    let cfg = Config {
        data_root_folder: dir.path().to_path_buf(),
        batch_window: Duration::from_millis(10),
        status_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let store = Store::open(&dir.path().join("state")).unwrap();
    let rt = Runtime::new(
        cfg,
        store,
        Arc::new(NoHooks),
        Arc::new(interlink_cri::remote::InterlinkRemote { client }),
    );
    interlink_cri::background::start(&rt);
    let sock = dir.path().join("cri.sock");
    let l = interlink_cri::server::bind(&sock).unwrap();
    tokio::spawn(interlink_cri::server::serve(
        rt.clone(),
        l,
        std::future::pending(),
    ));
    let mut c = RuntimeServiceClient::new(connect(&sock).await);
    let n = 20;
    let t0 = Instant::now();
    let mut to_created = vec![];
    for i in 0..n {
        let cfg = kubelet_like_pod(100_000 + i);
        let pod = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mut cc = kubelet_like_container("main");
        cc.mounts.clear();
        let id = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cc),
                sandbox_config: Some(cfg),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        let ts = Instant::now();
        c.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        // wait until the remote pod exists (the /create went through the API server to the plugin)
        loop {
            let created = {
                let st = rt.store.read();
                st.containers
                    .get(&id)
                    .and_then(|c| c.remote_uid.clone())
                    .and_then(|u| st.remotes.get(&u).map(|r| r.phase == Phase::Created))
                    .unwrap_or(false)
            };
            if created {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        to_created.push(ts.elapsed());
        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        c.remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .unwrap();
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    }
    let el = t0.elapsed();
    println!(
        "lifecycle on the embedded local backend: {n} pods (runp+create+start+remote create+stop+rm) in {el:.2?} = {:.1} pods/s; start -> remote created p50 {:.1?} (incl. {:?} batch window)",
        n as f64 / el.as_secs_f64(),
        pct(&mut to_created, 0.5),
        Duration::from_millis(10)
    );
}

/// A state-mapping step that takes 10 ms per container (a slow guest module).
struct SlowStateHook;

impl Hooks for SlowStateHook {
    fn map_state(&self, input: &StateInput) -> StateDecision {
        std::thread::sleep(Duration::from_millis(10));
        input.default.clone()
    }
}

/// `ContainerStatus` over gRPC, `n` calls: (p50, p99).
async fn status_latency(
    c: &mut RuntimeServiceClient<Channel>,
    ids: &[String],
    n: usize,
) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.container_status(cri::ContainerStatusRequest {
            container_id: ids[i * 7919 % ids.len()].clone(),
            verbose: false,
        })
        .await
        .unwrap();
        v.push(t.elapsed());
    }
    (pct(&mut v, 0.5), pct(&mut v, 0.99))
}

async fn reads_while_a_slow_hook_runs() {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn Remote> = Arc::new(JsonRemote {
        answer: Default::default(),
    });
    let cfg = Config {
        data_root_folder: dir.path().to_path_buf(),
        status_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let rt = Runtime::new(cfg, Store::in_memory(), Arc::new(SlowStateHook), remote);
    let ids = populate(&rt.store, 1_000);
    // two answers for 50 pods that differ every round (waiting, two reasons):
    // each round runs the hook for all 50 (0.5 s of hook time)
    let pods = rt.polled.get(&rt.store);
    let answer = |reason: &str| -> Vec<PodStatus> {
        pods.iter()
            .take(50)
            .map(|p| PodStatus {
                pod_name: p.metadata.name.clone().unwrap(),
                pod_uid: p.metadata.uid.clone().unwrap(),
                pod_namespace: "default".into(),
                job_id: "1".into(),
                containers: vec![k8s::ContainerStatus {
                    name: "main".into(),
                    state: Some(k8s::ContainerState {
                        waiting: Some(k8s::ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                init_containers: vec![],
            })
            .collect()
    };
    let answers = [answer("Queued"), answer("Pulling")];
    let sock = dir.path().join("cri.sock");
    let l = interlink_cri::server::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(interlink_cri::server::serve(rt.clone(), l, async move {
        let _ = rx.await;
    }));
    let mut c = RuntimeServiceClient::new(connect(&sock).await);
    let idle = status_latency(&mut c, &ids, 2_000).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = {
        let (rt, stop, rounds) = (rt.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                interlink_cri::status_loop::apply(&rt, &answers[i % 2]);
                rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let busy = status_latency(&mut c, &ids, 2_000).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
    println!(
        "ContainerStatus @ 1000 containers: hook idle p50 {:.1?} p99 {:.1?} | while a 10 ms state hook runs on the status path ({} rounds of 50 calls) p50 {:.1?} p99 {:.1?}",
        idle.0,
        idle.1,
        rounds.load(std::sync::atomic::Ordering::Relaxed),
        busy.0,
        busy.1
    );
    let _ = tx.send(());
    let _ = srv.await;
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // as the runtime's main does
    interlink_cri::memory_return::configure_allocator();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench -p interlink-cri --bench cri_bench -- slow-hook`: that part only
    if std::env::args().any(|a| a == "slow-hook") {
        rt.block_on(reads_while_a_slow_hook_runs());
        return;
    }
    // `-- status-loop`: the status loop's rounds only
    if std::env::args().any(|a| a == "status-loop") {
        rt.block_on(status_loop_cpu());
        return;
    }
    // `-- reads`: the read figures only
    if std::env::args().any(|a| a == "reads") {
        rt.block_on(async {
            reads(1_000).await;
            reads(10_000).await;
        });
        return;
    }
    // `-- lifecycle`: the lifecycle throughput only
    if std::env::args().any(|a| a == "lifecycle") {
        rt.block_on(lifecycle());
        return;
    }
    // first, before other allocations are freed back to the allocator
    memory();
    rt.block_on(async {
        reads(1_000).await;
        reads(10_000).await;
        status_loop_cpu().await;
        reads_while_a_slow_hook_runs().await;
    });
    rt.block_on(lifecycle());
}
