//! The Slurm provider: one pod, one Slurm job.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interlink::{
    CreateStruct, LogStruct, PingResources, PingResponse, PodRef, PodStatus, RetrievedPodData,
};
use interlink_plugin_kit::{LogStream, PluginError, Provider};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::config::{ContainerRuntime, SlurmConfig};
use crate::env;
use crate::files::{log_path, read_container, read_job_done};
use crate::jobinfo::JobInfo;
use crate::logs;
use crate::resources::{
    ANN_IMAGE_ROOT, ANN_MPI_FLAGS, ANN_PRE_EXEC, ANN_SINGULARITY_MOUNTS, ANN_SINGULARITY_OPTIONS,
    job_resources,
};
use crate::script::{ContainerRun, JobScript, job_name, render};
use crate::slurm::{Slurm, SlurmError};
use crate::status::{JobView, pod_status};
use crate::store::{ContainerMeta, PodRecord, Store};
use crate::volumes;
use interlink_plugin_kit::pod::{self, Placement, PodModel};
use interlink_plugin_kit::validate::uid as valid_uid;

/// A deleted pod's grace period: `terminationGracePeriodSeconds`, default 30 s.
fn grace_period(pod: &Pod) -> Duration {
    let s = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(s.clamp(0, 7 * 24 * 3600) as u64)
}

/// How long delete waits for a cancelled job's script to finish before it removes
/// the pod directory anyway (Slurm's default KillWait is 30 s).
const CLEANUP_WAIT: Duration = Duration::from_secs(40);

struct Inner {
    cfg: Arc<SlurmConfig>,
    slurm: Slurm,
    store: Store,
    pods_dir: PathBuf,
    pods: Mutex<HashMap<String, PodRecord>>,
    creating: Mutex<HashSet<String>>,
    /// The admin's job script template, read at start.
    template: Option<Arc<crate::template::Template>>,
}

/// The provider behind `interlink-slurm`.
#[derive(Clone)]
pub struct SlurmProvider {
    inner: Arc<Inner>,
}

fn unavailable(e: SlurmError) -> PluginError {
    match e {
        SlurmError::Unavailable(m) => {
            PluginError::Unavailable(format!("slurm is unavailable: {m}"))
        }
        SlurmError::Refused(m) => PluginError::Rejected(m),
    }
}

/// Removes the uid from the in-flight set when creation ends, however it ends.
struct Creating<'a>(&'a Mutex<HashSet<String>>, String);
impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl SlurmProvider {
    /// Open (or create) the state under `data_root` and load the tracked pods.
    pub fn new(cfg: SlurmConfig, data_root: &Path) -> anyhow::Result<SlurmProvider> {
        cfg.validate()?;
        let pods_dir = cfg
            .pods_dir
            .clone()
            .unwrap_or_else(|| data_root.join("pods"));
        let pods_dir = std::path::absolute(&pods_dir)?;
        // pod directories hold job scripts and volume files with Secrets
        interlink_plugin_kit::private_fs::ensure_private_dir(&pods_dir)?;
        let store = Store::open(&data_root.join("state"))?;
        let pods = store.load_all()?;
        // pod directories nobody tracks any more (a delete cut short by a restart)
        if let Ok(rd) = std::fs::read_dir(&pods_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && valid_uid(&name) && !pods.contains_key(&name) {
                    tracing::info!(uid = %name, "removing the directory of a pod no longer tracked");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        tracing::info!(pods = pods.len(), dir = %pods_dir.display(), runtime = cfg.container_runtime.as_str(), "slurm provider ready");
        if cfg.container_runtime == crate::config::ContainerRuntime::None {
            tracing::warn!(
                "container_runtime is 'none': commands run directly on the nodes, images are only recorded"
            );
        }
        for (on, what) in [
            (
                cfg.allow_pre_exec_annotation,
                "allow_pre_exec_annotation: every pod author may run shell on the nodes outside any container",
            ),
            (
                cfg.allow_singularity_options_annotation,
                "allow_singularity_options_annotation: every pod author may give container runtime options (binds of the node's files)",
            ),
        ] {
            if on {
                tracing::warn!("{what}");
            }
        }
        let template = match &cfg.job_script_template {
            Some(p) => {
                let t = crate::template::Template::load(p)?;
                tracing::info!(template = %p.display(), "job scripts are written from the admin's template");
                Some(Arc::new(t))
            }
            None => None,
        };
        let cfg = Arc::new(cfg);
        Ok(SlurmProvider {
            inner: Arc::new(Inner {
                slurm: Slurm::new(cfg.clone()),
                cfg,
                store,
                pods_dir,
                pods: Mutex::new(pods),
                creating: Mutex::new(HashSet::new()),
                template,
            }),
        })
    }

    /// How many times squeue ran.
    pub fn squeue_calls(&self) -> u64 {
        self.inner.slurm.squeue_calls()
    }

    /// Add the plugin's own metrics to the kit's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.slurm.register(registry);
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodRecord>> {
        self.inner.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, r: PodRecord) -> Result<(), PluginError> {
        self.inner.store.save(&r).map_err(|e| {
            PluginError::Internal(format!("cannot save the state of pod {}: {e}", r.uid))
        })?;
        self.pods().insert(r.uid.clone(), r);
        Ok(())
    }

    /// Everything about the job except submitting it: the script text.
    fn build_script(
        &self,
        data: &RetrievedPodData,
        pod_dir: &Path,
    ) -> Result<(String, Vec<volumes::PlannedFile>, Vec<PathBuf>), String> {
        let cfg = &self.inner.cfg;
        let pod = &data.pod;
        let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
        let res = job_resources(cfg, pod)?;
        // the job's node (so its address) is chosen by Slurm when the job
        // starts, after the script is written: the downward API has what the
        // pod itself says
        let model = PodModel::new(data, Placement::default());
        let view = model.view();
        volumes::check_host_paths(pod, &cfg.allowed_host_paths)?;
        let plan = volumes::plan(view, pod_dir)?;
        let run_checks = |c: &Container| -> Result<crate::probes::Checks, String> {
            if cfg.enable_probes {
                crate::probes::checks(c)
            } else {
                Ok(Default::default())
            }
        };
        let run = |c: &Container| -> Result<ContainerRun, String> {
            let env = env::resolve(view, c)?;
            // `$(VAR)` in command and args, as Kubernetes expands them
            let expand = |words: &Option<Vec<String>>| -> Vec<String> {
                let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
                words
                    .iter()
                    .flatten()
                    .map(|w| pod::env::expand(w, lookup))
                    .collect()
            };
            Ok(ContainerRun {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                command: expand(&c.command),
                args: expand(&c.args),
                working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
                env,
                mounts: plan.mounts.get(&c.name).cloned().unwrap_or_default(),
                checks: Default::default(),
            })
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(run)
            .collect::<Result<Vec<_>, _>>()?;
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let mut r = run(c)?;
                r.checks = run_checks(c)?;
                Ok(r)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let uid = interlink::pod_uid(pod);
        let script = JobScript {
            pod_dir: pod_dir.to_path_buf(),
            pod_label: format!(
                "{}/{} ({uid})",
                interlink::pod_namespace(pod),
                interlink::pod_name(pod)
            ),
            job_name: job_name(interlink::pod_namespace(pod), interlink::pod_name(pod)),
            flags: res.flags,
            pre_exec: pre_exec(cfg, pod)?,
            init,
            containers,
            runtime: cfg.container_runtime,
            runtime_options: runtime_options(cfg, pod)?,
            image_prefix: image_root(cfg, pod)?,
            shell: cfg.shell.clone(),
            stamp_logs: cfg.log_timestamps,
            subpath_helper: subpath_helper(cfg)?,
            binds: binds(cfg, pod)?,
            mpi: mpi(cfg, pod)?,
            template: self.inner.template.clone(),
            pod_name: interlink::pod_name(pod).to_string(),
            pod_namespace: interlink::pod_namespace(pod).to_string(),
            pod_uid: uid.to_string(),
        };
        // what an exec in each container needs, next to its other files
        let mut files = plan.files;
        files.extend(crate::exec::spec_files(&script)?);
        Ok((render(&script)?, files, plan.dirs))
    }

    /// Write the pod directory: 0700, job script 0700 (it exports the pod's env,
    /// which can hold Secret values), volume files with the pod's modes.
    fn write_pod_dir(
        pod_dir: &Path,
        script: &str,
        files: &[volumes::PlannedFile],
        dirs: &[PathBuf],
        not_ready: &[String],
    ) -> std::io::Result<PathBuf> {
        use interlink_plugin_kit::private_fs;
        if pod_dir.exists() {
            std::fs::remove_dir_all(pod_dir)?;
        }
        private_fs::create_dir_all(&pod_dir.join("containers"))?;
        // containers a readiness or startup probe gates start not ready
        for name in not_ready {
            std::fs::write(
                crate::files::containers_dir(pod_dir).join(format!("{name}.ready")),
                "0\n",
            )?;
        }
        volumes::write(
            &volumes::VolumePlan {
                files: files.to_vec(),
                dirs: dirs.to_vec(),
                mounts: Default::default(),
            },
            pod_dir,
        )?;
        let path = pod_dir.join("job.sh");
        private_fs::write_new(&path, script.as_bytes(), 0o700)?;
        Ok(path)
    }

    fn record_of(&self, pod: &Pod, pod_dir: &Path) -> PodRecord {
        let meta = |c: &Container| ContainerMeta {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
        };
        let spec = pod.spec.as_ref();
        PodRecord {
            uid: interlink::pod_uid(pod).to_string(),
            name: interlink::pod_name(pod).to_string(),
            namespace: interlink::pod_namespace(pod).to_string(),
            job_id: None,
            submit_error: None,
            pod_dir: pod_dir.to_path_buf(),
            init_containers: spec
                .into_iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .map(meta)
                .collect(),
            containers: spec
                .into_iter()
                .flat_map(|s| s.containers.iter())
                .map(meta)
                .collect(),
            created: Timestamp::now(),
            final_status: None,
            kill_at: None,
            pre_stop: self.inner.cfg.enable_probes
                && spec
                    .into_iter()
                    .flat_map(|s| s.containers.iter())
                    .any(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some())),
        }
    }

    /// Keep a pod that cannot run, so its status says why, and answer 422.
    fn refuse(&self, mut rec: PodRecord, msg: String) -> PluginError {
        tracing::warn!(uid = %rec.uid, pod = %rec.name, error = %msg, "pod refused");
        rec.submit_error = Some(msg.clone());
        if let Err(e) = self.remember(rec) {
            return e;
        }
        PluginError::Rejected(msg)
    }

    async fn do_create(&self, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        let uid = interlink::pod_uid(&data.pod).to_string();
        interlink_plugin_kit::validate::pod_uid(&uid).map_err(PluginError::BadRequest)?;
        if let Some(r) = self.pods().get(&uid)
            && r.submit_error.is_none()
        {
            // the same pod again (a retry): same job
            return Ok(CreateStruct {
                pod_uid: uid,
                pod_jid: r.job_id.clone().unwrap_or_default(),
            });
        }
        if !self
            .inner
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone())
        {
            return Err(PluginError::BadRequest(format!(
                "pod {uid} is being created by another request"
            )));
        }
        let _guard = Creating(&self.inner.creating, uid.clone());
        let pod_dir = self.inner.pods_dir.join(&uid);
        let mut rec = self.record_of(&data.pod, &pod_dir);

        let (script, files, dirs) = match self.build_script(&data, &pod_dir) {
            Ok(x) => x,
            Err(m) => return Err(self.refuse(rec, m)),
        };
        let pd = pod_dir.clone();
        let not_ready: Vec<String> = if self.inner.cfg.enable_probes {
            data.pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .filter(|c| c.readiness_probe.is_some() || c.startup_probe.is_some())
                .map(|c| c.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        let written = tokio::task::spawn_blocking(move || {
            Self::write_pod_dir(&pd, &script, &files, &dirs, &not_ready)
        })
        .await
        .map_err(|e| PluginError::Internal(e.to_string()))?;
        let script_path = written.map_err(|e| {
            PluginError::Internal(format!(
                "cannot write the pod directory {}: {e}",
                pod_dir.display()
            ))
        })?;
        match self.inner.slurm.sbatch(&script_path, &pod_dir).await {
            Ok(id) => {
                tracing::info!(%uid, pod = %rec.name, job = %id, "submitted");
                rec.job_id = Some(id.clone());
                if let Err(e) = self.remember(rec) {
                    let _ = self.inner.slurm.cancel(&id).await;
                    return Err(e);
                }
                Ok(CreateStruct {
                    pod_uid: uid,
                    pod_jid: id,
                })
            }
            Err(SlurmError::Refused(m)) => {
                let _ = std::fs::remove_dir_all(&pod_dir);
                Err(self.refuse(rec, format!("sbatch refused the job: {m}")))
            }
            Err(e @ SlurmError::Unavailable(_)) => {
                let _ = std::fs::remove_dir_all(&pod_dir);
                Err(unavailable(e))
            }
        }
    }

    async fn do_status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        let records: Vec<PodRecord> = {
            let map = self.pods();
            pods.iter()
                .filter_map(|p| map.get(&p.uid).cloned())
                .collect()
        };
        let needs_slurm = records
            .iter()
            .any(|r| r.final_status.is_none() && r.submit_error.is_none() && r.job_id.is_some());
        // Slurm unavailable: every pod is still answered, from what is stored and
        // from the script's files (pods Slurm must confirm say `SlurmUnavailable`)
        let mut down: Option<String> = None;
        let queue = if needs_slurm {
            match self.inner.slurm.queue().await {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(error = %e, "squeue failed: answering status from the pods' files");
                    down = Some(e.to_string());
                    None
                }
            }
        } else {
            None
        };

        // jobs that left the queue: ask scontrol, unless the script's own record says enough
        let mut left: HashMap<String, Result<Option<JobInfo>, String>> = HashMap::new();
        for r in &records {
            let (Some(q), Some(id), None) = (&queue, &r.job_id, &r.final_status) else {
                continue;
            };
            let in_queue = id.parse::<u64>().ok().is_some_and(|n| q.contains_key(&n));
            if !in_queue && read_job_done(&r.pod_dir).is_none() && !left.contains_key(id) {
                let info = self.inner.slurm.show_job(id).await.map_err(|e| {
                    tracing::warn!(job = %id, error = %e, "scontrol failed");
                    e.to_string()
                });
                left.insert(id.clone(), info);
            }
        }

        let inner = self.inner.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(records.len());
            let mut finals = Vec::new();
            for r in records {
                if let Some(f) = &r.final_status {
                    out.push(f.clone());
                    continue;
                }
                let id = r.job_id.clone().unwrap_or_default();
                let from_queue = queue
                    .as_ref()
                    .and_then(|q| id.parse::<u64>().ok().and_then(|n| q.get(&n)));
                let view = match (from_queue, left.get(&id), &down) {
                    (Some(j), _, _) => JobView::Known(j),
                    (None, Some(Ok(Some(j))), _) => JobView::Known(j),
                    (None, Some(Err(e)), _) => JobView::Unavailable(e),
                    (None, _, Some(e)) => JobView::Unavailable(e),
                    _ => JobView::Gone,
                };
                let (st, fin) = pod_status(&r, view, &r.pod_dir);
                if fin {
                    finals.push((r, st.clone()));
                }
                out.push(st);
            }
            for (mut r, st) in finals {
                r.final_status = Some(st);
                // under the lock, and only if the pod was not deleted meanwhile
                // (delete forgets it in the map before removing its file)
                let mut map = inner.pods.lock().unwrap_or_else(|e| e.into_inner());
                let Some(slot) = map.get_mut(&r.uid) else {
                    continue;
                };
                // a delete may have started meanwhile: keep its deadline
                r.kill_at = slot.kill_at;
                if let Err(e) = inner.store.save(&r) {
                    tracing::warn!(uid = %r.uid, error = %e, "cannot save final status");
                    continue;
                }
                *slot = r;
            }
            out
        })
        .await
        .map_err(|e| PluginError::Internal(e.to_string()))?;
        Ok(out)
    }

    async fn do_delete(&self, pod: Pod) -> Result<(), PluginError> {
        let uid = interlink::pod_uid(&pod).to_string();
        let Some(mut rec) = self.pods().get(&uid).cloned() else {
            return Ok(());
        };
        if rec.kill_at.is_some() {
            // already terminating: its grace period runs on
            return Ok(());
        }
        let (Some(id), None) = (rec.job_id.clone(), &rec.final_status) else {
            return self.forget(rec);
        };
        let grace = grace_period(&pod);
        if grace.is_zero() || !rec.pod_dir.join("job.started").exists() {
            // nothing to let finish (or no grace asked): end the job now
            self.inner.slurm.cancel(&id).await.map_err(unavailable)?;
            tracing::info!(%uid, job = %id, "cancelled");
            return self.forget(rec);
        }
        // TERM to the script and the containers now; KILL later, in the background,
        // if the job outlives the grace period. The deadline is persisted, so a
        // restarted plugin finishes the delete.
        if rec.pre_stop {
            // the job's shell runs the preStop hooks, then TERMs the containers
            self.inner.slurm.signal_batch(&id, "TERM").await
        } else {
            self.inner.slurm.signal(&id, "TERM").await
        }
        .map_err(unavailable)?;
        let deadline = jiff::SignedDuration::from_secs(grace.as_secs() as i64);
        rec.kill_at = Some(
            Timestamp::now()
                .checked_add(deadline)
                .unwrap_or_else(|_| Timestamp::now()),
        );
        {
            let mut map = self.pods();
            // unless deleted meanwhile by a concurrent request
            let Some(slot) = map.get_mut(&uid) else {
                return Ok(());
            };
            self.inner.store.save(&rec).map_err(|e| {
                PluginError::Internal(format!("cannot save the state of pod {uid}: {e}"))
            })?;
            slot.kill_at = rec.kill_at;
        }
        tracing::info!(%uid, job = %id, grace_s = grace.as_secs(), "TERM sent; KILL after the grace period if still running");
        self.spawn_finish_delete(uid);
        Ok(())
    }

    /// Resume the deletes a previous run left in their grace period.
    pub fn resume_deletes(&self) {
        let uids: Vec<String> = self
            .pods()
            .values()
            .filter(|r| r.kill_at.is_some())
            .map(|r| r.uid.clone())
            .collect();
        for uid in uids {
            self.spawn_finish_delete(uid);
        }
    }

    fn spawn_finish_delete(&self, uid: String) {
        let this = self.clone();
        tokio::spawn(async move { this.finish_delete(uid).await });
    }

    /// Wait for a terminating pod's job to end; KILL it at the end of the grace
    /// period; then forget the pod.
    async fn finish_delete(&self, uid: String) {
        loop {
            let Some(rec) = self.pods().get(&uid).cloned() else {
                return;
            };
            let (Some(kill_at), Some(id)) = (rec.kill_at, rec.job_id.clone()) else {
                return;
            };
            if rec.final_status.is_some() || read_job_done(&rec.pod_dir).is_some() {
                tracing::info!(%uid, job = %id, "ended within its grace period");
                break;
            }
            if Timestamp::now() >= kill_at {
                let s = &self.inner.slurm;
                match s.signal(&id, "KILL").await {
                    Ok(()) => match s.cancel(&id).await {
                        Ok(()) => {
                            tracing::info!(%uid, job = %id, "killed at the end of its grace period");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(%uid, job = %id, error = %e, "cannot cancel; retrying")
                        }
                    },
                    Err(e) => tracing::warn!(%uid, job = %id, error = %e, "cannot kill; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let rec = self.pods().get(&uid).cloned();
        if let Some(rec) = rec
            && let Err(e) = self.forget(rec)
        {
            tracing::warn!(%uid, error = %e, "cannot forget a deleted pod");
        }
    }

    /// Forget a pod (map and state file) and remove its directory once its script
    /// has finished writing.
    fn forget(&self, rec: PodRecord) -> Result<(), PluginError> {
        let uid = rec.uid.clone();
        {
            let mut map = self.pods();
            map.remove(&uid);
            if let Err(e) = self.inner.store.remove(&uid) {
                map.insert(uid.clone(), rec);
                return Err(PluginError::Internal(format!(
                    "cannot remove the state of pod {uid}: {e}"
                )));
            }
        }
        let dir = rec.pod_dir.clone();
        tokio::spawn(async move {
            // let the cancelled script finish writing before its directory goes
            let end = tokio::time::Instant::now() + CLEANUP_WAIT;
            while tokio::time::Instant::now() < end
                && dir.join("job.started").exists()
                && !dir.join("job.done").exists()
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove pod directory");
            }
        });
        Ok(())
    }

    async fn do_logs(&self, req: LogStruct) -> Result<LogStream, PluginError> {
        let rec = self.pods().get(&req.pod_uid).cloned().ok_or_else(|| {
            PluginError::NotFound(format!("pod {} is not known to this plugin", req.pod_uid))
        })?;
        interlink_plugin_kit::check_log_target(&req, &rec.namespace, &rec.name)?;
        let known = rec
            .init_containers
            .iter()
            .chain(rec.containers.iter())
            .any(|c| c.name == req.container_name);
        if !known {
            return Err(PluginError::NotFound(format!(
                "pod {} has no container {:?}",
                req.pod_uid, req.container_name
            )));
        }
        if req.opts.previous {
            // a Slurm pod's containers never restart: there is no previous instance
            return Ok(Box::pin(futures::stream::empty()));
        }
        let path = log_path(&rec.pod_dir, &req.container_name);
        if !req.opts.follow {
            return Ok(logs::read(&path, req.opts));
        }
        let inner = self.inner.clone();
        let (uid, name, dir) = (
            rec.uid.clone(),
            req.container_name.clone(),
            rec.pod_dir.clone(),
        );
        let finished = move || {
            if read_container(&dir, &name).exit.is_some()
                || read_job_done(&dir).is_some()
                || !dir.exists()
            {
                return true;
            }
            let map = inner.pods.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&uid).is_none_or(|r| r.final_status.is_some())
        };
        Ok(logs::follow(
            &path,
            req.opts,
            Duration::from_millis(self.inner.cfg.log_poll_ms.max(10)),
            finished,
        ))
    }

    async fn do_ping(&self) -> Result<PingResponse, PluginError> {
        let (cpus, mem) = self.inner.slurm.ping().await.map_err(unavailable)?;
        Ok(ping_answer(&self.inner.cfg.ping, cpus, mem))
    }
}

/// What ping answers: the configured capacity, else the measured totals (stable:
/// the nodes' sizes, never what is free); the configured taints.
fn ping_answer(p: &crate::config::PingConfig, cpus: u64, mem_mib: u64) -> PingResponse {
    let r = &p.resources;
    PingResponse {
        status: Some("ok".into()),
        resources: Some(PingResources {
            cpu: Some(r.cpu.clone().unwrap_or_else(|| cpus.to_string())),
            memory: Some(r.memory.clone().unwrap_or_else(|| format!("{mem_mib}Mi"))),
            pods: r.pods.clone(),
            accelerators: r
                .accelerators
                .iter()
                .map(|a| interlink::Accelerator {
                    resource_type: a.resource_type.clone(),
                    available: a.available.clone(),
                })
                .collect(),
        }),
        taints: p.taints.as_ref().map(|ts| {
            ts.iter()
                .map(|t| interlink::Taint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect: t.effect.clone(),
                })
                .collect()
        }),
    }
}

/// The image prefix: the config's `image_root` (else `image_prefix`), or the
/// pod's `slurm-job.vk.io/image-root` when it is one the admin lists in
/// `allowed_image_roots` (refused otherwise).
fn image_root(cfg: &SlurmConfig, pod: &Pod) -> Result<String, String> {
    let own = cfg
        .image_root
        .clone()
        .unwrap_or_else(|| cfg.image_prefix.clone());
    let Some(a) = annotation(pod, ANN_IMAGE_ROOT) else {
        return Ok(own);
    };
    if a == own || cfg.allowed_image_roots.iter().any(|r| r == a) {
        return Ok(a.to_string());
    }
    Err(format!(
        "annotation {ANN_IMAGE_ROOT} {a:?} is not an image root pods may use (the site admin lists them in allowed_image_roots: {})",
        if cfg.allowed_image_roots.is_empty() {
            "none".to_string()
        } else {
            cfg.allowed_image_roots.join(", ")
        }
    ))
}

/// Binds of the node's paths: the config's `singularity_mounts`, then the pod's
/// `slurm-job.vk.io/singularity-mounts` (`--bind SRC:DST[:ro]` / `SRC:DST` words)
/// when the admin allows it (refused otherwise).
fn binds(cfg: &SlurmConfig, pod: &Pod) -> Result<Vec<String>, String> {
    let mut out = cfg.singularity_mounts.clone();
    let Some(a) = gated(
        pod,
        ANN_SINGULARITY_MOUNTS,
        cfg.allow_singularity_mounts_annotation,
        "bind the node's files",
        "allow_singularity_mounts_annotation",
    )?
    else {
        return Ok(out);
    };
    let words =
        crate::resources::split_words(a).map_err(|e| format!("{ANN_SINGULARITY_MOUNTS}: {e}"))?;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let spec = match w.as_str() {
            "--bind" | "-B" | "--mount" => it
                .next()
                .ok_or_else(|| format!("{ANN_SINGULARITY_MOUNTS}: {w} without a value"))?,
            _ => w
                .strip_prefix("--bind=")
                .map(str::to_string)
                .unwrap_or(w.clone()),
        };
        if spec.starts_with('-') || spec.is_empty() {
            return Err(format!(
                "{ANN_SINGULARITY_MOUNTS}: {spec:?} is not SRC:DST[:ro] (only binds are taken)"
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// The MPI launch of `slurm-job.vk.io/mpi-flags` (`"true"` = the launcher
/// without flags, as upstream), when the admin allows it (refused otherwise).
fn mpi(cfg: &SlurmConfig, pod: &Pod) -> Result<Option<crate::script::MpiLaunch>, String> {
    let Some(a) = gated(
        pod,
        ANN_MPI_FLAGS,
        cfg.allow_mpi_flags_annotation,
        "give options to the MPI launcher, which runs",
        "allow_mpi_flags_annotation",
    )?
    else {
        return Ok(None);
    };
    let flags = if a.trim() == "true" {
        Vec::new()
    } else {
        crate::resources::split_words(a).map_err(|e| format!("{ANN_MPI_FLAGS}: {e}"))?
    };
    Ok(Some(crate::script::MpiLaunch {
        launcher: cfg.mpi_command.clone(),
        flags,
    }))
}

/// The helper binary the job scripts run for subPaths (see [`crate::subpath_exec`]).
fn subpath_helper(cfg: &SlurmConfig) -> Result<String, String> {
    let p = match &cfg.subpath_helper {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("finding the plugin's own binary for subpath_helper: {e}"))?,
    };
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("subpath_helper {p:?} is not UTF-8"))
}

/// A pod annotation's value, unless absent or blank.
fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// Why a pod's annotation is refused: it would act outside the container, and
/// only the site admin may allow that.
fn not_allowed(key: &str, what: &str, switch: &str) -> String {
    format!(
        "annotation {key} is not allowed: it would {what} outside the container; \
         the site admin can allow it with {switch}: true in the slurm plugin's config"
    )
}

/// A pod's annotation that acts outside the container: `None` when absent,
/// refused (naming it and the switch) unless the admin turned `switch` on.
fn gated<'a>(
    pod: &'a Pod,
    key: &str,
    allowed: bool,
    what: &str,
    switch: &str,
) -> Result<Option<&'a str>, String> {
    match annotation(pod, key) {
        Some(_) if !allowed => Err(not_allowed(key, what, switch)),
        a => Ok(a),
    }
}

/// The job's pre-exec shell: the config's `pre_exec`, then the pod's
/// `slurm-job.vk.io/pre-exec` when the admin allows it (refused otherwise).
fn pre_exec(cfg: &SlurmConfig, pod: &Pod) -> Result<Option<String>, String> {
    let mut parts: Vec<&str> = Vec::new();
    if !cfg.pre_exec.trim().is_empty() {
        parts.push(&cfg.pre_exec);
    }
    if let Some(a) = gated(
        pod,
        ANN_PRE_EXEC,
        cfg.allow_pre_exec_annotation,
        "run shell on the node",
        "allow_pre_exec_annotation",
    )? {
        parts.push(a);
    }
    Ok((!parts.is_empty()).then(|| {
        parts
            .iter()
            .map(|p| p.trim_end_matches('\n'))
            .collect::<Vec<_>>()
            .join("\n")
    }))
}

/// The configured runtime options plus the pod's `slurm-job.vk.io/singularity-options`
/// (apptainer/singularity only) when the admin allows them (refused otherwise).
fn runtime_options(cfg: &SlurmConfig, pod: &Pod) -> Result<Vec<String>, String> {
    let mut opts = cfg.runtime_options.clone();
    let Some(a) = gated(
        pod,
        ANN_SINGULARITY_OPTIONS,
        cfg.allow_singularity_options_annotation,
        "give the container runtime options (binds, devices, capabilities)",
        "allow_singularity_options_annotation",
    )?
    else {
        return Ok(opts);
    };
    if matches!(
        cfg.container_runtime,
        ContainerRuntime::Apptainer | ContainerRuntime::Singularity
    ) {
        let words = crate::resources::split_flags(a)
            .map_err(|e| e.replace(crate::resources::ANN_FLAGS, ANN_SINGULARITY_OPTIONS))?;
        for w in words {
            opts.extend(w.split(' ').map(str::to_string));
        }
    }
    Ok(opts)
}

impl Provider for SlurmProvider {
    async fn create(&self, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        self.do_create(data).await
    }

    async fn delete(&self, pod: Pod) -> Result<(), PluginError> {
        self.do_delete(pod).await
    }

    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        self.do_status(pods).await
    }

    async fn logs(&self, req: LogStruct) -> Result<LogStream, PluginError> {
        self.do_logs(req).await
    }

    async fn ping(&self) -> Result<PingResponse, PluginError> {
        self.do_ping().await
    }

    fn extensions(&self) -> interlink::extensions::Extensions {
        interlink::extensions::Extensions::none().with(
            interlink::extensions::EXEC,
            interlink::extensions::EXEC_VERSION,
        )
    }

    async fn exec(
        &self,
        req: interlink::exec::ExecRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        let rec = self.pods().get(&req.target.pod_uid).cloned();
        crate::exec::exec(&self.inner.cfg, rec, req)
    }

    async fn attach(
        &self,
        req: interlink::exec::AttachRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        let rec = self.pods().get(&req.target.pod_uid).cloned();
        let rec = crate::exec::pod(rec, &req.target)?;
        crate::exec::running(&rec, &req.container)?;
        let logs = crate::exec::attach_logs(&rec, &req)?;
        let output = self.do_logs(logs).await?;
        Ok(crate::exec::attach_run(rec, req.container, output))
    }

    async fn port_forward(
        &self,
        req: interlink::exec::PortForwardRequest,
    ) -> Result<interlink_plugin_kit::PortStream, PluginError> {
        let rec = self.pods().get(&req.target.pod_uid).cloned();
        crate::exec::port_forward(&self.inner.cfg, rec, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_plugin_kit::pod::{PodObjects, PodView};
    use serde_json::json;

    #[test]
    fn singularity_options_annotation() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"annotations": {
            "slurm-job.vk.io/singularity-options": "--nv --bind /scratch:/scratch"}}}))
        .unwrap();
        // by default the annotation is refused, naming it and the switch
        let strict = SlurmConfig {
            runtime_options: vec!["--cleanenv".into()],
            ..Default::default()
        };
        let e = runtime_options(&strict, &pod).unwrap_err();
        assert!(
            e.contains("singularity-options") && e.contains("allow_singularity_options_annotation"),
            "{e}"
        );
        let plain: Pod = serde_json::from_value(json!({"metadata": {}})).unwrap();
        assert_eq!(
            runtime_options(&strict, &plain).unwrap(),
            vec!["--cleanenv"]
        );
        let cfg = SlurmConfig {
            runtime_options: vec!["--cleanenv".into()],
            allow_singularity_options_annotation: true,
            ..Default::default()
        };
        assert_eq!(
            runtime_options(&cfg, &pod).unwrap(),
            vec!["--cleanenv", "--nv", "--bind", "/scratch:/scratch"]
        );
        let none = SlurmConfig {
            container_runtime: ContainerRuntime::None,
            allow_singularity_options_annotation: true,
            ..Default::default()
        };
        assert!(runtime_options(&none, &pod).unwrap().is_empty());
        let bad: Pod = serde_json::from_value(json!({"metadata": {"annotations": {
            "slurm-job.vk.io/singularity-options": "nv"}}}))
        .unwrap();
        let e = runtime_options(&cfg, &bad).unwrap_err();
        assert!(e.contains("singularity-options"), "{e}");
    }

    fn annotated(key: &str, value: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"annotations": {key: value}}})).unwrap()
    }

    /// `image-root`, `singularity-mounts` and `mpi-flags` are refused unless the
    /// admin allows them; what the admin configures applies to every pod.
    #[test]
    fn upstream_annotations_are_gated() {
        let plain: Pod = serde_json::from_value(json!({"metadata": {}})).unwrap();
        let d = SlurmConfig::default();
        // image root: the config's, or one the admin lists
        assert_eq!(image_root(&d, &plain).unwrap(), "docker://");
        let cfg = SlurmConfig {
            image_root: Some("/cvmfs/unpacked.cern.ch/".into()),
            allowed_image_roots: vec!["/sif/".into()],
            ..Default::default()
        };
        assert_eq!(
            image_root(&cfg, &plain).unwrap(),
            "/cvmfs/unpacked.cern.ch/"
        );
        assert_eq!(
            image_root(&cfg, &annotated(ANN_IMAGE_ROOT, "/sif/")).unwrap(),
            "/sif/"
        );
        let e = image_root(&cfg, &annotated(ANN_IMAGE_ROOT, "/home/eve/")).unwrap_err();
        assert!(e.contains("allowed_image_roots: /sif/"), "{e}");
        let e = image_root(&d, &annotated(ANN_IMAGE_ROOT, "/x/")).unwrap_err();
        assert!(e.contains("allowed_image_roots: none"), "{e}");

        // mounts: the admin's always, the pod's only when allowed
        let cfg = SlurmConfig {
            singularity_mounts: vec!["/cvmfs:/cvmfs:ro".into()],
            ..Default::default()
        };
        assert_eq!(binds(&cfg, &plain).unwrap(), vec!["/cvmfs:/cvmfs:ro"]);
        let pod = annotated(
            ANN_SINGULARITY_MOUNTS,
            "--bind /scratch:/scratch /data:/d:ro",
        );
        let e = binds(&cfg, &pod).unwrap_err();
        assert!(e.contains("allow_singularity_mounts_annotation"), "{e}");
        let open = SlurmConfig {
            allow_singularity_mounts_annotation: true,
            ..cfg
        };
        assert_eq!(
            binds(&open, &pod).unwrap(),
            vec!["/cvmfs:/cvmfs:ro", "/scratch:/scratch", "/data:/d:ro"]
        );
        let e = binds(&open, &annotated(ANN_SINGULARITY_MOUNTS, "--nv")).unwrap_err();
        assert!(e.contains("only binds"), "{e}");

        // mpi flags: refused by default; allowed, words are data
        let pod = annotated(ANN_MPI_FLAGS, "--bind-to core '-x A=1'");
        let e = mpi(&d, &pod).unwrap_err();
        assert!(e.contains("allow_mpi_flags_annotation"), "{e}");
        assert_eq!(mpi(&d, &plain).unwrap(), None);
        let open = SlurmConfig {
            allow_mpi_flags_annotation: true,
            ..Default::default()
        };
        let m = mpi(&open, &pod).unwrap().unwrap();
        assert_eq!(m.launcher, vec!["mpiexec", "-np", "${SLURM_NTASKS:-1}"]);
        assert_eq!(m.flags, vec!["--bind-to", "core", "-x A=1"]);
        let m = mpi(&open, &annotated(ANN_MPI_FLAGS, "true"))
            .unwrap()
            .unwrap();
        assert!(m.flags.is_empty());
    }

    /// Ping: the configured capacity and taints; else the measured totals.
    #[test]
    fn ping_answers_capacity_and_taints() {
        let measured = ping_answer(&Default::default(), 8, 16000);
        let r = measured.resources.unwrap();
        assert_eq!(
            (r.cpu.as_deref(), r.memory.as_deref()),
            (Some("8"), Some("16000Mi"))
        );
        assert_eq!(measured.taints, None);
        let p: crate::config::PingConfig = serde_yaml::from_str(
            r#"
resources: {cpu: "128", memory: 512Gi, pods: "1000",
            accelerators: [{resource_type: nvidia.com/gpu, available: "8"}]}
taints: [{key: site.io/slurm, value: "yes", effect: NoSchedule}]
"#,
        )
        .unwrap();
        let a = ping_answer(&p, 8, 16000);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            json!({"status": "ok",
                "resources": {"cpu": "128", "memory": "512Gi", "pods": "1000",
                    "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "8"}]},
                "taints": [{"key": "site.io/slurm", "value": "yes", "effect": "NoSchedule"}]})
        );
        // `[]` clears the node's taints (upstream's *[]TaintResponse)
        let p: crate::config::PingConfig = serde_yaml::from_str("taints: []").unwrap();
        assert_eq!(ping_answer(&p, 1, 1).taints, Some(vec![]));
    }

    #[test]
    fn pre_exec_is_the_admins() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"annotations": {
            "slurm-job.vk.io/pre-exec": "id > /tmp/owned"}}}))
        .unwrap();
        let plain: Pod = serde_json::from_value(json!({"metadata": {}})).unwrap();
        let cfg = SlurmConfig {
            pre_exec: "module load apptainer\n".into(),
            ..Default::default()
        };
        assert_eq!(
            pre_exec(&cfg, &plain).unwrap().as_deref(),
            Some("module load apptainer")
        );
        let e = pre_exec(&cfg, &pod).unwrap_err();
        assert!(
            e.contains("slurm-job.vk.io/pre-exec") && e.contains("allow_pre_exec_annotation"),
            "{e}"
        );
        assert_eq!(pre_exec(&SlurmConfig::default(), &plain).unwrap(), None);
        let trusting = SlurmConfig {
            allow_pre_exec_annotation: true,
            ..cfg
        };
        assert_eq!(
            pre_exec(&trusting, &pod).unwrap().as_deref(),
            Some("module load apptainer\nid > /tmp/owned")
        );
    }

    fn with_host_path(path: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "volumes": [{"name": "h", "hostPath": {"path": path}}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "h", "mountPath": "/h"}]}]}}))
        .unwrap()
    }

    #[test]
    fn host_paths_are_the_admins() {
        let check = |path: &str, allowed: &[&str]| {
            let allowed: Vec<PathBuf> = allowed.iter().map(PathBuf::from).collect();
            volumes::check_host_paths(&with_host_path(path), &allowed)
        };
        // none allowed by default
        let e = check("/", &[]).unwrap_err();
        assert!(
            e.contains("\"/\"") && e.contains("allowed_host_paths") && e.contains("none"),
            "{e}"
        );
        assert!(check("/srv/data", &[]).is_err());
        // under an allowed prefix, compared normalised
        check("/srv/data", &["/srv/data"]).unwrap();
        check("/srv/data/set1/./x", &["/srv/data/"]).unwrap();
        check("/srv/data/a/../b", &["/srv/data"]).unwrap();
        for bad in [
            "/srv/data/../../etc",
            "/srv/data/..",
            "/srv/database",
            "/srv",
            "//etc",
        ] {
            let e = check(bad, &["/srv/data"]).unwrap_err();
            assert!(e.contains(bad) && e.contains("/srv/data"), "{bad}: {e}");
        }
        assert!(
            check("/srv/data/../../etc", &["/srv/data"])
                .unwrap_err()
                .contains("(is /etc)")
        );
        assert!(check("data", &["/"]).unwrap_err().contains("absolute"));
        // what is bound is the normalised path
        let plan = volumes::plan(
            PodView {
                pod: &with_host_path("/srv/data/a/../b"),
                objects: &PodObjects::default(),
                placement: &Placement::default(),
            },
            Path::new("/pods/x"),
        )
        .unwrap();
        assert_eq!(plan.mounts["c"][0].host, PathBuf::from("/srv/data/b"));
    }

    #[test]
    fn host_path_symlinks_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        std::os::unix::fs::symlink("/", allowed.join("root")).unwrap();
        std::fs::create_dir(allowed.join("real")).unwrap();
        let a = [allowed.clone()];
        let ok = allowed.join("real");
        volumes::check_host_paths(&with_host_path(ok.to_str().unwrap()), &a).unwrap();
        let link = allowed.join("root");
        let e = volumes::check_host_paths(&with_host_path(link.to_str().unwrap()), &a).unwrap_err();
        assert!(e.contains("resolves to /"), "{e}");
        // an allowed directory that is itself a symlink still allows its contents
        let via = dir.path().join("via");
        std::os::unix::fs::symlink(&allowed, &via).unwrap();
        volumes::check_host_paths(&with_host_path(via.join("real").to_str().unwrap()), &[via])
            .unwrap();
    }
}
