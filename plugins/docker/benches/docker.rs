//! Benchmark of the Docker plugin against the real engine (podman's compat
//! service, prepared by scripts/engine-setup.sh). Prints figures:
//!
//! 1. create -> running latency of a one-container pod (HTTP create until the
//!    plugin's status reports the container running), over several pods;
//! 2. the cost of one status request for N tracked running pods (default 100,
//!    env `BENCH_PODS`), warm (states cached, one engine list call) and cold
//!    (first request after a plugin restart, one inspect per container), the
//!    status of one pod among them, and the per-pod cost extrapolated to 1,000.
//!
//! `cargo bench -p interlink-plugin-docker --bench docker`

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{PluginClient, PodBuilder, Proc, is_running, wait_for_unix_socket};

/// Just enough of a blocking HTTP client, process handling and pod building for
/// the bench (kept here so the plugin crate depends on nothing else to bench).
mod http {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use interlink::{CreateStruct, PodStatus, RetrievedContainer, RetrievedPodData};
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub struct Proc(Child);

    impl Proc {
        pub fn spawn(_name: &str, mut cmd: Command, log: &Path) -> std::io::Result<Proc> {
            let out = std::fs::File::create(log)?;
            cmd.stdout(out.try_clone()?)
                .stderr(out)
                .stdin(Stdio::null())
                .process_group(0);
            Ok(Proc(cmd.spawn()?))
        }

        pub fn stop(&mut self, grace: Duration) {
            let pg = self.0.id() as i32;
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pg, libc::SIGTERM) };
            let end = Instant::now() + grace;
            while Instant::now() < end {
                if let Ok(Some(_)) = self.0.try_wait() {
                    unsafe { libc::kill(-pg, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            unsafe { libc::kill(-pg, libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                self.stop(Duration::from_secs(5));
            }
        }
    }

    pub fn wait_for_unix_socket(p: &Path, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        while UnixStream::connect(p).is_err() {
            if Instant::now() > end {
                return Err(format!("{} did not come up in {timeout:?}", p.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub struct PluginClient(PathBuf);

    impl PluginClient {
        pub fn unix(p: &Path) -> PluginClient {
            PluginClient(p.to_path_buf())
        }

        fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
            let mut s = UnixStream::connect(&self.0).expect("connect to the plugin");
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            s.write_all(body).unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).unwrap();
            let end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("response head");
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let code: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status");
            let mut rest = raw[end + 4..].to_vec();
            if head.contains("transfer-encoding: chunked") {
                let mut out = Vec::new();
                loop {
                    let nl = rest
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .expect("chunk size");
                    let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16)
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
                    rest.drain(..nl + 4 + n);
                }
                rest = out;
            }
            (code, rest)
        }

        fn ok<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str, body: &[u8]) -> T {
            let (code, b) = self.request(method, path, body);
            assert!(
                (200..300).contains(&code),
                "{path}: HTTP {code}: {}",
                String::from_utf8_lossy(&b)
            );
            serde_json::from_slice(&b).expect("JSON answer")
        }

        pub fn create_ok(&self, d: &RetrievedPodData) -> CreateStruct {
            self.ok("POST", "/create", &serde_json::to_vec(d).unwrap())
        }

        pub fn delete(&self, p: &Pod) {
            let (code, b) = self.request("POST", "/delete", &serde_json::to_vec(p).unwrap());
            assert_eq!(code, 200, "delete: {}", String::from_utf8_lossy(&b));
        }

        pub fn status(&self, pods: &[Pod]) -> Vec<PodStatus> {
            self.ok("GET", "/status", &serde_json::to_vec(pods).unwrap())
        }

        pub fn status_of(&self, p: &Pod) -> PodStatus {
            self.status(std::slice::from_ref(p)).remove(0)
        }
    }

    pub struct PodBuilder {
        pub pod: Pod,
    }

    impl PodBuilder {
        pub fn new(name: &str, image: &str, cmd: &[&str], n: usize) -> PodBuilder {
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    uid: Some(format!(
                        "00000000-0000-4000-8000-{:06x}{n:06x}",
                        std::process::id() & 0xffffff
                    )),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some(image.into()),
                        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
                status: None,
            };
            PodBuilder { pod }
        }

        pub fn uid(&self) -> &str {
            self.pod.metadata.uid.as_deref().unwrap()
        }

        pub fn data(&self) -> RetrievedPodData {
            RetrievedPodData {
                pod: self.pod.clone(),
                containers: vec![RetrievedContainer {
                    name: "main".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        }
    }

    fn state(s: &PodStatus) -> Option<&k8s_openapi::api::core::v1::ContainerState> {
        s.containers.first().and_then(|c| c.state.as_ref())
    }

    pub fn is_running(s: &PodStatus, _name: &str) -> bool {
        state(s).is_some_and(|s| s.running.is_some())
    }
}

fn engine_env() -> Option<(BTreeMap<String, String>, String)> {
    let dir = std::env::var("ENGINE_DIR").unwrap_or_else(|_| "/tmp/engine".into());
    let text = std::fs::read_to_string(Path::new(&dir).join("env.sh")).ok()?;
    let mut env = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
        {
            env.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    let image = env
        .get("ENGINE_IMAGE")
        .cloned()
        .unwrap_or_else(|| "localhost/mini:latest".into());
    Some((env, image))
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    format!(
        "n={} min {:.1} ms, median {:.1} ms, mean {:.1} ms, max {:.1} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        mean,
        ms(v[v.len() - 1])
    )
}

fn start_plugin(dir: &Path) -> Proc {
    let sock = dir.join("plugin.sock");
    let _ = std::fs::remove_file(&sock);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interlink-docker"));
    cmd.arg("--config")
        .arg(dir.join("plugin.yaml"))
        .env("RUST_LOG", "warn");
    let p = Proc::spawn("interlink-docker", cmd, &dir.join("plugin.log")).unwrap();
    wait_for_unix_socket(&sock, Duration::from_secs(30)).unwrap();
    p
}

fn main() {
    let Some((env, image)) = engine_env() else {
        println!("docker bench: SKIPPED (no engine: run scripts/engine-setup.sh as root)");
        return;
    };
    let n_pods: usize = std::env::var("BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::Builder::new()
        .prefix("il-docker-bench-")
        .tempdir()
        .unwrap();
    let engine_sock = dir.path().join("engine.sock");
    let mut cmd = Command::new("podman");
    cmd.envs(&env)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", engine_sock.display()));
    let _engine = Proc::spawn("podman-service", cmd, &dir.path().join("engine.log")).unwrap();
    wait_for_unix_socket(&engine_sock, Duration::from_secs(30)).unwrap();
    std::fs::write(
        dir.path().join("plugin.yaml"),
        format!(
            "listen: unix://{}\ndata_root: {}\ndocker:\n  docker_host: unix://{}\n  infra_image: {image}\n  infra_command: [sleep, \"2147483647\"]\n  image_pull_policy: IfNotPresent\n",
            dir.path().join("plugin.sock").display(),
            dir.path().join("data").display(),
            engine_sock.display()
        ),
    )
    .unwrap();
    let mut plugin = start_plugin(dir.path());
    let client = PluginClient::unix(&dir.path().join("plugin.sock"));
    let mut uids = Vec::new();
    let mut serial = 0usize;
    let mut pod = |name: &str, cmd: &[&str]| {
        serial += 1;
        PodBuilder::new(name, &image, cmd, serial)
    };

    // ---- 1. create -> running (after one warm-up pod, not counted)
    let warm_up = pod("warm-up", &["true"]);
    uids.push(warm_up.uid().to_string());
    client.create_ok(&warm_up.data());
    client.delete(&warm_up.pod);
    let mut create_rt = Vec::new();
    let mut to_running = Vec::new();
    let mut running = Vec::new();
    for i in 0..10 {
        let b = pod(&format!("lat-{i}"), &["sleep", "1000"]);
        uids.push(b.uid().to_string());
        let t = Instant::now();
        client.create_ok(&b.data());
        create_rt.push(t.elapsed());
        loop {
            let st = client.status_of(&b.pod);
            if is_running(&st, "main") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "pod never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        to_running.push(t.elapsed());
        running.push(b);
    }
    println!(
        "docker plugin on podman {}:",
        String::from_utf8_lossy(
            &Command::new("podman")
                .envs(&env)
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    println!(
        "  create request (images checked, infra + container created): {}",
        stats(create_rt)
    );
    println!(
        "  create -> running (status reports the container running):   {}",
        stats(to_running)
    );
    for b in &running {
        client.delete(&b.pod);
    }
    uids.clear();

    // ---- 2. status cost with many tracked pods
    let t = Instant::now();
    let mut pods = Vec::new();
    for i in 0..n_pods {
        let b = pod(&format!("many-{i}"), &["sleep", "1000"]);
        uids.push(b.uid().to_string());
        client.create_ok(&b.data());
        pods.push(b.pod);
    }
    let created_in = t.elapsed();
    loop {
        let all = client.status(&pods);
        if all.len() == pods.len() && all.iter().all(|st| is_running(st, "main")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  {n_pods} pods created in {:.1} s ({:.0} ms each) and all running",
        created_in.as_secs_f64(),
        created_in.as_secs_f64() * 1e3 / n_pods as f64
    );
    let mut warm = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let all = client.status(&pods);
        warm.push(t.elapsed());
        assert_eq!(all.len(), n_pods);
    }
    // cold: a restarted plugin has no cached states and inspects every container once
    plugin.stop(Duration::from_secs(5));
    plugin = start_plugin(dir.path());
    let t = Instant::now();
    let all = client.status(&pods);
    let cold = t.elapsed();
    assert_eq!(all.len(), n_pods);
    let mut single = Vec::new();
    for p in pods.iter().take(10) {
        let t = Instant::now();
        client.status_of(p);
        single.push(t.elapsed());
    }
    let med = {
        let mut w = warm.clone();
        w.sort();
        w[w.len() / 2]
    };
    println!(
        "  status of {n_pods} pods in one request, warm (1 engine list call, no inspect): {}",
        stats(warm)
    );
    println!(
        "  status of {n_pods} pods, cold after a plugin restart (1 list + {} inspects): {:.1} ms",
        n_pods,
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  status of 1 running pod with {n_pods} tracked (1 inspect): {}",
        stats(single)
    );
    println!(
        "  per tracked pod (warm): {:.3} ms -> about {:.0} ms for 1,000 pods (extrapolated: the engine's list call grows with its container count)",
        med.as_secs_f64() * 1e3 / n_pods as f64,
        med.as_secs_f64() * 1e3 * 1000.0 / n_pods as f64
    );

    // ---- cleanup
    let t = Instant::now();
    for p in &pods {
        client.delete(p);
    }
    println!(
        "  delete of {n_pods} running pods (grace 0): {:.0} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n_pods as f64
    );
    plugin.stop(Duration::from_secs(5));
    // safety net: containers joined to an infra container go before it
    for uid in &uids {
        for role in ["init", "container", "infra"] {
            let out = Command::new("podman")
                .envs(&env)
                .args(["ps", "-a", "-q", "--filter"])
                .arg(format!("label=interlink.pod-uid={uid}"))
                .arg("--filter")
                .arg(format!("label=interlink.role={role}"))
                .output()
                .unwrap();
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                Command::new("podman")
                    .envs(&env)
                    .args(["rm", "-f", "-t", "0"])
                    .args(&ids)
                    .output()
                    .unwrap();
            }
        }
    }
}
