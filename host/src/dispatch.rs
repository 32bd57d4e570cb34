//! From started containers to remote pods, and back to nothing.
//!
//! Design (see README "How pods run remotely"):
//! - Each remote pod is one *batch*. Regular containers started within
//!   `BatchWindow` of each other form one batch, sent in one `/create` when the
//!   window closes after the last `StartContainer`. The first regular batch of a
//!   sandbox carries the Kubernetes pod UID; later batches (a restarted container)
//!   and init containers get UIDs derived from it (UUIDv5), named `<pod>-<n>`.
//! - Each init container is its own batch, sent at once, so kubelet sees its real
//!   exit code before it creates the next one. emptyDir volumes keep their names in
//!   every batch; with `EmptyDirMode: hostPath` they map to kubelet's own emptyDir
//!   directory, so data written by an init container is seen by the next batches
//!   whenever the plugin runs where that directory is (local backend, shared FS).
//! - The batch record is written with `Sending` (fsync) before `/create`. After a
//!   crash, a `Sending` batch is looked up with `/status` first: never created twice.
//! - A remote pod is deleted (`/delete`, grace from `StopContainer`) when none of
//!   its containers should run any more; the record stays (`Deleting`) until the
//!   API server confirmed, so nothing is orphaned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::convert;
use crate::proto::runtime::v1 as cri;
use crate::remote::RemoteError;
use crate::runtime::Runtime;
use crate::store::{Inner, Kind, Phase, RemotePod};

const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;

/// A UID derived from the pod UID for batch `n`.
pub fn derived_uid(pod_uid: &str, n: u32) -> String {
    let ns = uuid::Uuid::parse_str(pod_uid).unwrap_or(uuid::Uuid::NAMESPACE_OID);
    uuid::Uuid::new_v5(&ns, format!("{pod_uid}/batch/{n}").as_bytes()).to_string()
}

/// Mark a started container and put it in a batch; returns the batch UID.
pub fn enqueue(rt: &Runtime, st: &mut Inner, container_id: &str) -> Result<String, String> {
    let now = crate::now_ns();
    let window = rt.cfg.batch_window.as_nanos() as i64;
    let c = st
        .containers
        .get(container_id)
        .ok_or("container not found")?;
    let sandbox_id = c.sandbox_id.clone();
    let kind = c.kind;
    let sb = st
        .sandboxes
        .get_mut(&sandbox_id)
        .ok_or("sandbox not found")?;
    let md = sb.config.metadata.clone().unwrap_or_default();
    // an open regular batch of this sandbox takes the container
    let open = if kind == Kind::Regular {
        st.remotes.values_mut().find(|r| {
            r.sandbox_id == sandbox_id && r.kind == Kind::Regular && r.phase == Phase::Collecting
        })
    } else {
        None
    };
    let uid = if let Some(r) = open {
        r.containers.push(container_id.to_string());
        r.send_after = now + window;
        r.uid.clone()
    } else {
        let (uid, name) = if kind == Kind::Regular && !sb.main_used {
            sb.main_used = true;
            (sb.uid.clone(), crate::names::pod_name(&md.name))
        } else {
            sb.batches += 1;
            let name = crate::names::pod_name(&format!("{}-{}", md.name, sb.batches));
            (derived_uid(&sb.uid, sb.batches), name)
        };
        st.remotes.insert(
            uid.clone(),
            RemotePod {
                uid: uid.clone(),
                sandbox_id: sandbox_id.clone(),
                name,
                namespace: crate::names::dns_label(&md.namespace),
                kind,
                containers: vec![container_id.to_string()],
                phase: Phase::Collecting,
                job_id: String::new(),
                grace_seconds: None,
                send_after: if kind == Kind::Init {
                    now
                } else {
                    now + window
                },
                finished: false,
            },
        );
        uid
    };
    let c = st.containers.get_mut(container_id).expect("checked");
    c.remote_uid = Some(uid.clone());
    c.state = RUNNING;
    c.started_at = now;
    Ok(uid)
}

/// The dispatcher: sends batches whose window closed and deletes what is due.
pub async fn run(rt: Arc<Runtime>) {
    loop {
        let now = crate::now_ns();
        let mut next = now + 1_000_000_000;
        let mut sends = Vec::new();
        let mut deletes = Vec::new();
        {
            let st = rt.store.read();
            for r in st.remotes.values() {
                match r.phase {
                    Phase::Collecting if r.send_after <= now => sends.push(r.uid.clone()),
                    Phase::Collecting => next = next.min(r.send_after),
                    Phase::Sending => sends.push(r.uid.clone()),
                    Phase::Deleting => deletes.push(r.uid.clone()),
                    _ => {}
                }
            }
        }
        for uid in sends {
            if claim(&rt, &uid) {
                let rt = rt.clone();
                tokio::spawn(async move {
                    send(&rt, &uid).await;
                    release(&rt, &uid);
                });
            }
        }
        for uid in deletes {
            if claim(&rt, &uid) {
                let rt = rt.clone();
                tokio::spawn(async move {
                    let mut backoff = Duration::from_millis(500);
                    while delete_once(&rt, &uid).await.is_err() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    release(&rt, &uid);
                });
            }
        }
        let wait = Duration::from_nanos((next - crate::now_ns()).max(1_000_000) as u64);
        tokio::select! {
            _ = rt.dispatch_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn claim(rt: &Runtime, uid: &str) -> bool {
    rt.inflight
        .lock()
        .map(|mut s| s.insert(uid.to_string()))
        .unwrap_or(false)
}

fn release(rt: &Runtime, uid: &str) {
    if let Ok(mut s) = rt.inflight.lock() {
        s.remove(uid);
    }
    rt.dispatch_wake.notify_one();
}

/// Send one batch: `Sending` (durable) -> `/create` -> `Created` or `Failed`.
async fn send(rt: &Arc<Runtime>, uid: &str) {
    let built = rt.store.update(|st, d| {
        let r = st.remotes.get(uid)?.clone();
        if !matches!(r.phase, Phase::Collecting | Phase::Sending) {
            return None;
        }
        let live: Vec<String> = r
            .containers
            .iter()
            .filter(|id| st.containers.get(*id).is_some_and(|c| !c.stop_requested))
            .cloned()
            .collect();
        if live.is_empty() {
            st.remotes.remove(uid);
            d.remote(uid);
            return None;
        }
        let sb = st.sandboxes.get(&r.sandbox_id)?;
        let cs: Vec<_> = r
            .containers
            .iter()
            .filter_map(|id| st.containers.get(id))
            .collect();
        let req = convert::build_create(sb, &r, &cs, rt.hooks.as_ref(), &rt.cfg.plugin_config);
        let names = cs.iter().map(|c| c.name()).collect();
        let probe_pod = convert::minimal_pod(&r, names);
        let r = st.remotes.get_mut(uid)?;
        r.phase = Phase::Sending;
        d.remote(uid);
        d.durable();
        Some((req, probe_pod))
    });
    let Some((req, probe_pod)) = built else {
        return;
    };
    if let Err(reason) = rt.hooks.admit(&req.pod) {
        fail(
            rt,
            uid,
            "AdmissionDenied",
            &format!("admission denied the pod: {reason}"),
        );
        return;
    }
    let mut probe = rt
        .probe_before_send
        .lock()
        .map(|mut s| s.remove(uid))
        .unwrap_or(false);
    let deadline = Instant::now() + rt.cfg.create_retry_for;
    let mut backoff = Duration::from_millis(250);
    loop {
        if probe {
            // a /create may have reached the server: ask before sending again
            if let Ok(Ok(sts)) = tokio::time::timeout(
                rt.cfg.cri.request_timeout,
                rt.remote.status(Arc::new(vec![probe_pod.clone()])),
            )
            .await
                && let Some(s) = sts.iter().find(|s| s.pod_uid == uid && remote_knows(s))
            {
                tracing::info!(uid, "remote pod already exists; not created again");
                created(rt, uid, &s.job_id);
                return;
            }
        }
        let res =
            match tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.create(req.clone()))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(RemoteError::Unreachable("/create timed out".into())),
            };
        rt.metrics.remote("create", res.is_ok());
        match res {
            Ok(cs) => {
                tracing::info!(uid, job = %cs.pod_jid, "remote pod created");
                created(rt, uid, &cs.pod_jid);
                return;
            }
            Err(RemoteError::Refused(msg)) => {
                tracing::warn!(uid, error = %msg, "remote pod refused");
                fail(rt, uid, "CreateFailed", &msg);
                return;
            }
            Err(e) => {
                if Instant::now() > deadline {
                    fail(
                        rt,
                        uid,
                        "CreateFailed",
                        &format!("{e} (gave up after {:?})", rt.cfg.create_retry_for),
                    );
                    return;
                }
                tracing::warn!(uid, error = %e, "create failed; retrying");
                probe = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Does a `/status` answer show a pod the plugin really has? Plugins answer
/// unknown pods too (containers with reason `NotFound`), or leave them out.
pub fn remote_knows(s: &interlink::PodStatus) -> bool {
    let unknown_reason = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        let st = c.state.as_ref();
        let r = st
            .and_then(|s| {
                s.waiting
                    .as_ref()
                    .and_then(|w| w.reason.clone())
                    .or(s.terminated.as_ref().and_then(|t| t.reason.clone()))
            })
            .unwrap_or_default();
        r == "NotFound" || r == "Unknown"
    };
    let all = s.containers.iter().chain(s.init_containers.iter());
    let any = s.containers.len() + s.init_containers.len() > 0;
    (any && !all.clone().all(unknown_reason)) || (!any && !s.job_id.is_empty())
}

fn created(rt: &Arc<Runtime>, uid: &str, job_id: &str) {
    let followers = rt.store.update(|st, d| {
        let Some(r) = st.remotes.get_mut(uid) else {
            return vec![];
        };
        r.phase = Phase::Created;
        r.job_id = job_id.to_string();
        d.remote(uid);
        let mut all_stopped = true;
        let mut f = vec![];
        for id in &r.containers {
            if let Some(c) = st.containers.get_mut(id) {
                c.spec = None;
                d.container(id);
                all_stopped &= c.stop_requested;
                if c.log_file.is_some() {
                    f.push(id.clone());
                }
            }
        }
        if all_stopped {
            r.phase = Phase::Deleting;
        }
        f
    });
    for id in followers {
        crate::logs::ensure_follower(rt, &id);
    }
    rt.dispatch_wake.notify_one();
}

fn fail(rt: &Runtime, uid: &str, reason: &str, msg: &str) {
    let now = crate::now_ns();
    let mut ev = vec![];
    rt.store.update(|st, d| {
        let Some(r) = st.remotes.get_mut(uid) else {
            return;
        };
        r.phase = Phase::Failed;
        d.remote(uid);
        for id in &r.containers {
            if let Some(c) = st.containers.get_mut(id) {
                if c.state == EXITED {
                    continue;
                }
                c.state = EXITED;
                c.exit_code = 128;
                c.reason = reason.into();
                c.message = msg.into();
                c.finished_at = now;
                c.log_done = true;
                d.container(id);
                ev.push((id.clone(), c.sandbox_id.clone()));
            }
        }
    });
    for (id, sb) in ev {
        rt.emit(&id, &sb, cri::ContainerEventType::ContainerStoppedEvent);
    }
}

/// One `/delete` of a remote pod in `Deleting`; on success its record goes and its
/// still-running containers are reported exited.
pub async fn delete_once(rt: &Runtime, uid: &str) -> Result<(), RemoteError> {
    let pod = {
        let st = rt.store.read();
        let Some(r) = st.remotes.get(uid) else {
            return Ok(());
        };
        if r.phase != Phase::Deleting {
            return Ok(());
        }
        let names = r
            .containers
            .iter()
            .filter_map(|id| st.containers.get(id))
            .map(|c| c.name())
            .collect();
        convert::minimal_pod(r, names)
    };
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(0)
        .max(0) as u64;
    let res = match tokio::time::timeout(
        rt.cfg.cri.request_timeout + Duration::from_secs(grace),
        rt.remote.delete(pod.clone()),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(RemoteError::Unreachable("/delete timed out".into())),
    };
    rt.metrics.remote("delete", res.is_ok());
    match res {
        Ok(()) => {}
        Err(RemoteError::Refused(msg)) => {
            tracing::warn!(uid, error = %msg, "delete refused; treating the pod as gone")
        }
        Err(e) => {
            tracing::warn!(uid, error = %e, "delete failed; will retry");
            return Err(e);
        }
    }
    let now = crate::now_ns();
    let mut ev = vec![];
    rt.store.update(|st, d| {
        let Some(r) = st.remotes.remove(uid) else {
            return;
        };
        d.remote(uid);
        for id in &r.containers {
            if let Some(c) = st.containers.get_mut(id) {
                c.remote_uid = None;
                c.log_done = true;
                d.container(id);
                if c.state != EXITED {
                    c.state = EXITED;
                    c.exit_code = 137;
                    c.reason = "Stopped".into();
                    c.message = "stopped through the CRI; the remote pod was deleted".into();
                    c.finished_at = now;
                    ev.push((id.clone(), c.sandbox_id.clone()));
                }
            }
        }
    });
    for (id, sb) in ev {
        rt.emit(&id, &sb, cri::ContainerEventType::ContainerStoppedEvent);
    }
    Ok(())
}

/// Delete now (waiting for it) if nobody else is; else leave it to the dispatcher.
async fn delete_now(rt: &Arc<Runtime>, uid: &str) -> Result<(), RemoteError> {
    if !claim(rt, uid) {
        return Ok(());
    }
    let r = delete_once(rt, uid).await;
    release(rt, uid);
    r
}

/// `StopContainer`: nothing of this container runs afterwards.
pub async fn stop_container(
    rt: &Arc<Runtime>,
    id: &str,
    timeout_s: i64,
) -> Result<(), RemoteError> {
    let now = crate::now_ns();
    let mut ev = vec![];
    let delete = rt.store.update(|st, d| {
        let c = st.containers.get_mut(id)?;
        c.stop_requested = true;
        d.container(id);
        let stop_local = |c: &mut crate::store::Container, msg: &str| {
            if c.state != EXITED {
                c.state = EXITED;
                c.exit_code = if c.started_at > 0 { 137 } else { 0 };
                c.reason = "Stopped".into();
                c.message = msg.into();
                c.finished_at = now;
                c.log_done = true;
            }
        };
        let Some(uid) = c.remote_uid.clone() else {
            let was = c.state;
            stop_local(c, "stopped before it was started");
            if was != EXITED {
                ev.push((id.to_string(), c.sandbox_id.clone()));
            }
            return None;
        };
        let r = st.remotes.get_mut(&uid)?;
        match r.phase {
            Phase::Collecting => {
                r.containers.retain(|x| x != id);
                if r.containers.is_empty() {
                    st.remotes.remove(&uid);
                }
                d.remote(&uid);
                let c = st.containers.get_mut(id)?;
                c.remote_uid = None;
                stop_local(c, "stopped before it was sent to the remote side");
                ev.push((id.to_string(), c.sandbox_id.clone()));
                None
            }
            Phase::Created | Phase::Failed => {
                let all_done = r.containers.iter().all(|x| {
                    st.containers
                        .get(x)
                        .is_none_or(|c| c.stop_requested || c.state == EXITED)
                });
                if all_done {
                    r.phase = Phase::Deleting;
                    r.grace_seconds = Some(timeout_s.max(0));
                    d.remote(&uid);
                    Some(uid)
                } else {
                    let c = st.containers.get_mut(id)?;
                    if c.state != EXITED {
                        ev.push((id.to_string(), c.sandbox_id.clone()));
                    }
                    stop_local(
                        c,
                        "stopped; the remote pod keeps running until its other containers stop",
                    );
                    None
                }
            }
            Phase::Sending | Phase::Deleting => None,
        }
    });
    for (id, sb) in ev {
        rt.emit(&id, &sb, cri::ContainerEventType::ContainerStoppedEvent);
    }
    if let Some(uid) = delete
        && let Err(e) = delete_now(rt, &uid).await
    {
        // the record stays Deleting: the dispatcher retries until the server confirms
        mark_stopped_pending(rt, &uid, &e.to_string());
        rt.dispatch_wake.notify_one();
    }
    Ok(())
}

fn mark_stopped_pending(rt: &Runtime, uid: &str, err: &str) {
    let now = crate::now_ns();
    rt.store.update(|st, d| {
        let Some(r) = st.remotes.get(uid) else { return };
        for id in r.containers.clone() {
            if let Some(c) = st.containers.get_mut(&id)
                && c.state != EXITED
            {
                c.state = EXITED;
                c.exit_code = 137;
                c.reason = "Stopped".into();
                c.message = format!("stopped; remote deletion pending ({err})");
                c.finished_at = now;
                d.container(&id);
            }
        }
    });
}

/// `StopPodSandbox`: every container stopped, every remote pod of the sandbox deleted.
pub async fn stop_sandbox(rt: &Arc<Runtime>, sandbox_id: &str) {
    let now = crate::now_ns();
    let mut ev = vec![];
    let uids = rt.store.update(|st, d| {
        if let Some(sb) = st.sandboxes.get_mut(sandbox_id) {
            sb.ready = false;
            d.sandbox(sandbox_id);
        }
        for c in st
            .containers
            .values_mut()
            .filter(|c| c.sandbox_id == sandbox_id)
        {
            c.stop_requested = true;
            d.container(&c.id);
            if c.state == cri::ContainerState::ContainerCreated as i32 {
                c.state = EXITED;
                c.reason = "Stopped".into();
                c.finished_at = now;
                c.log_done = true;
                ev.push(c.id.clone());
            }
        }
        let mut uids = vec![];
        let mut gone = vec![];
        for r in st
            .remotes
            .values_mut()
            .filter(|r| r.sandbox_id == sandbox_id)
        {
            match r.phase {
                Phase::Collecting => gone.push(r.uid.clone()),
                Phase::Created | Phase::Failed => {
                    r.phase = Phase::Deleting;
                    r.grace_seconds.get_or_insert(0);
                    d.remote(&r.uid);
                    uids.push(r.uid.clone());
                }
                Phase::Deleting => uids.push(r.uid.clone()),
                Phase::Sending => {}
            }
        }
        for uid in gone {
            if let Some(r) = st.remotes.remove(&uid) {
                d.remote(&uid);
                for id in r.containers {
                    if let Some(c) = st.containers.get_mut(&id) {
                        c.remote_uid = None;
                        if c.state != EXITED {
                            c.state = EXITED;
                            c.exit_code = 0;
                            c.reason = "Stopped".into();
                            c.message = "stopped before it was sent to the remote side".into();
                            c.finished_at = now;
                            c.log_done = true;
                            ev.push(id.clone());
                        }
                    }
                }
            }
        }
        uids
    });
    for id in ev {
        rt.emit(
            &id,
            sandbox_id,
            cri::ContainerEventType::ContainerStoppedEvent,
        );
    }
    let results = futures::future::join_all(uids.iter().map(|u| delete_now(rt, u))).await;
    for (uid, r) in uids.iter().zip(results) {
        if let Err(e) = r {
            mark_stopped_pending(rt, uid, &e.to_string());
        }
    }
    rt.dispatch_wake.notify_one();
}

/// After a restart: re-register created pods with the API server (`/updateCache`)
/// and resume log following. `Sending`/`Deleting` batches are the dispatcher's.
pub async fn recover(rt: Arc<Runtime>) {
    let (pods, follow) = {
        let st = rt.store.read();
        let pods: Vec<_> = st
            .remotes
            .values()
            .filter(|r| r.phase == Phase::Created)
            .map(|r| {
                convert::minimal_pod(
                    r,
                    r.containers
                        .iter()
                        .filter_map(|id| st.containers.get(id))
                        .map(|c| c.name())
                        .collect(),
                )
            })
            .collect();
        let follow: Vec<String> = st
            .containers
            .values()
            .filter(|c| {
                c.log_file.is_some()
                    && !c.log_done
                    && c.remote_uid.as_ref().is_some_and(|u| {
                        st.remotes.get(u).is_some_and(|r| r.phase == Phase::Created)
                    })
            })
            .map(|c| c.id.clone())
            .collect();
        (pods, follow)
    };
    if !pods.is_empty() {
        tracing::info!(
            pods = pods.len(),
            "recovered remote pods; re-registering them with the API server"
        );
    }
    for id in follow {
        crate::logs::ensure_follower(&rt, &id);
    }
    for pod in pods {
        let mut backoff = Duration::from_millis(500);
        for _ in 0..10 {
            let res = tokio::time::timeout(
                rt.cfg.cri.request_timeout,
                rt.remote.update_cache(pod.clone()),
            )
            .await;
            let ok = matches!(res, Ok(Ok(())));
            rt.metrics.remote("update_cache", ok);
            if ok || matches!(res, Ok(Err(RemoteError::Refused(_)))) {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1 as k8s;

    fn status(reason: &str, jid: &str) -> interlink::PodStatus {
        interlink::PodStatus {
            pod_uid: "u".into(),
            job_id: jid.into(),
            containers: vec![k8s::ContainerStatus {
                name: "c".into(),
                state: Some(k8s::ContainerState {
                    terminated: Some(k8s::ContainerStateTerminated {
                        exit_code: 255,
                        reason: Some(reason.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn unknown_pods_are_not_taken_for_created_ones() {
        assert!(!remote_knows(&status("NotFound", "")));
        assert!(remote_knows(&status("Error", "")));
        assert!(remote_knows(&interlink::PodStatus {
            job_id: "12".into(),
            ..Default::default()
        }));
        assert!(!remote_knows(&interlink::PodStatus::default()));
    }

    #[test]
    fn derived_uids_are_stable_uuids() {
        let u = "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11";
        assert_eq!(derived_uid(u, 1), derived_uid(u, 1));
        assert_ne!(derived_uid(u, 1), derived_uid(u, 2));
        assert!(uuid::Uuid::parse_str(&derived_uid(u, 1)).is_ok());
        assert!(uuid::Uuid::parse_str(&derived_uid("not-a-uuid", 1)).is_ok());
    }
}
