//! The CRI host under test: `interlink-cri` with a real `interlink` API server and
//! a real `interlink-local` plugin, each its own process on Unix sockets in a
//! temp directory, and a tonic CRI client over the host's socket.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
pub use interlink_cri::proto::runtime::v1 as cri;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Proc, bin, wait_for_unix_socket};

pub type Rt = RuntimeServiceClient<Channel>;
pub type Img = ImageServiceClient<Channel>;

/// Host settings the tests want fast: short status interval, batch window, ping.
pub const FAST: &str = "StatusInterval: 200ms\nBatchWindow: 200ms\nPingInterval: 200ms\nPingTimeout: 2s\nCreateRetryFor: 20s\n";

/// The plugin behind the API server.
#[derive(Clone, Debug)]
pub enum Backend {
    /// `interlink-local`.
    Local,
    /// `interlink-slurm` (`container_runtime: none`) on the cluster of this `slurm.conf`.
    Slurm(PathBuf),
    /// `interlink-docker` on the engine with this environment (`env.sh`).
    Docker(std::collections::BTreeMap<String, String>),
}

pub struct CriEnv {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub api_socket: PathBuf,
    pub plugin_socket: PathBuf,
    pub log_dir: PathBuf,
    pub host_config: PathBuf,
    pub host: Option<Proc>,
    pub api: Option<Proc>,
    pub plugin: Option<Proc>,
    /// Which plugin runs behind the API server.
    pub backend: Backend,
    /// The engine's service for [`Backend::Docker`], stopped with the env.
    pub engine_service: Option<Proc>,
    /// Environment given to all three processes (OTLP settings, for example).
    pub env: Vec<(String, String)>,
}

impl CriEnv {
    /// Like [`CriEnv::start`], with the Slurm plugin (`container_runtime: none`)
    /// on the cluster of `slurm_conf` instead of the local plugin.
    pub fn start_slurm(slurm_conf: &Path, extra: &str) -> Result<CriEnv> {
        Self::start_with(Backend::Slurm(slurm_conf.to_path_buf()), extra)
    }

    /// Like [`CriEnv::start`], with `interlink-docker` on the engine of
    /// scripts/engine-setup.sh (its own `podman system service` socket) instead
    /// of the local plugin; containers run the engine's image.
    pub fn start_docker(engine: &crate::engine::Engine, extra: &str) -> Result<CriEnv> {
        Self::start_with(Backend::Docker(engine.env.clone()), extra)
    }

    /// Plugin, API server and host as three processes; `extra` is appended to the
    /// host's config.
    pub fn start(extra: &str) -> Result<CriEnv> {
        Self::start_with(Backend::Local, extra)
    }

    /// [`CriEnv::start`] with `env` set in the plugin, API server and host.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Result<CriEnv> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_full(Backend::Local, extra, env)
    }

    fn start_with(backend: Backend, extra: &str) -> Result<CriEnv> {
        Self::start_full(backend, extra, Vec::new())
    }

    fn start_full(backend: Backend, extra: &str, vars: Vec<(String, String)>) -> Result<CriEnv> {
        let dir = tempfile::Builder::new().prefix("cri-e2e").tempdir()?;
        let d = dir.path().to_path_buf();
        let mut env = CriEnv {
            socket: d.join("cri.sock"),
            api_socket: d.join("api.sock"),
            plugin_socket: d.join("plugin.sock"),
            log_dir: d.join("pod-logs"),
            host_config: d.join("cri.yaml"),
            dir,
            host: None,
            api: None,
            plugin: None,
            backend,
            engine_service: None,
            env: vars,
        };
        std::fs::write(
            &env.host_config,
            format!(
                "InterlinkAddress: unix://{}\nCRI:\n  SocketPath: unix://{}\n  RequestTimeout: 10s\nDataRootFolder: {}\nVerboseLogging: true\n{FAST}{extra}",
                env.api_socket.display(),
                env.socket.display(),
                d.join("host").display()
            )
            .replace(FAST, &fast_without(extra)),
        )?;
        std::fs::write(
            d.join("interlink.yaml"),
            format!(
                "InterlinkAddress: unix://{}\nSidecarURL: unix://{}\nDataRootFolder: {}\nPluginTimeoutSeconds: 10\nShutdownGraceSeconds: 1\n",
                env.api_socket.display(),
                env.plugin_socket.display(),
                d.join("api").display()
            ),
        )?;
        env.start_plugin()?;
        env.start_api()?;
        env.start_host()?;
        Ok(env)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn start_plugin(&mut self) -> Result<()> {
        if let Backend::Docker(engine) = &self.backend {
            let engine_sock = self.path("engine.sock");
            if self.engine_service.is_none() {
                self.engine_service = Some(crate::engine::start_service(
                    engine,
                    &engine_sock,
                    &self.path("engine.log"),
                    Duration::from_secs(30),
                )?);
            }
            let cfg = self.path("docker.yaml");
            let image = engine
                .get("ENGINE_IMAGE")
                .cloned()
                .unwrap_or_else(|| "localhost/mini:latest".into());
            std::fs::write(
                &cfg,
                crate::engine::docker_plugin_config(
                    &self.plugin_socket,
                    &self.path("plugin"),
                    &engine_sock,
                    &image,
                    "",
                ),
            )?;
            let mut cmd = Command::new(bin("interlink-docker"));
            cmd.arg("--config").arg(&cfg).envs(engine);
            self.plugin = Some(Proc::spawn(
                "interlink-docker",
                cmd,
                &self.path("plugin.log"),
            )?);
            return wait_for_unix_socket(&self.plugin_socket, Duration::from_secs(20));
        }
        if let Backend::Slurm(conf) = self.backend.clone() {
            let cfg = self.path("slurm.yaml");
            std::fs::write(
                &cfg,
                crate::slurm::plugin_config(&conf, "  container_runtime: none\n"),
            )?;
            let mut cmd = Command::new(bin("interlink-slurm"));
            cmd.arg("--config")
                .arg(&cfg)
                .arg("--listen")
                .arg(format!("unix://{}", self.plugin_socket.display()))
                .arg("--data-root")
                .arg(self.path("plugin"))
                .env("SLURM_CONF", &conf);
            self.plugin = Some(Proc::spawn(
                "interlink-slurm",
                cmd,
                &self.path("plugin.log"),
            )?);
            return wait_for_unix_socket(&self.plugin_socket, Duration::from_secs(20));
        }
        let mut cmd = Command::new(bin("interlink-local"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--listen")
            .arg(format!("unix://{}", self.plugin_socket.display()))
            .arg("--data-root")
            .arg(self.path("plugin"));
        self.plugin = Some(Proc::spawn(
            "interlink-local",
            cmd,
            &self.path("plugin.log"),
        )?);
        wait_for_unix_socket(&self.plugin_socket, Duration::from_secs(20))
    }

    pub fn start_api(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("interlink"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--config").arg(self.path("interlink.yaml"));
        self.api = Some(Proc::spawn("interlink", cmd, &self.path("api.log"))?);
        wait_for_unix_socket(&self.api_socket, Duration::from_secs(20))
    }

    pub fn stop_api(&mut self) {
        if let Some(mut p) = self.api.take() {
            p.kill9();
        }
    }

    pub fn start_host(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("interlink-cri"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--config").arg(&self.host_config);
        let mut p = Proc::spawn("interlink-cri", cmd, &self.path("host.log"))?;
        let end = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if !p.alive() || Instant::now() > end {
                bail!("interlink-cri did not start:\n{}", self.host_output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.host = Some(p);
        Ok(())
    }

    /// `kill -9` the host (a crash: no shutdown code runs).
    pub fn kill_host(&mut self) {
        if let Some(mut p) = self.host.take() {
            p.kill9();
        }
    }

    pub fn host_output(&self) -> String {
        std::fs::read_to_string(self.path("host.log")).unwrap_or_default()
    }

    pub async fn connect(&self) -> Result<(Rt, Img)> {
        let ch = connect(&self.socket).await?;
        Ok((
            RuntimeServiceClient::new(ch.clone()),
            ImageServiceClient::new(ch),
        ))
    }

    /// The sandbox config of a pod whose logs go under this env's log directory.
    pub fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        let mut c = sandbox_config(name, &self.log_dir);
        c.labels = [("app".to_string(), name.to_string())].into();
        c
    }
}

/// A sandbox config as kubelet sends it: namespace `default`, a pod UID
/// derived from the name, logs in `<log_root>/default_<name>_<uid>`.
pub fn sandbox_config(name: &str, log_root: &Path) -> cri::PodSandboxConfig {
    let uid = uuid_like(name);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: log_root
            .join(format!("default_{name}_{uid}"))
            .display()
            .to_string(),
        ..Default::default()
    }
}

/// [`FAST`] without the keys `extra` sets itself.
pub fn fast_without(extra: &str) -> String {
    let keys: Vec<&str> = extra
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|k| !k.starts_with(' '))
        .collect();
    FAST.lines()
        .filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k}:"))))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A deterministic lowercase UUID from a name (tests' pod UIDs).
pub fn uuid_like(name: &str) -> String {
    let mut h: u128 = 0xcbf29ce484222325;
    for b in name.bytes().chain(std::process::id().to_le_bytes()) {
        h ^= b as u128;
        h = h.wrapping_mul(0x0100_0000_01b3_0000_0001);
    }
    let s = format!("{h:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &s[0..8],
        &s[8..12],
        &s[13..16],
        &s[17..20],
        &s[20..32]
    )
}

/// A tonic channel over a Unix socket.
pub async fn connect(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .context("connect to the CRI socket")?;
    Ok(ch)
}

/// A container config running `sh -c script`, logging to `<name>.log`.
pub fn sh(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        labels: [("container".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

pub async fn run_pod(rt: &mut Rt, cfg: &cri::PodSandboxConfig) -> Result<String> {
    Ok(rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// `StopPodSandbox` then `RemovePodSandbox`, as kubelet ends a pod.
pub async fn stop_and_remove_pod(rt: &mut Rt, pod: &str) -> Result<()> {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await?;
    Ok(())
}

pub async fn create(
    rt: &mut Rt,
    sandbox: &str,
    sb: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> Result<String> {
    Ok(rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(c),
            sandbox_config: Some(sb.clone()),
        })
        .await?
        .into_inner()
        .container_id)
}

pub async fn start(rt: &mut Rt, id: &str) -> Result<()> {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await?;
    Ok(())
}

pub async fn status(rt: &mut Rt, id: &str) -> Result<cri::ContainerStatus> {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await?
    .into_inner()
    .status
    .context("no status")
}

pub async fn info(rt: &mut Rt, id: &str) -> Result<serde_json::Value> {
    let r = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    Ok(serde_json::from_str(
        r.info.get("info").context("no info")?,
    )?)
}

pub const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
pub const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
pub const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

/// Poll `ContainerStatus` until the state is `state` (never accepting CREATED
/// after a start: that fails at once).
pub async fn wait_state(
    rt: &mut Rt,
    id: &str,
    state: i32,
    timeout: Duration,
) -> Result<cri::ContainerStatus> {
    let end = Instant::now() + timeout;
    loop {
        let s = status(rt, id).await?;
        if s.state == state {
            return Ok(s);
        }
        if s.state == CREATED && s.started_at > 0 {
            bail!("container {id} shown CREATED after its start: {s:?}");
        }
        if Instant::now() > end {
            bail!("container {id} not in state {state} after {timeout:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until the file contains `needle`; returns the file.
pub async fn wait_file(path: &Path, needle: &str, timeout: Duration) -> Result<String> {
    let end = Instant::now() + timeout;
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(needle) {
            return Ok(s);
        }
        if Instant::now() > end {
            bail!(
                "{} does not contain {needle:?} after {timeout:?}; it has:\n{s}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Texts of a CRI log file's lines (`<ts> <stream> <F|P> <text>`), checking the format.
pub fn log_lines(content: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    for l in content.lines() {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        if parts.len() < 3
            || !parts[0].contains('T')
            || !matches!(parts[1], "stdout" | "stderr")
            || !matches!(parts[2], "F" | "P")
        {
            bail!("not a CRI log line: {l:?}");
        }
        out.push(parts.get(3).unwrap_or(&"").to_string());
    }
    Ok(out)
}

/// The log file of a container of a pod made by [`CriEnv::pod`].
pub fn log_file(sb: &cri::PodSandboxConfig, container: &str) -> PathBuf {
    PathBuf::from(&sb.log_directory).join(format!("{container}/0.log"))
}
