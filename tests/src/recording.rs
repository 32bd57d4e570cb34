//! A plugin **test double** that runs nothing, served by the real plugin kit
//! in the test process: it records every pod it is asked to create (what a
//! plugin receives) and reports states chosen by pod name (`timeout-*`: Slurm
//! TIMEOUT, `queued-*`: pending, otherwise running). [`RecordingEnv`] puts it
//! behind the real `interlink` API server and the real `interlink-cri`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::stream;
use interlink::{CreateStruct, LogStruct, PingResponse, PodRef, PodStatus, RetrievedPodData};
use interlink_plugin_kit::{Listen, LogStream, PluginError, Provider, serve};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod,
};

use crate::cri::{self as h, Rt, cri};
use crate::{Proc, bin, wait_for_unix_socket};

/// The recording plugin (see the module).
#[derive(Default)]
pub struct Recorder {
    created: Mutex<Vec<Pod>>,
}

impl Recorder {
    /// The pod named `name`, if the plugin was asked to create it.
    pub fn pod(&self, name: &str) -> Option<Pod> {
        self.created
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .cloned()
    }
}

fn state_for(pod: &str) -> ContainerState {
    if pod.starts_with("timeout-") {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("TIMEOUT".into()),
                message: Some("DUE TO TIME LIMIT".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    } else if pod.starts_with("queued-") {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("PENDING".into()),
                message: Some("Priority".into()),
            }),
            ..Default::default()
        }
    } else {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }
}

impl Provider for Recorder {
    async fn create(&self, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        let uid = data.pod.metadata.uid.clone().unwrap_or_default();
        let mut created = self.created.lock().unwrap();
        created.push(data.pod);
        Ok(CreateStruct {
            pod_uid: uid,
            pod_jid: format!("{}", 1000 + created.len()),
        })
    }

    async fn delete(&self, _pod: Pod) -> Result<(), PluginError> {
        Ok(())
    }

    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        let created = self.created.lock().unwrap();
        Ok(pods
            .iter()
            .filter_map(|p| {
                let uid = p.uid.clone();
                let known = created
                    .iter()
                    .position(|c| c.metadata.uid.as_deref() == Some(&uid))?;
                let name = p.name.clone();
                let spec = created[known].spec.clone().unwrap_or_default();
                Some(PodStatus {
                    pod_name: name.clone(),
                    pod_uid: uid,
                    pod_namespace: p.namespace.clone(),
                    job_id: format!("{}", 1001 + known),
                    containers: spec
                        .containers
                        .iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            image: c.image.clone().unwrap_or_default(),
                            state: Some(state_for(&name)),
                            ready: true,
                            ..Default::default()
                        })
                        .collect(),
                    init_containers: vec![],
                })
            })
            .collect())
    }

    async fn logs(&self, _req: LogStruct) -> Result<LogStream, PluginError> {
        Ok(Box::pin(stream::empty()))
    }

    async fn ping(&self) -> Result<PingResponse, PluginError> {
        Ok(PingResponse::default())
    }
}

/// The recording plugin (in this process), the real API server and the real
/// host, in one temporary directory.
pub struct RecordingEnv {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub recorder: Arc<Recorder>,
    _api: Proc,
    host: Proc,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RecordingEnv {
    /// Plugin, API server and host; `host_extra` gets the directory (to
    /// prepare files in) and returns keys appended to the host's config.
    pub async fn start(host_extra: impl FnOnce(&Path) -> String) -> Result<RecordingEnv> {
        let dir = tempfile::Builder::new().prefix("ext-e2e").tempdir()?;
        let d = dir.path().to_path_buf();
        let extra = host_extra(&d);

        let plugin_socket = d.join("plugin.sock");
        let recorder = Arc::new(Recorder::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (r, listen) = (recorder.clone(), Listen::Unix(plugin_socket.clone()));
        tokio::spawn(async move {
            let _ = serve(r, listen, async move {
                let _ = stopped.await;
            })
            .await;
        });
        wait_for_unix_socket(&plugin_socket, Duration::from_secs(10))?;

        let api_socket = d.join("api.sock");
        std::fs::write(
            d.join("interlink.yaml"),
            format!(
                "InterlinkAddress: unix://{}\nSidecarURL: unix://{}\nDataRootFolder: {}\nPluginTimeoutSeconds: 10\nShutdownGraceSeconds: 1\n",
                api_socket.display(),
                plugin_socket.display(),
                d.join("api").display()
            ),
        )?;
        let mut cmd = Command::new(bin("interlink"));
        cmd.arg("--config").arg(d.join("interlink.yaml"));
        let api = Proc::spawn("interlink", cmd, &d.join("api.log"))?;
        wait_for_unix_socket(&api_socket, Duration::from_secs(20))?;

        let socket = d.join("cri.sock");
        std::fs::write(
            d.join("cri.yaml"),
            format!(
                "InterlinkAddress: unix://{}\nCRI:\n  SocketPath: unix://{}\n  RequestTimeout: 10s\nDataRootFolder: {}\nVerboseLogging: true\n{}",
                api_socket.display(),
                socket.display(),
                d.join("host").display(),
                crate::cri::fast_without(&extra) + &extra
            ),
        )?;
        let mut cmd = Command::new(bin("interlink-cri"));
        cmd.arg("--config").arg(d.join("cri.yaml"));
        let host = Proc::spawn("interlink-cri", cmd, &d.join("host.log"))?;
        wait_for_unix_socket(&socket, Duration::from_secs(60)).with_context(|| {
            format!(
                "interlink-cri did not start:\n{}",
                std::fs::read_to_string(d.join("host.log")).unwrap_or_default()
            )
        })?;
        Ok(RecordingEnv {
            dir,
            socket,
            recorder,
            _api: api,
            host,
            stop: Some(stop),
        })
    }

    pub async fn rt(&self) -> Result<Rt> {
        Ok(cri::runtime_service_client::RuntimeServiceClient::new(
            h::connect(&self.socket).await?,
        ))
    }

    pub fn host_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// A sandbox config (pod UID derived from the name), logs in the directory.
    pub fn sandbox(&self, name: &str, annotations: &[(&str, &str)]) -> cri::PodSandboxConfig {
        let mut c = h::sandbox_config(name, &self.dir.path().join("logs"));
        c.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c
    }

    /// RunPodSandbox + CreateContainer + StartContainer; the container id.
    pub async fn run(
        &self,
        rt: &mut Rt,
        sb: &cri::PodSandboxConfig,
        c: cri::ContainerConfig,
    ) -> Result<String> {
        let sandbox = h::run_pod(rt, sb).await?;
        let id = h::create(rt, &sandbox, sb, c).await?;
        h::start(rt, &id).await?;
        Ok(id)
    }

    /// The pod the plugin received, waiting for it (20 s at most).
    pub async fn wait_created(&self, name: &str) -> Result<Pod> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = self.recorder.pod(name) {
                return Ok(p);
            }
            anyhow::ensure!(
                Instant::now() < end,
                "the plugin never received pod {name}; host log:\n{}",
                self.host_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RecordingEnv {
    fn drop(&mut self) {
        self.host.stop(Duration::from_secs(2));
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
