//! [`LocalProvider`]: the plugin calls on top of the per-pod runner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interlink::{
    CreateStruct, LogStruct, PingResources, PingResponse, PodRef, PodStatus, RetrievedPodData,
};
use interlink_plugin_kit::{LogStream, PluginError, Provider};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{self as core, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::launch::{self, LaunchError};
use crate::logfile;
use crate::options::{LocalOptions, Supervisor};
use crate::state::{self, ContainerRecord, ContainerState, LOST_EXIT_CODE, PodRecord};
use crate::{process, runner, volumes};
use interlink_plugin_kit::pod::{self, PodModel};

/// Why the local provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("data root {path}: {source}")]
    DataRoot {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One tracked pod.
pub(crate) struct PodEntry {
    pub uid: String,
    pub dir: PathBuf,
    pub rec: Mutex<PodRecord>,
    /// Cancelled when the pod is being deleted: no container starts after that.
    pub deleting: CancellationToken,
    pub runner: Mutex<Option<JoinHandle<()>>>,
    /// Where every status change of the pod goes (the `statusWatch` feed).
    pub changes: tokio::sync::broadcast::Sender<PodStatus>,
    /// Bumped on each change of the record and when the runner ends: what log
    /// followers wait on to learn a container's end.
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl PodEntry {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, PodRecord> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Persist the record (call with the lock held, passing the guarded record).
    pub fn save(&self, rec: &PodRecord) {
        self.announce(rec);
        if self.deleting.is_cancelled() && !self.dir.exists() {
            return;
        }
        if let Err(e) = state::save(&self.dir.join("state.json"), rec) {
            tracing::error!(uid = %self.uid, "cannot persist the pod's state: {e}");
        }
    }

    /// Tell the watchers (status streams, log followers) the record changed.
    fn announce(&self, rec: &PodRecord) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(pod_status(rec));
        }
    }

    pub fn log_path(&self, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{container}.log"))
    }

    pub fn exit_path(&self, container: &str) -> PathBuf {
        self.dir.join("run").join(format!("{container}.exit"))
    }
}

pub(crate) struct Inner {
    pub pods_dir: PathBuf,
    pub opts: LocalOptions,
    pub supervisor: Supervisor,
    pub path_var: String,
    pub pods: Mutex<HashMap<String, Arc<PodEntry>>>,
    /// Runners of recovered pods start with the first call inside a runtime.
    started: AtomicBool,
    /// Every pod's status changes (see [`PodEntry::changes`]).
    changes: tokio::sync::broadcast::Sender<PodStatus>,
}

/// Status changes kept for a slow watcher before it must start over.
const CHANGES_BACKLOG: usize = 4096;

impl Inner {
    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PodEntry>>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs each pod's containers as processes on this host (no image isolation:
/// the image is only recorded). See the crate documentation.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

impl LocalProvider {
    /// A provider keeping its pods under `data_root`, with default options.
    pub fn new(data_root: PathBuf) -> Result<LocalProvider, LocalError> {
        LocalProvider::with_options(data_root, LocalOptions::default())
    }

    /// A provider keeping its pods under `data_root`. Pods persisted there by an
    /// earlier run are recovered: live processes are recognised by pid and start
    /// time, ended ones get their recorded exit status, or `Lost` when none was
    /// recorded.
    pub fn with_options(
        data_root: PathBuf,
        opts: LocalOptions,
    ) -> Result<LocalProvider, LocalError> {
        let pods_dir = data_root.join("pods");
        let io = |source| LocalError::DataRoot {
            path: pods_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&pods_dir).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pods_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        }
        let supervisor = opts.supervisor();
        let path_var = opts.path.clone().unwrap_or_else(|| {
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            })
        });
        match &supervisor {
            Supervisor::Shim(p) => {
                tracing::info!(shim = %p.display(), "local plugin: containers are supervised by shim processes")
            }
            Supervisor::InProcess => tracing::warn!(
                "local plugin: no interlink-local binary found for supervising containers; supervising them in this process \
                 (a restart of this process loses the output and exit status of running containers)"
            ),
        }
        tracing::warn!(
            "local plugin: containers run as plain processes of this host, as this plugin's user, \
             with no image or filesystem isolation (images are recorded, never pulled): \
             for development and single-tenant use only"
        );
        let inner = Arc::new(Inner {
            pods_dir: pods_dir.clone(),
            opts,
            supervisor,
            path_var,
            pods: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            changes: tokio::sync::broadcast::channel(CHANGES_BACKLOG).0,
        });
        let entries = std::fs::read_dir(&pods_dir).map_err(io)?;
        for ent in entries.flatten() {
            let dir = ent.path();
            let file = dir.join("state.json");
            if !file.exists() {
                continue;
            }
            match state::load(&file) {
                Ok(rec) => {
                    let e = Arc::new(PodEntry {
                        uid: rec.uid.clone(),
                        dir,
                        rec: Mutex::new(rec),
                        deleting: CancellationToken::new(),
                        runner: Mutex::new(None),
                        changes: inner.changes.clone(),
                        changed: tokio::sync::watch::Sender::new(0),
                    });
                    reconcile(&e);
                    inner.pods().insert(e.uid.clone(), e);
                }
                Err(err) => {
                    tracing::error!(file = %file.display(), "cannot read a persisted pod, ignoring it: {err}")
                }
            }
        }
        let n = inner.pods().len();
        if n > 0 {
            tracing::info!(pods = n, "recovered persisted pods");
        }
        let p = LocalProvider { inner };
        if tokio::runtime::Handle::try_current().is_ok() {
            p.ensure_started();
        }
        Ok(p)
    }

    /// Number of pods tracked.
    pub fn pod_count(&self) -> usize {
        self.inner.pods().len()
    }

    fn ensure_started(&self) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let entries: Vec<_> = self.inner.pods().values().cloned().collect();
        for e in entries {
            start_runner(&self.inner, e);
        }
    }

    fn entry(&self, uid: &str) -> Option<Arc<PodEntry>> {
        self.inner.pods().get(uid).cloned()
    }
}

fn start_runner(inner: &Arc<Inner>, e: Arc<PodEntry>) {
    let (i2, e2) = (inner.clone(), e.clone());
    let h = tokio::spawn(async move {
        runner::run_pod(i2, e2.clone()).await;
        // followers ask `runner_done` too: wake them
        e2.changed.send_modify(|v| *v = v.wrapping_add(1));
    });
    *e.runner.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
}

/// A running container for the usage pass: its name, its group leader's pid
/// and that leader's start time.
type Leader = (String, i32, u64);

/// After a restart: settle the containers whose process is gone.
fn reconcile(e: &PodEntry) {
    let mut guard = e.lock();
    let rec = &mut *guard;
    let mut changed = false;
    let uid = rec.uid.clone();
    for c in rec
        .init_containers
        .iter_mut()
        .chain(rec.containers.iter_mut())
    {
        if let ContainerState::Running {
            pid,
            start_ticks,
            started_at,
        } = c.state.clone()
        {
            if process::alive(pid, start_ticks) {
                tracing::info!(uid = %uid, container = %c.name, pid, "process still running after the restart");
                continue;
            }
            c.state = ended_state(&e.exit_path(&c.name), pid, started_at);
            changed = true;
        }
    }
    if changed {
        e.save(rec);
    }
}

/// The end of a process that was not waited for: its exit file, else `Lost`.
pub(crate) fn ended_state(exit_file: &Path, pid: i32, started_at: Timestamp) -> ContainerState {
    match state::read_exit(exit_file) {
        Some(x) => x.into_state(),
        None => {
            tracing::warn!(
                pid,
                "a container process ended without a recorded exit status: reporting it as Lost"
            );
            ContainerState::Terminated {
                exit_code: LOST_EXIT_CODE,
                signal: None,
                reason: "Lost".to_string(),
                message: Some(format!(
                    "process {pid} ended while the local plugin was not watching it; its exit status is unknown"
                )),
                started_at: Some(started_at),
                finished_at: Timestamp::now(),
            }
        }
    }
}

fn grace_of(pod: &Pod) -> Option<i64> {
    pod.metadata.deletion_grace_period_seconds.or_else(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
    })
}

fn container_status(uid: &str, c: &ContainerRecord) -> core::ContainerStatus {
    let state = match &c.state {
        ContainerState::Waiting { reason, message } => core::ContainerState {
            waiting: Some(core::ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        ContainerState::Running { started_at, .. } => core::ContainerState {
            running: Some(core::ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => core::ContainerState {
            terminated: Some(core::ContainerStateTerminated {
                container_id: Some(format!("local://{uid}/{}", c.name)),
                exit_code: *exit_code,
                signal: *signal,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: started_at.map(Time),
                finished_at: Some(Time(*finished_at)),
            }),
            ..Default::default()
        },
    };
    let running = matches!(c.state, ContainerState::Running { .. });
    core::ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id: Some(format!("local://{uid}/{}", c.name)),
        ready: running,
        started: Some(running),
        restart_count: 0,
        state: Some(state),
        ..Default::default()
    }
}

fn pod_status(rec: &PodRecord) -> PodStatus {
    PodStatus {
        pod_name: rec.name.clone(),
        pod_uid: rec.uid.clone(),
        pod_namespace: rec.namespace.clone(),
        job_id: rec.uid.clone(),
        containers: rec
            .containers
            .iter()
            .map(|c| container_status(&rec.uid, c))
            .collect(),
        init_containers: rec
            .init_containers
            .iter()
            .map(|c| container_status(&rec.uid, c))
            .collect(),
    }
}

/// The answer for a pod this plugin does not know.
fn unknown_status(pod: &PodRef) -> PodStatus {
    let uid = pod.uid.clone();
    let now = Timestamp::now();
    let gone = |c: &interlink::ContainerRef| core::ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        state: Some(core::ContainerState {
            terminated: Some(core::ContainerStateTerminated {
                exit_code: LOST_EXIT_CODE,
                reason: Some("NotFound".into()),
                message: Some(format!("pod {uid} is not known to the local plugin")),
                finished_at: Some(Time(now)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    PodStatus {
        pod_name: pod.name.clone(),
        pod_uid: uid.clone(),
        pod_namespace: pod.namespace.clone(),
        job_id: String::new(),
        containers: pod.containers.iter().map(gone).collect(),
        init_containers: pod.init_containers.iter().map(gone).collect(),
    }
}

fn io_internal(what: &str, p: &Path, e: std::io::Error) -> PluginError {
    PluginError::Internal(format!("{what} {}: {e}", p.display()))
}

impl LocalProvider {
    fn prepare(&self, data: &RetrievedPodData, dir: &Path) -> Result<PodRecord, PluginError> {
        let pod = &data.pod;
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| PluginError::BadRequest("pod has no spec".into()))?;
        for sub in ["work", "logs", "run", "volumes"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| io_internal("create", &p, e))?;
        }
        let model = PodModel::new(data, pod::host::this_host());
        let view = model.view();
        let record = |c: &core::Container, state: ContainerState, launch| ContainerRecord {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            launch,
            state,
            stdin: c.stdin == Some(true),
            stdin_once: c.stdin == Some(true) && c.stdin_once == Some(true),
        };
        let init: Vec<&core::Container> = spec.init_containers.iter().flatten().collect();
        let mut rec = PodRecord {
            uid: interlink::pod_uid(pod).to_string(),
            name: interlink::pod_name(pod).to_string(),
            namespace: interlink::pod_namespace(pod).to_string(),
            created_at: Timestamp::now(),
            grace_seconds: grace_of(pod)
                .unwrap_or(self.inner.opts.default_grace_seconds.unwrap_or(30)),
            init_containers: Vec::new(),
            containers: Vec::new(),
            refused: None,
        };
        let vols = volumes::prepare(dir, view);
        let mut refusal: Option<LaunchError> = vols.as_ref().err().map(|m| LaunchError {
            reason: "CreateContainerConfigError",
            message: m.clone(),
        });
        let vols = vols.unwrap_or_default();
        let mut resolve = |c: &core::Container, first_state: ContainerState| {
            if refusal.is_some() {
                return record(c, ContainerState::waiting("PodRefused", None), None);
            }
            match launch::resolve(dir, view, c, &vols, &self.inner.path_var) {
                Ok(l) => record(c, first_state, Some(l)),
                Err(err) => {
                    let r = record(
                        c,
                        ContainerState::waiting(err.reason, Some(err.message.clone())),
                        None,
                    );
                    refusal = Some(err);
                    r
                }
            }
        };
        let initializing = !init.is_empty();
        rec.init_containers = init
            .iter()
            .map(|c| resolve(c, ContainerState::waiting("PodInitializing", None)))
            .collect();
        let first = if initializing {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        rec.containers = spec
            .containers
            .iter()
            .map(|c| resolve(c, ContainerState::waiting(first, None)))
            .collect();
        if let Some(err) = refusal {
            // every container says why the pod did not start
            for c in rec
                .init_containers
                .iter_mut()
                .chain(rec.containers.iter_mut())
            {
                if matches!(&c.state, ContainerState::Waiting { message: None, .. }) {
                    c.state = ContainerState::waiting(err.reason, Some(err.message.clone()));
                }
            }
            rec.refused = Some(err.message);
        }
        Ok(rec)
    }
}

impl Provider for LocalProvider {
    async fn create(&self, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        self.ensure_started();
        let uid = interlink::pod_uid(&data.pod).to_string();
        if let Some(e) = self.entry(&uid) {
            let refused = e.lock().refused.is_some();
            if !refused {
                tracing::info!(uid = %uid, "create of a pod already known: answering its existing job");
                return Ok(CreateStruct {
                    pod_uid: uid.clone(),
                    pod_jid: uid,
                });
            }
            // a refused pod never ran: try again with what was sent this time
            tracing::info!(uid = %uid, "create of a pod refused before: trying again");
            self.inner.pods().remove(&uid);
            forget_dir(&e.dir).await;
        }
        if let Some(max) = self.inner.opts.max_pods
            && self.pod_count() >= max
        {
            return Err(PluginError::Rejected(format!(
                "the local plugin runs at most {max} pods"
            )));
        }
        let dir = self.inner.pods_dir.join(&uid);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_internal("create", &dir, e))?;
        }
        let this = self.clone();
        let data2 = data;
        let dir2 = dir.clone();
        let rec = tokio::task::spawn_blocking(move || this.prepare(&data2, &dir2))
            .await
            .map_err(|e| PluginError::Internal(format!("prepare the pod: {e}")))??;
        let refused = rec.refused.clone();
        let e = Arc::new(PodEntry {
            uid: uid.clone(),
            dir,
            rec: Mutex::new(rec),
            deleting: CancellationToken::new(),
            runner: Mutex::new(None),
            changes: self.inner.changes.clone(),
            changed: tokio::sync::watch::Sender::new(0),
        });
        {
            let rec = e.lock();
            e.save(&rec);
        }
        {
            let mut pods = self.inner.pods();
            if pods.contains_key(&uid) {
                // a concurrent create of the same pod won
                return Ok(CreateStruct {
                    pod_uid: uid.clone(),
                    pod_jid: uid,
                });
            }
            pods.insert(uid.clone(), e.clone());
        }
        if let Some(m) = refused {
            tracing::warn!(uid = %uid, "pod refused: {m}");
            return Err(PluginError::Rejected(m));
        }
        tracing::info!(uid = %uid, "pod created (no image isolation: its commands run on this host)");
        start_runner(&self.inner, e);
        Ok(CreateStruct {
            pod_uid: uid.clone(),
            pod_jid: uid,
        })
    }

    async fn delete(&self, pod: Pod) -> Result<(), PluginError> {
        self.ensure_started();
        let uid = interlink::pod_uid(&pod).to_string();
        let Some(e) = self.entry(&uid) else {
            tracing::info!(uid = %uid, "delete of an unknown pod: nothing to do");
            return Ok(());
        };
        e.deleting.cancel();
        let (grace, procs) = {
            let rec = e.lock();
            let grace = grace_of(&pod).unwrap_or(rec.grace_seconds).max(0);
            let procs: Vec<(i32, u64)> = rec
                .init_containers
                .iter()
                .chain(rec.containers.iter())
                .filter_map(|c| match c.state {
                    ContainerState::Running {
                        pid, start_ticks, ..
                    } => Some((pid, start_ticks)),
                    _ => None,
                })
                .collect();
            (grace, procs)
        };
        stop_processes(&procs, Duration::from_secs(grace as u64)).await;
        let runner = e.runner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = runner {
            // it records how the containers ended, then returns
            if tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .is_err()
            {
                tracing::warn!(uid = %uid, "the pod's runner did not finish after its processes were stopped");
            }
        }
        self.inner.pods().remove(&uid);
        forget_dir(&e.dir).await;
        tracing::info!(uid = %uid, grace, "pod deleted");
        Ok(())
    }

    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        self.ensure_started();
        let map = self.inner.pods();
        Ok(pods
            .iter()
            .map(|p| match map.get(&p.uid) {
                Some(e) => pod_status(&e.lock()),
                None => unknown_status(p),
            })
            .collect())
    }

    fn extensions(&self) -> interlink::extensions::Extensions {
        use interlink::extensions as x;
        let e = x::Extensions::none()
            .with(x::STATS, x::STATS_VERSION)
            .with(x::EXEC, x::EXEC_VERSION);
        if self.inner.opts.status_watch == Some(false) {
            return e;
        }
        e.with(x::STATUS_WATCH, x::STATUS_WATCH_VERSION)
    }

    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<PodStatus>> {
        if self.inner.opts.status_watch == Some(false) {
            return None;
        }
        self.ensure_started();
        Some(self.inner.changes.subscribe())
    }

    async fn status_all(&self) -> Result<Vec<PodStatus>, PluginError> {
        self.ensure_started();
        let entries: Vec<_> = self.inner.pods().values().cloned().collect();
        Ok(entries.iter().map(|e| pod_status(&e.lock())).collect())
    }

    async fn exec(
        &self,
        req: interlink::exec::ExecRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        self.ensure_started();
        crate::exec::exec(self.entry(&req.target.pod_uid), req)
    }

    async fn attach(
        &self,
        req: interlink::exec::AttachRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        self.ensure_started();
        crate::exec::attach(self.entry(&req.target.pod_uid), req).await
    }

    async fn port_forward(
        &self,
        req: interlink::exec::PortForwardRequest,
    ) -> Result<interlink_plugin_kit::PortStream, PluginError> {
        self.ensure_started();
        crate::exec::port_forward(self.entry(&req.target.pod_uid), req).await
    }

    async fn stats(
        &self,
        pods: &[PodRef],
    ) -> Result<Vec<interlink::extensions::PodStats>, PluginError> {
        self.ensure_started();
        // (pod uid, its running containers); whether each still runs is read
        // in the same pass over /proc as the usage
        let mut wanted: Vec<(String, Vec<Leader>)> = Vec::new();
        {
            let map = self.inner.pods();
            for p in pods {
                let Some(e) = map.get(&p.uid) else {
                    continue;
                };
                let rec = e.lock();
                let running = rec
                    .init_containers
                    .iter()
                    .chain(rec.containers.iter())
                    .filter_map(|c| match c.state {
                        ContainerState::Running {
                            pid, start_ticks, ..
                        } => Some((c.name.clone(), pid, start_ticks)),
                        _ => None,
                    })
                    .collect();
                wanted.push((rec.uid.clone(), running));
            }
        }
        let skip_leaders = matches!(self.inner.supervisor, Supervisor::Shim(_));
        tokio::task::spawn_blocking(move || {
            let groups: HashMap<i32, u64> = wanted
                .iter()
                .flat_map(|(_, cs)| cs.iter().map(|(_, pid, start)| (*pid, *start)))
                .collect();
            let usage = crate::stats::read_groups(&groups, skip_leaders);
            let now = Timestamp::now();
            wanted
                .into_iter()
                .map(|(uid, cs)| interlink::extensions::PodStats {
                    pod_uid: uid,
                    containers: cs
                        .into_iter()
                        .filter_map(|(name, pid, _)| {
                            usage
                                .get(&pid)
                                .map(|u| crate::stats::container_stats(&name, *u, now))
                        })
                        .collect(),
                })
                .collect()
        })
        .await
        .map_err(|e| PluginError::Internal(format!("reading usage: {e}")))
    }

    async fn logs(&self, req: LogStruct) -> Result<LogStream, PluginError> {
        self.ensure_started();
        let Some(e) = self.entry(&req.pod_uid) else {
            return Err(PluginError::NotFound(format!(
                "pod {} is not known to the local plugin",
                req.pod_uid
            )));
        };
        let known = {
            let rec = e.lock();
            interlink_plugin_kit::check_log_target(&req, &rec.namespace, &rec.name)?;
            rec.init_containers
                .iter()
                .chain(rec.containers.iter())
                .any(|c| c.name == req.container_name)
        };
        if !known {
            return Err(PluginError::NotFound(format!(
                "pod {} has no container {:?}",
                req.pod_uid, req.container_name
            )));
        }
        if req.opts.previous {
            return Err(PluginError::NotFound(
                "no previous instance: the local plugin does not restart containers".into(),
            ));
        }
        let path = e.log_path(&req.container_name);
        let ended = req.opts.follow.then(|| e.changed.subscribe());
        let finished: Option<Arc<dyn Fn() -> bool + Send + Sync>> = if req.opts.follow {
            let name = req.container_name.clone();
            let weak = Arc::downgrade(&e);
            // A pod being deleted is not finished: its processes get TERM and may
            // still write (a trap's last words) until they end, which the record
            // shows once they have. The entry goes only after they all ended.
            Some(Arc::new(move || match weak.upgrade() {
                None => true,
                Some(e) => {
                    let rec = e.lock();
                    let c = rec
                        .init_containers
                        .iter()
                        .chain(rec.containers.iter())
                        .find(|c| c.name == name);
                    // a container that will never start (refused, blocked) is finished too
                    rec.refused.is_some()
                        || c.is_none_or(|c| c.state.is_terminated())
                        || runner_done(&e)
                }
            }))
        } else {
            None
        };
        logfile::stream_notified(path.clone(), &req.opts, Timestamp::now(), finished, ended)
            .await
            .map_err(|err| io_internal("read", &path, err))
    }

    async fn ping(&self) -> Result<PingResponse, PluginError> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        // capacity, not what is free now: upstream's virtual kubelet writes these
        // into the node's capacity, which must not drift from one ping to the next
        let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(|kb| format!("{kb}Ki"))
        });
        let pods = self.inner.opts.max_pods.map(|m| m.to_string());
        Ok(PingResponse {
            status: Some("ok".into()),
            resources: Some(PingResources {
                cpu: Some(cpus.to_string()),
                memory,
                pods,
                accelerators: Vec::new(),
            }),
            taints: None,
        })
    }
}

/// Remove a pod's directory, its state file first (so a half-removed pod is
/// not recovered by the next start).
async fn forget_dir(dir: &Path) {
    let dir = dir.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || {
        match std::fs::remove_file(dir.join("state.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::remove_dir_all(&dir)
    })
    .await;
    if let Ok(Err(err)) = removed {
        tracing::warn!("cannot remove a pod directory: {err}");
    }
}

/// The runner of a pod has returned: nothing more will start.
fn runner_done(e: &PodEntry) -> bool {
    e.runner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|h| h.is_finished())
}

/// The longest grace period honoured (about 30 years; the pod spec allows any i64).
const MAX_GRACE: Duration = Duration::from_secs(1 << 30);

/// TERM each process group, KILL what is left after `grace`.
async fn stop_processes(procs: &[(i32, u64)], grace: Duration) {
    let mut live: Vec<(i32, u64)> = procs
        .iter()
        .copied()
        .filter(|(p, t)| process::signal_group(*p, *t, Signal::SIGTERM))
        .collect();
    // a grace period from the pod spec may be too large for an instant: wait "forever"
    let now = tokio::time::Instant::now();
    let deadline = now.checked_add(grace).unwrap_or_else(|| now + MAX_GRACE);
    while !live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        live.retain(|(p, t)| process::alive(*p, *t));
    }
    if live.is_empty() {
        return;
    }
    for (p, t) in &live {
        tracing::info!(pid = p, "still running after the grace period: KILL");
        process::signal_group(*p, *t, Signal::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        live.retain(|(p, t)| process::alive(*p, *t));
    }
}
