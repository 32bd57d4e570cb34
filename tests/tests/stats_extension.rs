//! The `stats` extension of the upstream contract, end to end over real
//! binaries: discovery at `GET /extensions` (plugin and API server), real CPU
//! and memory figures from the local plugin's `/proc` reading, the CRI host's
//! `ContainerStats`/`PodSandboxStats`/`ListPodSandboxMetrics` on its embedded
//! default, and peers without the extension (usage unset, not zero, no error).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interlink::client::Client;
use interlink::extensions::{Extensions, STATS};
use interlink_test_harness::apiserver::{Listen, ScriptedHttp, create_request, start_interlink};
use interlink_test_harness::cri::*;
use interlink_test_harness::plugin::{PodBuilder, ReapLocalPods, container_status, start_local};
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};

const T: Duration = Duration::from_secs(40);

/// Busy for at most 60 s (bounded, so a failed test leaves nothing spinning),
/// with some memory held by the shell.
const BUSY: &str = "x=$(head -c 2000000 /dev/zero | tr '\\0' a); end=$(($(date +%s)+60)); \
    while [ \"$(date +%s)\" -lt \"$end\" ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done";

fn extensions_of(raw: &interlink_test_harness::plugin::PluginClient) -> Extensions {
    let r = raw.request("GET", "/extensions", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

/// (1) API server + local plugin: both list `stats`; `/stats` of a running
/// pod with a busy loop shows CPU and memory above zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_and_local_plugin_report_real_usage() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, plugin) = start_local(dir.path()).unwrap();
    assert!(extensions_of(&plugin).has(STATS));
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, "").unwrap();
    let raw = srv.raw();
    let offered = extensions_of(&raw);
    assert_eq!(offered.extensions.get(STATS), Some(&1), "{offered:?}");

    let client = Client::new(srv.client_config()).unwrap();
    assert!(client.extensions().await.unwrap().has(STATS));
    let b = PodBuilder::new("busy").container("spin", &["sh", "-c", BUSY]);
    client.create(&create_request(&b)).await.unwrap();
    let pod = b.pod.clone();
    let end = Instant::now() + T;
    let figures = loop {
        let st = client.status(std::slice::from_ref(&pod)).await.unwrap();
        let running = st.iter().any(|s| {
            container_status(s, "spin")
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        });
        if running {
            let stats = client.stats(std::slice::from_ref(&pod)).await.unwrap();
            assert!(stats.iter().all(|p| p.pod_uid == b.uid()), "{stats:?}");
            if let Some(c) = stats
                .iter()
                .flat_map(|p| p.containers.iter())
                .find(|c| c.name == "spin")
                && c.cpu_usage_core_nano_seconds.is_some_and(|v| v > 0)
                && c.memory_working_set_bytes.is_some_and(|v| v > 0)
            {
                break c.clone();
            }
        }
        assert!(Instant::now() < end, "no usage figures; last status {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // the shell holds the 2 MB string it built
    assert!(
        figures.memory_working_set_bytes.unwrap() > 2_000_000,
        "{figures:?}"
    );
    // cumulative CPU grows while the loop spins
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = client.stats(std::slice::from_ref(&pod)).await.unwrap();
    let later = later[0]
        .containers
        .iter()
        .find(|c| c.name == "spin")
        .unwrap();
    assert!(
        later.cpu_usage_core_nano_seconds > figures.cpu_usage_core_nano_seconds,
        "{figures:?} then {later:?}"
    );
    assert!(later.timestamp > figures.timestamp);

    // an unknown pod is left out; a malformed body is a 400 with a message
    let other = PodBuilder::new("absent").container("c", &["true"]);
    assert!(
        client
            .stats(std::slice::from_ref(&other.pod))
            .await
            .unwrap()
            .is_empty()
    );
    let bad = raw.request("POST", "/stats", Some(b"{not json")).unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.error().is_some(), "{}", bad.text());

    client.delete(&pod).await.unwrap();
}

/// A container's CPU figure from a CRI stats entry.
fn cpu_ns(s: &cri::ContainerStats) -> Option<u64> {
    s.cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
}

fn working_set(s: &cri::ContainerStats) -> Option<u64> {
    s.memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
}

/// Start `interlink-cri` with `config` (YAML) and wait for its socket.
fn start_host(dir: &Path, config: &str) -> Proc {
    let cfg = dir.join("cri.yaml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = std::process::Command::new(bin("interlink-cri"));
    cmd.arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info,interlink_cri=debug");
    let mut host = Proc::spawn("interlink-cri", cmd, &dir.join("host.log")).unwrap();
    if let Err(e) = wait_for_unix_socket(&dir.join("cri.sock"), T) {
        let out = host.output();
        host.stop(Duration::from_secs(1));
        panic!("{e}; host output:\n{out}");
    }
    host
}

fn sandbox(dir: &Path, name: &str) -> cri::PodSandboxConfig {
    interlink_test_harness::cri::sandbox_config(name, &dir.join("pod-logs"))
}

/// Pull busybox, run a sandbox with one container running `script`; answers
/// (sandbox id, container id).
async fn run_one(
    rt: &mut Rt,
    img: &mut Img,
    sb: &cri::PodSandboxConfig,
    script: &str,
) -> (String, String) {
    img.pull_image(cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    })
    .await
    .unwrap();
    let pod = run_pod(rt, sb).await.unwrap();
    let id = create(rt, &pod, sb, sh("spin", script)).await.unwrap();
    start(rt, &id).await.unwrap();
    (pod, id)
}

async fn container_stats(rt: &mut Rt, id: &str) -> cri::ContainerStats {
    rt.container_stats(cri::ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .stats
    .unwrap()
}

/// (2) The CRI host on its embedded default (API server + local plugin in
/// process): ContainerStats, PodSandboxStats and ListPodSandboxMetrics carry
/// the running container's real CPU and memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_host_on_the_embedded_default_reports_usage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut host = start_host(
        d,
        &format!(
            "CRI:\n  SocketPath: unix://{}\nDataRootFolder: {}\n{FAST}",
            d.join("cri.sock").display(),
            d.join("data").display()
        ),
    );
    let ch = connect(&d.join("cri.sock")).await.unwrap();
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(ch.clone());
    let mut img = cri::image_service_client::ImageServiceClient::new(ch);
    let sb = sandbox(d, "busy-cri");
    let (pod, id) = run_one(&mut rt, &mut img, &sb, BUSY).await;

    let end = Instant::now() + T;
    let first = loop {
        let s = container_stats(&mut rt, &id).await;
        if cpu_ns(&s).is_some_and(|v| v > 0) && working_set(&s).is_some_and(|v| v > 0) {
            break s;
        }
        assert!(
            Instant::now() < end,
            "no usage in ContainerStats: {s:?}\nhost output:\n{}",
            host.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mem = working_set(&first).unwrap();
    assert!(mem > 2_000_000, "{first:?}");

    // the sandbox sums its containers (one here)
    let ps = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = ps.linux.unwrap();
    assert!(
        linux
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .is_some_and(|v| v.value > 0)
    );
    assert!(
        linux
            .memory
            .and_then(|m| m.working_set_bytes)
            .is_some_and(|v| v.value > 0)
    );
    // the rate appears once two readings exist
    let end = Instant::now() + T;
    loop {
        let s = container_stats(&mut rt, &id).await;
        let rate = s.cpu.as_ref().and_then(|c| c.usage_nano_cores.as_ref());
        if rate.is_some_and(|r| r.value > 0) {
            assert!(cpu_ns(&s) >= cpu_ns(&first), "{first:?} then {s:?}");
            break;
        }
        assert!(Instant::now() < end, "no usage_nano_cores: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let m = metrics.iter().find(|m| m.pod_sandbox_id == pod).unwrap();
    let cm = m
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap();
    let ws = cm
        .metrics
        .iter()
        .find(|m| m.name == "container_memory_working_set_bytes")
        .unwrap_or_else(|| panic!("{cm:?}"));
    assert!(ws.value.as_ref().is_some_and(|v| v.value > 0), "{ws:?}");
    assert_eq!(ws.label_values, ["spin"]);

    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    host.stop(Duration::from_secs(5));
}

/// A stand-in (test double) for an upstream interLink API server or plugin,
/// which has no extensions: 404 with Go's plain-text body at `/extensions`
/// and `/stats`, plausible answers elsewhere. Records the paths asked.
fn upstream_like(asked: Arc<Mutex<Vec<String>>>) -> ScriptedHttp {
    ScriptedHttp::start(move |method, path| {
        asked.lock().unwrap().push(format!("{method} {path}"));
        let ok = |ct: &'static str, body: &str| Some((200, ct, body.to_string(), Duration::ZERO));
        match path {
            "/extensions" | "/stats" => Some((
                404,
                "text/plain; charset=utf-8",
                "404 page not found\n".to_string(),
                Duration::ZERO,
            )),
            "/create" => ok("application/json", r#"{"PodUID":"x","PodJID":"1"}"#),
            "/status" => ok("application/json", "[]"),
            "/pinglink" => ok("text/plain", "pong"),
            _ => ok("text/plain", ""),
        }
    })
    .unwrap()
}

/// (3a) Our API server in front of a plugin without the extension: it offers
/// no `stats`, and `/stats` is a 404 with a JSON message; the client reads
/// "no extensions", not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_offers_no_stats_when_its_plugin_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let plugin = upstream_like(asked.clone());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &plugin.url(), "").unwrap();
    let raw = srv.raw();
    assert_eq!(extensions_of(&raw), Extensions::none());
    assert!(asked.lock().unwrap().iter().any(|p| p == "GET /extensions"));
    let b = PodBuilder::new("quiet").container("c", &["true"]);
    let body = serde_json::to_vec(&[&b.pod]).unwrap();
    let r = raw.request("POST", "/stats", Some(&body)).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.error().unwrap().contains("stats"), "{}", r.text());
    // never passed on to a plugin that does not have it
    assert!(!asked.lock().unwrap().iter().any(|p| p.ends_with("/stats")));
    let client = Client::new(srv.client_config()).unwrap();
    assert_eq!(client.extensions().await.unwrap(), Extensions::none());
}

/// (3b) The CRI host against an API server without the extension: stats calls
/// succeed with usage unset (not zero), and the host never calls `/stats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_host_leaves_usage_unset_without_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let api = upstream_like(asked.clone());
    let mut host = start_host(
        d,
        &format!(
            "InterlinkAddress: {}\nCRI:\n  SocketPath: unix://{}\n  RequestTimeout: 10s\nDataRootFolder: {}\n{FAST}",
            api.url(),
            d.join("cri.sock").display(),
            d.join("data").display()
        ),
    );
    let ch = connect(&d.join("cri.sock")).await.unwrap();
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(ch.clone());
    let mut img = cri::image_service_client::ImageServiceClient::new(ch);
    let sb = sandbox(d, "no-ext");
    let (pod, id) = run_one(&mut rt, &mut img, &sb, "sleep 30").await;
    // the remote pod is created and the host has asked for the extensions
    interlink_test_harness::wait_until(T, "/create and /extensions", || {
        let a = asked.lock().unwrap();
        a.iter().any(|p| p == "POST /create") && a.iter().any(|p| p == "GET /extensions")
    })
    .unwrap_or_else(|e| panic!("{e}; asked {:?}\n{}", asked.lock().unwrap(), host.output()));
    // a few stats rounds
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = container_stats(&mut rt, &id).await;
    let cpu = s.cpu.as_ref().unwrap();
    assert!(cpu.timestamp > 0);
    assert_eq!(cpu.usage_core_nano_seconds, None, "{s:?}");
    assert_eq!(cpu.usage_nano_cores, None, "{s:?}");
    assert_eq!(s.memory.as_ref().unwrap().working_set_bytes, None, "{s:?}");
    let ps = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = ps.linux.unwrap();
    assert_eq!(linux.cpu.unwrap().usage_core_nano_seconds, None);
    assert_eq!(linux.memory.unwrap().working_set_bytes, None);
    let metrics = rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let m = metrics.iter().find(|m| m.pod_sandbox_id == pod).unwrap();
    assert!(
        m.container_metrics.iter().all(|c| c.metrics.is_empty()),
        "{m:?}"
    );
    // asked once (cached), never called
    let a = asked.lock().unwrap().clone();
    assert_eq!(
        a.iter().filter(|p| *p == "GET /extensions").count(),
        1,
        "{a:?}"
    );
    assert!(!a.iter().any(|p| p.ends_with("/stats")), "{a:?}");
    host.stop(Duration::from_secs(5));
}

/// The podman service, the Docker plugin and the pod's containers of one test;
/// all stopped or removed when dropped, whatever happened.
struct DockerWorld {
    dir: tempfile::TempDir,
    env: std::collections::BTreeMap<String, String>,
    engine: Option<Proc>,
    plugin: Option<Proc>,
    uid: String,
}

impl DockerWorld {
    /// `None` (after saying why) when scripts/engine-setup.sh has not run,
    /// unless backends are required.
    fn start(uid: &str) -> Option<DockerWorld> {
        let dir = std::env::var("ENGINE_DIR").unwrap_or_else(|_| "/tmp/engine".into());
        let text = match std::fs::read_to_string(Path::new(&dir).join("env.sh")) {
            Ok(t) => t,
            Err(e) => {
                assert!(
                    !interlink_test_harness::backends_required(),
                    "the container engine is required but unavailable: {e}"
                );
                eprintln!("SKIP: no engine env file in {dir} ({e}): run scripts/engine-setup.sh");
                return None;
            }
        };
        let env: std::collections::BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        let image = env
            .get("ENGINE_IMAGE")
            .cloned()
            .unwrap_or_else(|| "localhost/mini:latest".into());
        let dir = tempfile::Builder::new()
            .prefix("il-stats-")
            .tempdir()
            .unwrap();
        let mut w = DockerWorld {
            dir,
            env,
            engine: None,
            plugin: None,
            uid: uid.to_string(),
        };
        let d = w.dir.path().to_path_buf();
        let mut cmd = std::process::Command::new("podman");
        cmd.envs(&w.env)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", d.join("engine.sock").display()));
        w.engine = Some(Proc::spawn("podman-service", cmd, &d.join("engine.log")).unwrap());
        wait_for_unix_socket(&d.join("engine.sock"), T).unwrap();
        std::fs::write(
            d.join("plugin.yaml"),
            format!(
                "listen: unix://{}\ndata_root: {}\ndocker:\n  docker_host: unix://{}\n  infra_image: {image}\n  infra_command: [sleep, \"2147483647\"]\n  image_pull_policy: IfNotPresent\n",
                d.join("plugin.sock").display(),
                d.join("data").display(),
                d.join("engine.sock").display(),
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(bin("interlink-docker"));
        cmd.arg("--config").arg(d.join("plugin.yaml"));
        w.plugin = Some(Proc::spawn("interlink-docker", cmd, &d.join("plugin.log")).unwrap());
        wait_for_unix_socket(&d.join("plugin.sock"), T).unwrap();
        Some(w)
    }

    fn image(&self) -> String {
        self.env
            .get("ENGINE_IMAGE")
            .cloned()
            .unwrap_or_else(|| "localhost/mini:latest".into())
    }
}

impl Drop for DockerWorld {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(5));
        }
        let podman = |args: &[&str]| {
            std::process::Command::new("podman")
                .envs(&self.env)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let ids = podman(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=interlink.pod-uid={}", self.uid),
        ]);
        for id in ids.split_whitespace() {
            podman(&["rm", "-f", "-t", "0", id]);
        }
        if let Some(mut p) = self.engine.take() {
            p.stop(Duration::from_secs(10));
        }
    }
}

/// The Docker plugin against real podman: `stats` is listed, and a running
/// container's CPU and memory come from the engine's stats.
#[test]
fn docker_plugin_reports_the_engines_usage() {
    let b = PodBuilder::new("busy-docker");
    let Some(w) = DockerWorld::start(b.uid()) else {
        return;
    };
    let image = w.image();
    let b = b
        .container(
            "spin",
            &[
                "sh",
                "-c",
                "end=$(($(date +%s)+60)); while [ \"$(date +%s)\" -lt \"$end\" ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done",
            ],
        )
        .with_container("spin", |c| c.image = Some(image));
    let plugin =
        interlink_test_harness::plugin::PluginClient::unix(&w.dir.path().join("plugin.sock"));
    assert!(extensions_of(&plugin).has(STATS));
    plugin.create_ok(&b.data()).unwrap();
    let body = serde_json::to_vec(&[&b.pod]).unwrap();
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let r = plugin.request("POST", "/stats", Some(&body)).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let stats: Vec<interlink::extensions::PodStats> = r.json().unwrap();
        if let Some(c) = stats
            .iter()
            .flat_map(|p| p.containers.iter())
            .find(|c| c.name == "spin")
            && c.cpu_usage_core_nano_seconds.is_some_and(|v| v > 0)
            && c.memory_working_set_bytes.is_some_and(|v| v > 0)
        {
            break;
        }
        assert!(Instant::now() < end, "no usage from the engine: {stats:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = plugin.delete(&b.pod);
}
