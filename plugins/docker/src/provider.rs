//! The Docker provider: each pod is an infra container holding its namespaces
//! plus one engine container per Kubernetes container, all labelled with the
//! pod's UID. Init containers run in order in a background task (resumed after a
//! plugin restart), then the regular containers start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures::{StreamExt, TryStreamExt};
use interlink::{
    CreateStruct, LogStruct, PingResources, PingResponse, PodRef, PodStatus, RetrievedPodData,
    pod_uid,
};
use interlink_plugin_kit::{LogStream, PluginError, Provider};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

use crate::config::Config;
use crate::engine::raw::{Inspect, RawError, normalize};
use crate::engine::{Engine, is_connection_error, is_not_found};
use crate::spec::{self, LABEL_POD_UID, Role};
use crate::state::{ContainerRecord, Failure, PodRecord, StateError, Store};
use crate::status;
use crate::volumes;
use interlink_plugin_kit::pod::{self, PodModel};

pub struct DockerProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    engine: Engine,
    store: Store,
    pods: Mutex<BTreeMap<String, PodRecord>>,
    drivers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Statuses of containers in a final or stable state, by engine id, with the
    /// engine's list state they were computed for.
    cache: Mutex<HashMap<String, (String, ContainerStatus)>>,
    creating: Mutex<HashSet<String>>,
}

/// Up to this many containers to look at, a status request inspects each;
/// beyond, one engine list call finds which changed.
const DIRECT_INSPECT_MAX: usize = 32;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pod that cannot run: the Kubernetes waiting reason and the error returned.
struct Refusal {
    reason: &'static str,
    err: PluginError,
}

impl Refusal {
    fn rejected(reason: &'static str, msg: String) -> Refusal {
        Refusal {
            reason,
            err: PluginError::Rejected(msg),
        }
    }
}

impl From<PluginError> for Refusal {
    fn from(err: PluginError) -> Refusal {
        Refusal {
            reason: "CreateContainerError",
            err,
        }
    }
}

impl DockerProvider {
    /// Open the state under `data_root` and resume every pod found there. Must be
    /// called inside a Tokio runtime.
    pub fn open(config: Config, data_root: &Path) -> Result<DockerProvider, StateError> {
        let store = Store::new(data_root)?;
        let (pods, bad) = store.load_all()?;
        for e in bad {
            tracing::warn!("skipping unreadable pod state: {e}");
        }
        let engine = Engine::new(&config);
        tracing::info!(engine = %engine.host(), pods = pods.len(), "docker provider ready");
        let inner = Arc::new(Inner {
            config,
            engine,
            store,
            pods: Mutex::new(BTreeMap::new()),
            drivers: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
        });
        for (uid, rec) in pods {
            if rec.failure.is_none() {
                spawn_driver(&inner, rec.clone());
            }
            lock(&inner.pods).insert(uid, rec);
        }
        Ok(DockerProvider { inner })
    }

    /// Number of pods tracked.
    pub fn tracked(&self) -> usize {
        lock(&self.inner.pods).len()
    }
}

/// A pod UID names a directory and a container: keep it to safe characters.
fn check_uid(uid: &str) -> Result<(), PluginError> {
    interlink_plugin_kit::validate::pod_uid(uid).map_err(PluginError::BadRequest)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

struct CreatingGuard<'a>(&'a Inner, String);
impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.creating).remove(&self.1);
    }
}

impl Inner {
    /// A container that must not start: remembered (and saved) as its waiting reason.
    fn container_failed(&self, uid: &str, container: &str, message: String) {
        let mut pods = lock(&self.pods);
        let Some(rec) = pods.get_mut(uid) else { return };
        let Some(c) = rec
            .init_containers
            .iter_mut()
            .chain(rec.containers.iter_mut())
            .find(|c| c.name == container)
        else {
            return;
        };
        c.start_error = Some(Failure {
            reason: "CreateContainerConfigError".into(),
            message,
        });
        if let Err(e) = self.store.save(rec) {
            tracing::warn!(pod = %uid, "saving pod state: {e}");
        }
    }

    fn docker(&self) -> Result<Docker, PluginError> {
        self.engine.client()
    }

    async fn create(self: &Arc<Self>, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        let pod = &data.pod;
        let uid = pod_uid(pod).to_string();
        check_uid(&uid)?;
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| PluginError::BadRequest("pod has no spec".into()))?;
        if spec.containers.is_empty() {
            return Err(PluginError::BadRequest("pod has no containers".into()));
        }
        let mut seen = HashSet::new();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            if !is_dns_label(&c.name) {
                return Err(PluginError::BadRequest(format!(
                    "container name {:?} is not a DNS label",
                    c.name
                )));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(PluginError::BadRequest(format!(
                    "container name {:?} is used twice",
                    c.name
                )));
            }
            if c.image.as_deref().unwrap_or("").is_empty() {
                return Err(PluginError::BadRequest(format!(
                    "container {:?} has no image",
                    c.name
                )));
            }
        }
        spec::check_host_access(pod, &self.config).map_err(PluginError::BadRequest)?;
        if let Some(rec) = lock(&self.pods).get(&uid)
            && rec.failure.is_none()
        {
            // a repeated create (API server retry): the pod already runs
            return Ok(CreateStruct {
                pod_uid: uid,
                pod_jid: rec.infra_id.clone(),
            });
        }
        if !lock(&self.creating).insert(uid.clone()) {
            return Err(PluginError::BadRequest(format!(
                "pod {uid} is already being created"
            )));
        }
        let _guard = CreatingGuard(self, uid.clone());
        let docker = self.docker()?;
        docker
            .ping()
            .await
            .map_err(|e| self.engine.error("ping", e, PluginError::Internal))?;

        let mut rec = PodRecord {
            uid: uid.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            infra_id: String::new(),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| ContainerRecord {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    id: String::new(),
                    subpaths: Vec::new(),
                    start_error: None,
                })
                .collect(),
            containers: spec
                .containers
                .iter()
                .map(|c| ContainerRecord {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    id: String::new(),
                    subpaths: Vec::new(),
                    start_error: None,
                })
                .collect(),
            grace_seconds: spec.termination_grace_period_seconds.unwrap_or(30).max(0),
            failure: None,
        };
        match self.build(&docker, &data, &mut rec).await {
            Ok(()) => {
                self.store
                    .save(&rec)
                    .map_err(|e| PluginError::Internal(format!("saving pod state: {e}")))?;
                let jid = rec.infra_id.clone();
                lock(&self.pods).insert(uid.clone(), rec.clone());
                spawn_driver(self, rec);
                tracing::info!(pod = %uid, infra = %jid, "pod created");
                Ok(CreateStruct {
                    pod_uid: uid,
                    pod_jid: jid,
                })
            }
            Err(r) => {
                // take away whatever was created
                self.remove_containers(&docker, &rec, 0).await.ok();
                if let PluginError::Rejected(msg) = &r.err {
                    tracing::warn!(pod = %uid, reason = r.reason, "pod refused: {msg}");
                    // remember why, so the pod's status says it
                    for c in rec
                        .init_containers
                        .iter_mut()
                        .chain(rec.containers.iter_mut())
                    {
                        c.id.clear();
                    }
                    rec.infra_id.clear();
                    rec.failure = Some(Failure {
                        reason: r.reason.to_string(),
                        message: msg.clone(),
                    });
                    self.store.remove(&uid).ok();
                    if let Err(e) = self.store.save(&rec) {
                        tracing::warn!("saving failed pod state: {e}");
                    }
                    lock(&self.pods).insert(uid.clone(), rec);
                } else {
                    self.store.remove(&uid).ok();
                    lock(&self.pods).remove(&uid);
                }
                Err(r.err)
            }
        }
    }

    /// Images, volumes, then the engine containers (created, not started).
    async fn build(
        &self,
        docker: &Docker,
        data: &RetrievedPodData,
        rec: &mut PodRecord,
    ) -> Result<(), Refusal> {
        let pod = &data.pod;
        let spec = pod.spec.as_ref().expect("checked");
        let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
        let mut images: Vec<(String, String)> =
            vec![(self.config.infra_image.clone(), "IfNotPresent".into())];
        for c in inits.iter().copied().chain(&spec.containers) {
            let img = c.image.clone().unwrap_or_default();
            let policy = self
                .config
                .image_pull_policy
                .clone()
                .unwrap_or_else(|| spec::pull_policy(c));
            if !["Always", "IfNotPresent", "Never"].contains(&policy.as_str()) {
                return Err(Refusal::rejected(
                    "CreateContainerConfigError",
                    format!(
                        "container {:?}: imagePullPolicy {policy:?} is not Always, IfNotPresent or Never",
                        c.name
                    ),
                ));
            }
            match images.iter_mut().find(|(i, _)| *i == img) {
                Some(e) if policy == "Always" => e.1 = policy,
                Some(_) => {}
                None => images.push((img, policy)),
            }
        }
        for (img, policy) in &images {
            self.ensure_image(docker, img, policy).await?;
        }

        let model = PodModel::new(data, spec::placement(pod, &self.config));
        let view = model.view();
        let vol_dir = self.store.pod_dir(&rec.uid).join("volumes");
        let vols = volumes::prepare(view, &vol_dir, &self.config.allowed_host_paths)
            .map_err(|e| Refusal::rejected("CreateContainerConfigError", e.to_string()))?;
        // the DNS kubelet computed (the CRI host sends it as dnsConfig): each
        // container's /etc/resolv.conf, as containerd gives it from the sandbox
        let resolv = pod::dns::resolv_conf(spec)
            .map(|text| volumes::write_resolv_conf(&self.store.pod_dir(&rec.uid), &text))
            .transpose()
            .map_err(|e| Refusal::from(PluginError::Internal(e.to_string())))?;
        let mut bodies = Vec::new();
        for (role, c) in inits
            .iter()
            .map(|c| (Role::Init, *c))
            .chain(spec.containers.iter().map(|c| (Role::Regular, c)))
        {
            let env = pod::env::resolve(view, c)
                .map(pod::Env::into_vars)
                .map_err(|e| {
                    Refusal::rejected(
                        "CreateContainerConfigError",
                        format!("container {:?}: {e}", c.name),
                    )
                })?;
            let (mut binds, subpaths) =
                volumes::binds(c, &vols, &self.store.subpath_dir(&rec.uid, &c.name))
                    .map_err(|e| Refusal::rejected("CreateContainerConfigError", e.to_string()))?;
            let own =
                |m: &&k8s_openapi::api::core::v1::VolumeMount| m.mount_path == "/etc/resolv.conf";
            if let Some(r) = &resolv
                && !c.volume_mounts.iter().flatten().any(|m| own(&m))
            {
                binds.push(format!("{}:/etc/resolv.conf:ro", r.display()));
            }
            bodies.push((role, c, env, binds, subpaths));
        }

        // leftovers of an earlier attempt with this UID
        self.remove_labelled(docker, &rec.uid, 0).await?;

        let infra_name = spec::engine_name(&rec.uid, Role::Infra, "");
        let r = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(infra_name),
                    ..Default::default()
                }),
                spec::infra(pod, &self.config),
            )
            .await
            .map_err(|e| self.create_error("infra container", e))?;
        rec.infra_id = r.id;
        for (role, c, env, binds, subpaths) in bodies {
            let body = spec::container(pod, c, role, &rec.infra_id, &env, binds)
                .map_err(|e| Refusal::rejected("CreateContainerConfigError", e))?;
            let r = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(spec::engine_name(&rec.uid, role, &c.name)),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(|e| self.create_error(&format!("container {:?}", c.name), e))?;
            let slot = match role {
                Role::Init => rec.init_containers.iter_mut().find(|x| x.name == c.name),
                _ => rec.containers.iter_mut().find(|x| x.name == c.name),
            };
            if let Some(s) = slot {
                s.id = r.id;
                s.subpaths = subpaths;
            }
        }
        Ok(())
    }

    fn create_error(&self, what: &str, e: bollard::errors::Error) -> Refusal {
        if is_connection_error(&e) {
            return Refusal {
                reason: "CreateContainerError",
                err: self.engine.unavailable(&format!("creating {what}: {e}")),
            };
        }
        Refusal {
            reason: "CreateContainerError",
            err: self
                .engine
                .error(&format!("creating {what}"), e, PluginError::Rejected),
        }
    }

    async fn ensure_image(
        &self,
        docker: &Docker,
        image: &str,
        policy: &str,
    ) -> Result<(), Refusal> {
        let present = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => {
                return Err(self
                    .engine
                    .error(
                        &format!("inspecting image {image}"),
                        e,
                        PluginError::Internal,
                    )
                    .into());
            }
        };
        match (policy, present) {
            ("Never", true) | ("IfNotPresent", true) => return Ok(()),
            ("Never", false) => {
                return Err(Refusal::rejected(
                    "ErrImageNeverPull",
                    format!(
                        "image {image:?} is not present on the container engine and imagePullPolicy is Never"
                    ),
                ));
            }
            _ => {}
        }
        match self.pull(docker, image).await {
            Ok(()) => Ok(()),
            Err(e) if present => {
                tracing::warn!(%image, "pull failed, using the local image: {e}");
                Ok(())
            }
            Err(PluginError::Unavailable(m)) => Err(PluginError::Unavailable(m).into()),
            Err(e) => Err(Refusal::rejected(
                "ErrImagePull",
                format!(
                    "image {image:?} is not present on the container engine and pulling it failed: {e}"
                ),
            )),
        }
    }

    async fn pull(&self, docker: &Docker, image: &str) -> Result<(), PluginError> {
        let (from, tag) = split_image(image);
        let opts = CreateImageOptions {
            from_image: Some(from),
            tag,
            ..Default::default()
        };
        let stream = docker.create_image(Some(opts), None, None);
        let pull = async {
            let infos: Vec<_> = stream.try_collect().await?;
            if let Some(msg) = infos
                .iter()
                .find_map(|i| i.error_detail.as_ref().and_then(|d| d.message.clone()))
            {
                return Err(bollard::errors::Error::DockerStreamError { error: msg });
            }
            Ok(())
        };
        match tokio::time::timeout(
            Duration::from_secs(self.config.pull_timeout_seconds.max(1)),
            pull,
        )
        .await
        {
            Err(_) => Err(PluginError::Rejected(format!(
                "pull did not finish in {} s",
                self.config.pull_timeout_seconds
            ))),
            Ok(Ok(())) => Ok(()),
            Ok(Err(bollard::errors::Error::DockerStreamError { error })) => {
                Err(PluginError::Rejected(error))
            }
            Ok(Err(e)) => Err(self.engine.error("pull", e, PluginError::Rejected)),
        }
    }

    /// Ids of every container labelled with the pod's UID, infra last.
    async fn labelled(&self, uid: &str) -> Result<Vec<String>, PluginError> {
        let list = self
            .engine
            .raw()
            .list_labelled(&format!("{LABEL_POD_UID}={uid}"))
            .await
            .map_err(|e| self.engine.raw_error("listing containers", e))?;
        let mut ids: Vec<(bool, String)> = list
            .into_iter()
            .map(|c| {
                let infra = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(spec::LABEL_ROLE))
                    .is_some_and(|r| r == "infra");
                (infra, c.id)
            })
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, i)| i).collect())
    }

    async fn remove_labelled(
        &self,
        docker: &Docker,
        uid: &str,
        grace: i64,
    ) -> Result<(), PluginError> {
        let ids = self.labelled(uid).await?;
        self.remove_ids(docker, ids, grace).await
    }

    async fn remove_containers(
        &self,
        docker: &Docker,
        rec: &PodRecord,
        grace: i64,
    ) -> Result<(), PluginError> {
        let mut ids = rec.all_ids();
        for i in self.labelled(&rec.uid).await? {
            if !ids.contains(&i) {
                ids.insert(0, i);
            }
        }
        // infra last
        if let Some(p) = ids.iter().position(|i| *i == rec.infra_id) {
            let inf = ids.remove(p);
            ids.push(inf);
        }
        self.remove_ids(docker, ids, grace).await
    }

    /// Stop (TERM, KILL after `grace` s) all but the last, in parallel, then remove
    /// them all; the last is the infra container (or a plain container).
    async fn remove_ids(
        &self,
        docker: &Docker,
        mut ids: Vec<String>,
        grace: i64,
    ) -> Result<(), PluginError> {
        if ids.is_empty() {
            return Ok(());
        }
        let last = ids.pop().expect("non-empty");
        // a stop takes up to the grace period: the request may last that much
        // longer than any other engine request
        let grace_s = grace.clamp(0, i32::MAX as i64);
        let stop_timeout = Duration::from_secs(self.config.request_timeout_seconds.max(1))
            + Duration::from_secs(grace_s as u64);
        let stop = |id: String| {
            let docker = docker.clone().with_timeout(stop_timeout);
            async move {
                if grace <= 0 {
                    // no grace: SIGKILL now (podman's forced remove would wait
                    // for a TERM-ignoring process first)
                    let opts = bollard::query_parameters::KillContainerOptions {
                        signal: "KILL".into(),
                    };
                    if let Err(e) = docker.kill_container(&id, Some(opts)).await
                        && is_connection_error(&e)
                    {
                        return Err(e);
                    }
                } else {
                    let opts = StopContainerOptions {
                        t: Some(grace_s as i32),
                        signal: None,
                    };
                    match docker.stop_container(&id, Some(opts)).await {
                        Ok(()) => {}
                        Err(e) if is_not_found(&e) => return Ok(()),
                        Err(e) if is_connection_error(&e) => return Err(e),
                        Err(e) => tracing::debug!(%id, "stop: {e}"),
                    }
                }
                let opts = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                match docker.remove_container(&id, Some(opts)).await {
                    Err(e) if !is_not_found(&e) => Err(e),
                    _ => Ok(()),
                }
            }
        };
        let results = futures::future::join_all(ids.into_iter().map(stop)).await;
        for r in results {
            r.map_err(|e| {
                self.engine
                    .error("removing container", e, PluginError::Internal)
            })?;
        }
        let stop_last = |id: String| {
            let docker = docker.clone();
            async move {
                let opts = bollard::query_parameters::KillContainerOptions {
                    signal: "KILL".into(),
                };
                if let Err(e) = docker.kill_container(&id, Some(opts)).await
                    && is_connection_error(&e)
                {
                    return Err(e);
                }
                let opts = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                match docker.remove_container(&id, Some(opts)).await {
                    Err(e) if !is_not_found(&e) => Err(e),
                    _ => Ok(()),
                }
            }
        };
        stop_last(last).await.map_err(|e| {
            self.engine
                .error("removing container", e, PluginError::Internal)
        })?;
        Ok(())
    }

    async fn delete(&self, pod: Pod) -> Result<(), PluginError> {
        let uid = pod_uid(&pod).to_string();
        check_uid(&uid)?;
        let rec = lock(&self.pods).get(&uid).cloned();
        let docker = self.docker()?;
        if let Some(h) = lock(&self.drivers).remove(&uid) {
            h.abort();
        }
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .or(pod.metadata.deletion_grace_period_seconds)
            .or(rec.as_ref().map(|r| r.grace_seconds))
            .unwrap_or(30)
            .max(0);
        let res = match &rec {
            Some(r) => self.remove_containers(&docker, r, grace).await,
            None => self.remove_labelled(&docker, &uid, grace).await,
        };
        // on failure the pod stays tracked (the caller resumes its driver)
        res?;
        if let Some(r) = &rec {
            let mut cache = lock(&self.cache);
            for id in r.all_ids() {
                cache.remove(&id);
            }
        }
        lock(&self.pods).remove(&uid);
        self.store
            .remove(&uid)
            .map_err(|e| PluginError::Internal(format!("removing pod files: {e}")))?;
        tracing::info!(pod = %uid, known = rec.is_some(), "pod deleted");
        Ok(())
    }

    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        let recs: Vec<PodRecord> = {
            let known = lock(&self.pods);
            pods.iter()
                .filter_map(|p| known.get(&p.uid).cloned())
                .collect()
        };
        let docker = self.docker()?;
        if !recs.iter().any(|r| r.failure.is_none()) {
            // nothing running to look at: still say whether the engine answers
            docker
                .ping()
                .await
                .map_err(|e| self.engine.error("ping", e, PluginError::Internal))?;
            return Ok(recs
                .iter()
                .map(|r| self.pod_status(r, &HashMap::new(), &HashMap::new()))
                .collect());
        }
        // Exited containers never change: their cached status is final. The
        // others are inspected one by one when few, else found with one list
        // call (and inspected only when their state changed).
        let raw = self.engine.raw();
        let live: Vec<&ContainerRecord> = recs
            .iter()
            .filter(|r| r.failure.is_none())
            .flat_map(|r| r.init_containers.iter().chain(&r.containers))
            .filter(|c| !c.id.is_empty())
            .collect();
        let mut states: HashMap<String, String> = HashMap::new();
        let candidates: Vec<String> = {
            let cache = lock(&self.cache);
            let mut v = Vec::new();
            for c in &live {
                match cache.get(&c.id) {
                    Some((s, _)) if s == "exited" => {
                        states.insert(c.id.clone(), s.clone());
                    }
                    _ => v.push(c.id.clone()),
                }
            }
            v
        };
        let need: Vec<String> = if candidates.is_empty() {
            // nothing to look at: still say whether the engine answers
            docker
                .ping()
                .await
                .map_err(|e| self.engine.error("ping", e, PluginError::Internal))?;
            vec![]
        } else if candidates.len() <= DIRECT_INSPECT_MAX {
            candidates
        } else {
            let list = raw
                .list_labelled(LABEL_POD_UID)
                .await
                .map_err(|e| self.engine.raw_error("listing containers", e))?;
            states = list
                .into_iter()
                .map(|c| (c.id, normalize(&c.state).to_string()))
                .collect();
            let cache = lock(&self.cache);
            candidates
                .into_iter()
                .filter(|id| match (states.get(id), cache.get(id)) {
                    (None, _) => false,
                    (Some(s), Some((cs, _))) => s != cs,
                    (Some(_), None) => true,
                })
                .collect()
        };
        let mut fresh: HashMap<String, Inspect> = HashMap::new();
        let results: Vec<_> = futures::stream::iter(need)
            .map(|id| async move { (id.clone(), raw.inspect(&id).await) })
            .buffer_unordered(8)
            .collect()
            .await;
        for (id, r) in results {
            match r {
                Ok(i) => {
                    let st = i
                        .state
                        .as_ref()
                        .map(|s| s.normalized().to_string())
                        .unwrap_or_default();
                    states.insert(id.clone(), st);
                    fresh.insert(id, i);
                }
                Err(e) if e.is_not_found() => {
                    states.remove(&id);
                }
                Err(e) => return Err(self.engine.raw_error("inspecting container", e)),
            }
        }
        Ok(recs
            .iter()
            .map(|r| self.pod_status(r, &states, &fresh))
            .collect())
    }

    fn pod_status(
        &self,
        rec: &PodRecord,
        states: &HashMap<String, String>,
        fresh: &HashMap<String, Inspect>,
    ) -> PodStatus {
        let mut cache = lock(&self.cache);
        let mut one = |c: &ContainerRecord, pending: &str| -> ContainerStatus {
            let base = status::base(&c.name, &c.image, &c.id);
            if let Some(f) = rec.failure.as_ref().or(c.start_error.as_ref()) {
                return status::waiting(base, &f.reason, Some(f.message.clone()));
            }
            if c.id.is_empty() {
                return status::waiting(base, "ContainerCreating", None);
            }
            let Some(state) = states.get(&c.id) else {
                return status::missing(base);
            };
            if let Some(i) = fresh.get(&c.id) {
                let st = status::from_inspect(base, i, pending);
                if state == "running" || state == "exited" {
                    cache.insert(c.id.clone(), (state.clone(), st.clone()));
                }
                return st;
            }
            match cache.get(&c.id) {
                Some((s, st)) if s == state => st.clone(),
                _ => status::missing(base),
            }
        };
        let mut inits_ok = true;
        let mut init_statuses = Vec::new();
        for c in &rec.init_containers {
            let st = one(
                c,
                if inits_ok {
                    "ContainerCreating"
                } else {
                    "PodInitializing"
                },
            );
            let ok = st
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            inits_ok &= ok;
            init_statuses.push(st);
        }
        let pending = if inits_ok {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let containers = rec.containers.iter().map(|c| one(c, pending)).collect();
        PodStatus {
            pod_name: rec.name.clone(),
            pod_uid: rec.uid.clone(),
            pod_namespace: rec.namespace.clone(),
            job_id: rec.infra_id.clone(),
            containers,
            init_containers: init_statuses,
        }
    }

    async fn logs(&self, req: LogStruct) -> Result<LogStream, PluginError> {
        let rec = lock(&self.pods).get(&req.pod_uid).cloned().ok_or_else(|| {
            PluginError::NotFound(format!("pod {} is not known to this plugin", req.pod_uid))
        })?;
        interlink_plugin_kit::check_log_target(&req, &rec.namespace, &rec.name)?;
        let c = rec.find(&req.container_name).cloned().ok_or_else(|| {
            PluginError::NotFound(format!(
                "pod {}/{} has no container {:?}",
                rec.namespace, rec.name, req.container_name
            ))
        })?;
        if c.id.is_empty() {
            let why = rec
                .failure
                .as_ref()
                .map(|f| f.message.as_str())
                .unwrap_or("not created yet");
            return Err(PluginError::NotFound(format!(
                "container {:?} was never created: {why}",
                c.name
            )));
        }
        let docker = self.docker()?;
        self.engine
            .raw()
            .inspect(&c.id)
            .await
            .map_err(|e| self.engine.raw_error(&format!("container {:?}", c.name), e))?;
        let o = &req.opts;
        let since = if o.since_seconds > 0 {
            jiff::Timestamp::now().as_second() - o.since_seconds
        } else {
            o.since_time.map(|t| t.as_second()).unwrap_or(0)
        };
        let opts = LogsOptions {
            follow: o.follow,
            stdout: true,
            stderr: true,
            since: since.clamp(0, i32::MAX as i64) as i32,
            until: 0,
            timestamps: o.timestamps,
            tail: if o.tail > 0 {
                o.tail.to_string()
            } else {
                "all".into()
            },
        };
        let stream = docker
            .logs(&c.id, Some(opts))
            .map(|r| r.map(|o| o.into_bytes()).map_err(std::io::Error::other));
        if o.limit_bytes > 0 {
            let mut remaining = o.limit_bytes as usize;
            let limited = stream.scan((), move |_, r| {
                if remaining == 0 {
                    return futures::future::ready(None);
                }
                futures::future::ready(Some(r.map(|mut b| {
                    if b.len() > remaining {
                        b.truncate(remaining);
                    }
                    remaining -= b.len();
                    b
                })))
            });
            return Ok(Box::pin(limited));
        }
        Ok(Box::pin(stream))
    }

    async fn ping(&self) -> Result<PingResponse, PluginError> {
        let docker = self.docker()?;
        docker
            .ping()
            .await
            .map_err(|e| self.engine.error("ping", e, PluginError::Internal))?;
        let info = docker
            .info()
            .await
            .map_err(|e| self.engine.error("info", e, PluginError::Internal))?;
        Ok(PingResponse {
            status: Some("ok".into()),
            resources: Some(PingResources {
                cpu: info.ncpu.map(|n| n.to_string()),
                memory: info.mem_total.map(|m| m.to_string()),
                pods: self.config.max_pods.map(|p| p.to_string()),
                accelerators: vec![],
            }),
            taints: None,
        })
    }
}

/// `repo:tag` -> (`repo`, `tag`); digests and untagged names stay whole.
fn split_image(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_string(), None);
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            Some(image[slash + i + 1..].to_string()),
        ),
        None => (image.to_string(), Some("latest".into())),
    }
}

fn spawn_driver(inner: &Arc<Inner>, rec: PodRecord) {
    let uid = rec.uid.clone();
    let i = inner.clone();
    let h = tokio::spawn(async move {
        let mut delay = Duration::from_millis(250);
        loop {
            match drive(&i, &rec).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(pod = %rec.uid, "starting the pod's containers: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        lock(&i.drivers).remove(&rec.uid);
    });
    if let Some(old) = lock(&inner.drivers).insert(uid, h) {
        old.abort();
    }
}

/// Start the infra container, run the init containers one by one (each must exit
/// 0), then start the regular containers. Idempotent: looks at each container's
/// engine state first, so it resumes where a previous run (or plugin) stopped.
/// Errors are connection problems (retried); everything else ends the run.
async fn drive(inner: &Inner, rec: &PodRecord) -> Result<(), String> {
    let docker = inner.docker().map_err(|e| e.to_string())?;
    let raw = inner.engine.raw();
    let state = |id: String| async move {
        match raw.inspect(&id).await {
            Ok(i) => Ok(i.state),
            Err(RawError::Connect(e)) => Err(e),
            Err(_) => Ok(None),
        }
    };
    let start = |id: String, name: String| {
        let docker = docker.clone();
        async move {
            match docker.start_container(&id, None).await {
                Ok(()) => Ok(true),
                Err(e) if is_connection_error(&e) => Err(e.to_string()),
                Err(e) => {
                    tracing::warn!(pod = %rec.uid, container = %name, "start failed: {e}");
                    Ok(false)
                }
            }
        }
    };
    // subPaths are opened and bound at the last moment, after the init containers
    // that could have changed the volume ran; a container whose subPath is unsafe
    // does not start and reports why
    let ready = |c: &ContainerRecord| -> bool {
        if c.start_error.is_some() {
            return false;
        }
        match interlink_plugin_kit::subpath::prepare(&c.subpaths) {
            Ok(()) => true,
            Err(msg) => {
                tracing::warn!(pod = %rec.uid, container = %c.name, "not started: {msg}");
                inner.container_failed(&rec.uid, &c.name, msg);
                false
            }
        }
    };
    let Some(infra) = state(rec.infra_id.clone()).await? else {
        tracing::warn!(pod = %rec.uid, "infra container is gone");
        return Ok(());
    };
    if infra.normalized() == "created" && !start(rec.infra_id.clone(), "infra".into()).await? {
        return Ok(());
    }
    for c in &rec.init_containers {
        loop {
            let Some(s) = state(c.id.clone()).await? else {
                return Ok(());
            };
            match s.normalized() {
                "created" => {
                    if !ready(c) || !start(c.id.clone(), c.name.clone()).await? {
                        return Ok(());
                    }
                }
                "exited" | "dead" => {
                    if s.exit_code == 0 {
                        break;
                    }
                    tracing::info!(pod = %rec.uid, container = %c.name, code = s.exit_code, "init container failed: pod stops here");
                    return Ok(());
                }
                _ => {
                    // running: wait for it to end (any outcome), then look again
                    let mut w = docker.wait_container(
                        &c.id,
                        Some(WaitContainerOptions {
                            condition: "not-running".into(),
                        }),
                    );
                    match w.next().await {
                        Some(Err(e)) if is_connection_error(&e) => return Err(e.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    for c in &rec.containers {
        if let Some(s) = state(c.id.clone()).await?
            && s.normalized() == "created"
            && ready(c)
        {
            start(c.id.clone(), c.name.clone()).await?;
        }
    }
    Ok(())
}

impl Provider for DockerProvider {
    async fn create(&self, data: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        self.inner.create(data).await
    }

    async fn delete(&self, pod: Pod) -> Result<(), PluginError> {
        let uid = pod_uid(&pod).to_string();
        let r = self.inner.delete(pod).await;
        if r.is_err()
            && let Some(rec) = lock(&self.inner.pods)
                .get(&uid)
                .cloned()
                .filter(|r| r.failure.is_none())
        {
            spawn_driver(&self.inner, rec);
        }
        r
    }

    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        self.inner.status(pods).await
    }

    fn extensions(&self) -> interlink::extensions::Extensions {
        interlink::extensions::Extensions::none()
            .with(
                interlink::extensions::STATS,
                interlink::extensions::STATS_VERSION,
            )
            .with(
                interlink::extensions::EXEC,
                interlink::extensions::EXEC_VERSION,
            )
    }

    async fn exec(
        &self,
        req: interlink::exec::ExecRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        let rec = lock(&self.inner.pods).get(&req.target.pod_uid).cloned();
        crate::exec::exec(&self.inner.engine, rec, req).await
    }

    async fn attach(
        &self,
        req: interlink::exec::AttachRequest,
    ) -> Result<interlink_plugin_kit::ExecRun, PluginError> {
        let rec = lock(&self.inner.pods).get(&req.target.pod_uid).cloned();
        crate::exec::attach(&self.inner.engine, rec, req).await
    }

    async fn port_forward(
        &self,
        req: interlink::exec::PortForwardRequest,
    ) -> Result<interlink_plugin_kit::PortStream, PluginError> {
        let rec = lock(&self.inner.pods).get(&req.target.pod_uid).cloned();
        crate::exec::port_forward(&self.inner.engine, rec, req).await
    }

    async fn stats(
        &self,
        pods: &[PodRef],
    ) -> Result<Vec<interlink::extensions::PodStats>, PluginError> {
        let wanted: Vec<(String, Vec<(String, String)>)> = {
            let known = lock(&self.inner.pods);
            pods.iter()
                .filter_map(|p| known.get(&p.uid))
                .map(|r| {
                    let containers = if r.failure.is_some() {
                        Vec::new()
                    } else {
                        r.init_containers
                            .iter()
                            .chain(&r.containers)
                            .map(|c| (c.name.clone(), c.id.clone()))
                            .collect()
                    };
                    (r.uid.clone(), containers)
                })
                .collect()
        };
        Ok(crate::stats::read(self.inner.engine.raw(), wanted).await)
    }

    async fn logs(&self, req: LogStruct) -> Result<LogStream, PluginError> {
        self.inner.logs(req).await
    }

    async fn ping(&self) -> Result<PingResponse, PluginError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_split() {
        assert_eq!(
            split_image("localhost/mini:latest"),
            ("localhost/mini".into(), Some("latest".into()))
        );
        assert_eq!(
            split_image("localhost:5000/x"),
            ("localhost:5000/x".into(), Some("latest".into()))
        );
        assert_eq!(split_image("a/b@sha256:00"), ("a/b@sha256:00".into(), None));
    }

    #[test]
    fn uids() {
        assert!(check_uid("0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11").is_ok());
        assert!(check_uid("../etc").is_err());
        assert!(check_uid("").is_err());
    }
}
