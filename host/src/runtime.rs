//! The runtime: configuration, state, hooks, the remote API and the background
//! tasks, shared by every CRI call.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::Notify;

use crate::config::Config;
use crate::events::Events;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::proto::runtime::v1 as cri;
use crate::remote::Remote;
use crate::store::{Container, Phase, Store};

pub struct Runtime {
    pub cfg: Config,
    pub store: Store,
    pub hooks: Arc<dyn Hooks>,
    pub remote: Arc<dyn Remote>,
    pub events: Events,
    pub metrics: Metrics,
    /// Wakes the dispatcher (batches due, deletions due).
    pub dispatch_wake: Notify,
    /// Last successful `/pinglink` (ns) and the last error.
    pub last_ping_ok: AtomicI64,
    pub last_ping_error: Mutex<String>,
    pub started_at: i64,
    /// Containers whose log follower runs.
    pub followers: Mutex<std::collections::HashSet<String>>,
    /// Remote pods recovered in `Sending`: ask `/status` before re-sending.
    pub probe_before_send: Mutex<std::collections::HashSet<String>>,
    /// Remote pods with a `/create` or `/delete` in flight.
    pub inflight: Mutex<std::collections::HashSet<String>>,
    /// The last `/status` request body and the store generation it was built at.
    pub poll_cache: Mutex<Option<(u64, Arc<Vec<k8s_openapi::api::core::v1::Pod>>)>>,
    /// CPU and memory usage of running containers (see `usage`).
    pub usage: crate::usage::UsageCache,
    /// The exec/attach/port-forward server, once started (see `streaming`).
    pub streaming: std::sync::OnceLock<Arc<crate::streaming::Streaming>>,
}

impl Runtime {
    pub fn new(
        cfg: Config,
        store: Store,
        hooks: Arc<dyn Hooks>,
        remote: Arc<dyn Remote>,
    ) -> Arc<Runtime> {
        let now = crate::now_ns();
        let probe: std::collections::HashSet<String> = store
            .read()
            .remotes
            .values()
            .filter(|r| r.phase == Phase::Sending)
            .map(|r| r.uid.clone())
            .collect();
        Arc::new(Runtime {
            cfg,
            store,
            hooks,
            remote,
            events: Events::default(),
            metrics: Metrics::default(),
            dispatch_wake: Notify::new(),
            last_ping_ok: AtomicI64::new(now),
            last_ping_error: Mutex::new(String::new()),
            started_at: now,
            followers: Mutex::new(Default::default()),
            probe_before_send: Mutex::new(probe),
            inflight: Mutex::new(Default::default()),
            poll_cache: Mutex::new(None),
            usage: Default::default(),
            streaming: Default::default(),
        })
    }

    /// Start the background tasks: dispatcher, status loop, ping loop, log followers
    /// of recovered containers.
    pub fn start_background(self: &Arc<Self>) {
        tokio::spawn(crate::dispatch::run(self.clone()));
        tokio::spawn(crate::status_loop::run(self.clone()));
        tokio::spawn(crate::usage::run(self.clone()));
        tokio::spawn(ping_loop(self.clone()));
        tokio::spawn(crate::dispatch::recover(self.clone()));
    }

    /// Publish a container event with the sandbox's and its containers' statuses
    /// (what kubelet's evented PLEG reads); nothing is built without subscribers.
    pub fn emit(&self, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        if !self.events.has_subscribers() {
            return;
        }
        let sandbox = crate::cri::pod_sandbox_status::pod_sandbox_status(
            self,
            cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                verbose: false,
            },
        )
        .ok()
        .and_then(|r| r.status);
        let statuses = {
            let st = self.store.read();
            st.containers
                .values()
                .filter(|c| c.sandbox_id == sandbox_id)
                .map(|c| self.container_status(c, None))
                .collect()
        };
        self.events.send(cri::ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: crate::now_ns(),
            pod_sandbox_status: sandbox,
            containers_statuses: statuses,
        });
    }

    /// The range pod IPs come from: kubelet's, else `PodCIDR`, else the default.
    pub fn pod_cidr(&self) -> crate::network::Cidr {
        let node = self.store.read().node_pod_cidr.clone();
        node.as_deref()
            .or(self.cfg.pod_cidr.as_deref())
            .and_then(|c| crate::network::Cidr::parse(c).ok())
            .unwrap_or_else(|| {
                crate::network::Cidr::parse(crate::network::DEFAULT_POD_CIDR).expect("valid")
            })
    }

    /// `Ok` when the API server answered `/pinglink` recently enough.
    pub fn runtime_ready(&self) -> Result<(), String> {
        let last = self.last_ping_ok.load(Ordering::Relaxed);
        let age = crate::now_ns() - last;
        if age > self.cfg.ping_timeout.as_nanos() as i64 {
            let err = self
                .last_ping_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            return Err(format!(
                "the interLink API server has not answered /pinglink for {}s: {err}",
                age / 1_000_000_000
            ));
        }
        Ok(())
    }

    pub fn refresh_gauges(&self) {
        let mut counts = [0i64; 4];
        for c in self.store.read().containers.values() {
            counts[(c.state as usize).min(3)] += 1;
        }
        for (i, n) in counts.iter().enumerate() {
            let name = ["created", "running", "exited", "unknown"][i];
            self.metrics
                .containers
                .get_or_create(&crate::metrics::StateLabel { state: name.into() })
                .set(*n);
        }
    }

    /// The CRI `ContainerStatus` message of a record.
    pub fn container_status(
        &self,
        c: &Container,
        sandbox_log_dir: Option<&str>,
    ) -> cri::ContainerStatus {
        let _ = sandbox_log_dir;
        cri::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(cri::ImageSpec {
                image: c.image_ref.clone(),
                ..c.config.image.clone().unwrap_or_default()
            }),
            image_ref: c.image_id.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c
                .log_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: c
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|r| cri::ContainerResources {
                    linux: Some(r),
                    windows: None,
                }),
            image_id: c.image_id.clone(),
            user: None,
            stop_signal: c.config.stop_signal,
        }
    }

    pub fn container_summary(&self, c: &Container) -> cri::Container {
        cri::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: c.config.metadata.clone(),
            image: Some(cri::ImageSpec {
                image: c.image_ref.clone(),
                ..c.config.image.clone().unwrap_or_default()
            }),
            image_ref: c.image_id.clone(),
            state: c.state,
            created_at: c.created_at,
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            image_id: c.image_id.clone(),
        }
    }
}

/// `/pinglink` every `PingInterval`. When the API server answers again after
/// failing, it may have restarted with an empty cache: re-register our pods.
async fn ping_loop(rt: Arc<Runtime>) {
    let mut down = false;
    loop {
        let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.ping()).await;
        down |= !matches!(res, Ok(Ok(())));
        match res {
            Ok(Ok(())) => {
                rt.metrics.remote("ping", true);
                rt.last_ping_ok.store(crate::now_ns(), Ordering::Relaxed);
                if std::mem::take(&mut down) {
                    tracing::info!("the interLink API server answers again; re-registering pods");
                    tokio::spawn(crate::dispatch::recover(rt.clone()));
                }
            }
            Ok(Err(e)) => {
                rt.metrics.remote("ping", false);
                tracing::warn!(error = %e, "pinglink failed");
                if let Ok(mut g) = rt.last_ping_error.lock() {
                    *g = e.to_string();
                }
            }
            Err(_) => {
                rt.metrics.remote("ping", false);
                if let Ok(mut g) = rt.last_ping_error.lock() {
                    *g = "timed out".into();
                }
            }
        }
        tokio::time::sleep(rt.cfg.ping_interval).await;
    }
}
