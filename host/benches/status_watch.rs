//! What the status watch and watched log files change, on the embedded
//! default (API server + local plugin in this process), driven through the
//! CRI socket as crictl would (printed figures, nothing asserted):
//! - `exit`: StartContainer → EXITED visible in ContainerStatus, p50/p90, for
//!   `sh -c 'echo hello'`, with the status watch and with polling only (the
//!   host's behaviour with an API server without the extension), at the
//!   default `BatchWindow` and at 10 ms;
//! - `idle [pods=N] [poll]`: CPU of this process (host + API server + plugin)
//!   over 10 s while N `sleep` pods run and nothing happens; `poll` makes the
//!   host poll `/status`; `INTERLINK_LOCAL_LOG_POLL=1` in the environment makes
//!   the plugin poll followed logs every 100 ms (the behaviour before inotify);
//! - `cycles [pods=N] [cycles=3]`: RSS per running pod, and RSS after each of
//!   the rounds of starting N `sleep` pods and removing them (memory that
//!   comes back).
//!
//! `cargo bench -p interlink-cri --bench status_watch -- exit`
//! `cargo bench -p interlink-cri --bench status_watch -- idle pods=500`
//! `cargo bench -p interlink-cri --bench status_watch -- cycles pods=2000`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use interlink::{CreateStruct, LogStruct, PodCreateRequests};
use interlink_cri::config::Config;
use interlink_cri::hooks::NoHooks;
use interlink_cri::proto::runtime::v1 as cri;
use interlink_cri::proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use interlink_cri::remote::{InterlinkRemote, PodList, Remote, RemoteResult};
use interlink_cri::runtime::Runtime;
use interlink_cri::store::Store;
use k8s_openapi::api::core::v1 as k8s;
use tonic::transport::Channel;

mod common;
use common::{connect, cpu_time, heap_in_use, memory_breakdown, pct, rss_bytes};

/// The interLink remote with the status watch hidden: the host polls, as it
/// does with an upstream API server.
struct PollOnly(InterlinkRemote);

impl Remote for PollOnly {
    fn create(&self, r: PodCreateRequests) -> BoxFuture<'_, RemoteResult<CreateStruct>> {
        self.0.create(r)
    }
    fn delete(&self, p: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        self.0.delete(p)
    }
    fn status(&self, pods: Arc<PodList>) -> BoxFuture<'_, RemoteResult<interlink::StatusAnswer>> {
        self.0.status(pods)
    }
    fn logs(&self, r: LogStruct, m: usize) -> BoxFuture<'_, RemoteResult<Bytes>> {
        self.0.logs(r, m)
    }
    fn logs_follow(
        &self,
        r: LogStruct,
    ) -> BoxFuture<'_, RemoteResult<BoxStream<'static, RemoteResult<Bytes>>>> {
        self.0.logs_follow(r)
    }
    fn ping(&self) -> BoxFuture<'_, RemoteResult<()>> {
        self.0.ping()
    }
    fn update_cache(&self, p: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        self.0.update_cache(p)
    }
}

type Rt = RuntimeServiceClient<Channel>;

/// The embedded default with a CRI socket; `poll`: no status watch.
async fn host(dir: &Path, batch_window: Option<Duration>, poll: bool) -> (Rt, Arc<Runtime>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    let api = interlink_cri::embedded::start(dir, rx).await.unwrap();
    let client =
        interlink::client::Client::new(interlink_cri::embedded::client_config(&api)).unwrap();
    let mut cfg = Config {
        data_root_folder: dir.to_path_buf(),
        ..Default::default()
    };
    if let Some(w) = batch_window {
        cfg.batch_window = w;
    }
    let remote = InterlinkRemote { client };
    let remote: Arc<dyn Remote> = if poll {
        Arc::new(PollOnly(remote))
    } else {
        Arc::new(remote)
    };
    let store = Store::open(&dir.join("state")).unwrap();
    let rt = Runtime::new(cfg, store, Arc::new(NoHooks), remote);
    interlink_cri::background::start(&rt);
    let sock = dir.join("cri.sock");
    let l = interlink_cri::server::bind(&sock).unwrap();
    tokio::spawn(interlink_cri::server::serve(
        rt.clone(),
        l,
        std::future::pending(),
    ));
    (RuntimeServiceClient::new(connect(&sock).await), rt)
}

fn pod(i: usize, logs: &Path) -> cri::PodSandboxConfig {
    let name = format!("pod-{i}");
    let uid = uuid::Uuid::new_v4().to_string();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            namespace: "default".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: logs
            .join(format!("default_{name}_{uid}"))
            .display()
            .to_string(),
        ..Default::default()
    }
}

fn container(script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: "main/0.log".into(),
        ..Default::default()
    }
}

/// RunPodSandbox + CreateContainer; answers (sandbox, container).
async fn prepare(c: &mut Rt, i: usize, logs: &Path, script: &str) -> (String, String) {
    let cfg = pod(i, logs);
    let sb = c
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let id = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container(script)),
            sandbox_config: Some(cfg),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    (sb, id)
}

async fn state(c: &mut Rt, id: &str) -> i32 {
    c.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .map(|s| s.state)
    .unwrap_or(-1)
}

async fn remove(c: &mut Rt, sb: String) {
    c.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await
        .unwrap();
}

const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;

async fn exit_latency(batch_window: Option<Duration>, poll: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pod-logs");
    let (mut c, _rt) = host(dir.path(), batch_window, poll).await;
    let n = 20;
    let mut took = Vec::new();
    for i in 0..n {
        let (sb, id) = prepare(&mut c, i, &logs, "echo hello").await;
        let t0 = Instant::now();
        c.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        while state(&mut c, &id).await != EXITED {
            assert!(t0.elapsed() < Duration::from_secs(60), "never EXITED");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(t0.elapsed());
        remove(&mut c, sb).await;
    }
    println!(
        "start -> EXITED (sh -c 'echo hello'), {n} pods, {}, BatchWindow {}: p50 {:.1?}, p90 {:.1?}",
        if poll {
            "polling /status every 1 s (no watch)"
        } else {
            "status watch"
        },
        batch_window.map_or_else(
            || format!("default ({:?})", Config::default().batch_window),
            |w| format!("{w:?}")
        ),
        pct(&mut took, 0.5),
        pct(&mut took, 0.9),
    );
}

/// Starts `pods` `sleep` pods a few at a time, as kubelet's workers do, and
/// waits until every one is RUNNING; answers their sandbox IDs and how long
/// that took.
async fn start_sleepers(c: &Rt, logs: &Path, pods: usize) -> (Vec<String>, Duration) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let per = pods.div_ceil(16);
    for w in 0..16 {
        let mut c = c.clone();
        let logs = logs.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w * per)..((w + 1) * per).min(pods) {
                let (sb, id) = prepare(&mut c, i, &logs, "exec sleep 600").await;
                c.start_container(cri::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .unwrap();
                out.push((sb, id));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut c2 = c.clone();
    for (_, id) in &all {
        while state(&mut c2, id).await != RUNNING {
            assert!(t0.elapsed() < Duration::from_secs(600), "not RUNNING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (all.into_iter().map(|(sb, _)| sb).collect(), t0.elapsed())
}

/// Stops and removes the sandboxes, 16 at a time.
async fn remove_all(c: &Rt, all: Vec<String>) {
    let mut tasks = Vec::new();
    for chunk in all.chunks(all.len().div_ceil(16).max(1)) {
        let mut c = c.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for sb in chunk {
                remove(&mut c, sb).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn idle(pods: usize, poll: bool) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pod-logs");
    let (c, _rt) = host(dir.path(), None, poll).await;
    let (all, started) = start_sleepers(&c, &logs, pods).await;
    // let the start settle (log followers open, the first rounds)
    tokio::time::sleep(Duration::from_secs(3)).await;
    // IDLE_SECS: a longer window, to attach a profiler (`perf record -p`)
    let secs = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("idle: measuring for {secs} s (pid {})", std::process::id());
    let (cpu0, w0) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (cpu, wall) = (cpu_time() - cpu0, w0.elapsed());
    println!(
        "idle with {pods} running sleep pods (started in {started:.1?}), {}, logs {}: {:.2}% of a core over {wall:.1?} (host + API server + plugin, this process)",
        if poll {
            "status polled every 1 s"
        } else {
            "status watch"
        },
        if std::env::var_os(interlink_plugin_local::logfile::POLL_ENV).is_some() {
            "polled every 100 ms"
        } else {
            "watched (inotify)"
        },
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64()
    );
    remove_all(&c, all).await;
}

/// RSS per running pod and RSS after each of `cycles` rounds of starting and
/// removing `pods` pods (host + API server + plugin, this process).
async fn cycles(pods: usize, cycles: usize) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pod-logs");
    let (c, _rt) = host(dir.path(), None, false).await;
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let base = rss_bytes();
    println!(
        "memory: baseline RSS {:.1} MiB (heap in use {:.1} MiB)",
        base as f64 / 1048576.0,
        heap_in_use() as f64 / 1048576.0
    );
    println!("memory: baseline: {}", memory_breakdown());
    let mut after = Vec::new();
    for round in 1..=cycles {
        let before = rss_bytes();
        let (all, started) = start_sleepers(&c, &logs, pods).await;
        settle().await;
        let running = rss_bytes();
        let heap_running = heap_in_use();
        remove_all(&c, all).await;
        // freed memory goes back once the count of pods held for a check (see
        // `memory_return`): up to two of its 10 s checks
        tokio::time::sleep(Duration::from_secs(22)).await;
        let gone = rss_bytes();
        let heap_gone = heap_in_use();
        println!(
            "memory: cycle {round}: {pods} pods running (started in {started:.1?}): RSS {:.1} MiB, {:.1} KiB per running pod over the RSS before the cycle; after removing them: {:.1} MiB (heap in use {:.1} MiB running, {:.1} MiB after)",
            running as f64 / 1048576.0,
            running.saturating_sub(before) as f64 / 1024.0 / pods as f64,
            gone as f64 / 1048576.0,
            heap_running as f64 / 1048576.0,
            heap_gone as f64 / 1048576.0,
        );
        println!(
            "memory: cycle {round}: after removing: {}",
            memory_breakdown()
        );
        // and once more after the request caches let go of the last bodies
        tokio::time::sleep(Duration::from_secs(50)).await;
        let settled = rss_bytes();
        after.push(settled);
        println!(
            "memory: cycle {round}: {:.1} MiB once the request caches let go (heap in use {:.1} MiB): {}",
            settled as f64 / 1048576.0,
            heap_in_use() as f64 / 1048576.0,
            memory_breakdown()
        );
    }
    if let (Some(first), Some(last)) = (after.first(), after.last()) {
        println!(
            "memory: settled RSS after the last cycle is {:+.1}% of that after the first ({:.1} -> {:.1} MiB)",
            (*last as f64 / *first as f64 - 1.0) * 100.0,
            *first as f64 / 1048576.0,
            *last as f64 / 1048576.0,
        );
    }
}

fn main() {
    // the embedded plugin supervises containers with this executable
    if std::env::args_os().nth(1).is_some_and(|a| a == "__shim") {
        std::process::exit(interlink_plugin_local::supervise::shim_main());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    // as the runtime's main does
    interlink_cri::memory_return::configure_allocator();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();
    let has = |a: &str| args.iter().any(|x| x == a);
    let pods = args
        .iter()
        .find_map(|a| a.strip_prefix("pods="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    if has("idle") {
        rt.block_on(idle(pods, has("poll")));
        return;
    }
    if has("cycles") {
        let n = args
            .iter()
            .find_map(|a| a.strip_prefix("cycles="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(3);
        rt.block_on(cycles(pods, n));
        return;
    }
    rt.block_on(async {
        for w in [None, Some(Duration::from_millis(10))] {
            exit_latency(w, true).await;
            exit_latency(w, false).await;
        }
    });
}
