//! The sender: from started containers to remote pods, and back to nothing.
//! It decides nothing about state: every change is a [`crate::lifecycle`]
//! function; this module builds requests, runs the hooks (outside the store
//! lock), talks to the API server and commits what it answered.
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
//! - A batch is built from a snapshot (annotation and admission hooks run
//!   outside the lock) and recorded `Sending` (fsync) only if it did not change
//!   meanwhile. After a crash, a `Sending` batch is looked up with `/status`
//!   first: never created twice.
//! - Admission judged each container at `CreateContainer` on the pod it would
//!   be sent in; a batch that differs from what was judged (several
//!   containers, a later batch) is judged again here, and a denial then makes
//!   its containers exit 128 with reason `AdmissionDenied` (the CRI call that
//!   could have failed has returned).
//! - A remote pod is deleted (`/delete`, grace from `StopContainer`) when none of
//!   its containers should run any more; the record stays (`Deleting`) until the
//!   API server confirmed, so nothing is orphaned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::convert;
use crate::effects;
use crate::lifecycle::ExitCause;
use crate::lifecycle::remote::SendStart;
use crate::pod_specs::PodSpecs;
use crate::remote::RemoteError;
use crate::runtime::Runtime;
use crate::states::ContainerState;
use crate::store::{Inner, Kind, Phase, RemotePod};

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
                    Phase::Collecting if r.send_after <= now || complete(&st, r, &rt.pod_specs) => {
                        sends.push(r.uid.clone())
                    }
                    Phase::Collecting => next = next.min(r.send_after),
                    Phase::Sending => sends.push(r.uid.clone()),
                    Phase::Deleting => deletes.push(r.uid.clone()),
                    _ => {}
                }
            }
        }
        for uid in sends {
            if rt.inflight.claim(&uid) {
                let rt = rt.clone();
                tokio::spawn(async move {
                    let span = tracing::debug_span!("batch", uid = %uid, otel.name = "send batch");
                    interlink::telemetry::resume(&span, &uid);
                    tracing::Instrument::instrument(send(&rt, &uid), span).await;
                    release(&rt, &uid);
                });
            }
        }
        for uid in deletes {
            if rt.inflight.claim(&uid) {
                let rt = rt.clone();
                tokio::spawn(async move {
                    let mut backoff = Duration::from_millis(500);
                    while let Err(e) = delete_once(&rt, &uid).await {
                        // shown stopped, deletion pending, while it is retried
                        effects::change(&rt, |ch| ch.delete_pending(&uid, &e.to_string()));
                        rt.inflight.progressed();
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

/// With the pod's spec from the Kubernetes API: has every one of its regular
/// containers been started (in this batch or an earlier one)? Then nothing
/// more will join the batch: it is sent without waiting for the window.
pub fn complete(st: &Inner, r: &RemotePod, specs: &PodSpecs) -> bool {
    if r.kind != Kind::Regular || specs.is_empty() {
        return false;
    }
    let Some(sb) = st.sandboxes.get(&r.sandbox_id) else {
        return false;
    };
    let pod_uid = sb
        .config
        .metadata
        .as_ref()
        .map(|m| m.uid.as_str())
        .unwrap_or("");
    let Some(names) = specs.containers(pod_uid) else {
        return false;
    };
    let started = |name: &str| {
        st.containers.values().any(|c| {
            c.sandbox_id == r.sandbox_id
                && c.state != ContainerState::Created
                && c.config.metadata.as_ref().is_some_and(|m| m.name == name)
        })
    };
    !names.is_empty() && names.iter().all(|n| started(n))
}

fn release(rt: &Runtime, uid: &str) {
    rt.inflight.release(uid);
    rt.dispatch_wake.notify_one();
}

/// A fingerprint of the pod admission judged (stable across restarts).
pub fn admission_fingerprint(pod: &Pod) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(serde_json::to_vec(pod).unwrap_or_default());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A batch built from a snapshot, ready to be recorded `Sending`.
struct Built {
    req: interlink::PodCreateRequests,
    /// What `/status` is asked about it before a `/create` is sent again.
    probe_pod: Pod,
    containers: Vec<String>,
    /// Asked `/status` before `/create`: it was `Sending` already (a crash,
    /// or an earlier try whose answer was lost).
    probe: bool,
    denied: Option<String>,
}

/// Build batch `uid` from a snapshot; hooks run without the store lock.
fn build(rt: &Runtime, uid: &str) -> Option<Built> {
    let (sb, r, cs) = {
        let st = rt.store.read();
        let r = st.remotes.get(uid)?.clone();
        if !matches!(r.phase, Phase::Collecting | Phase::Sending) {
            return None;
        }
        let sb = st.sandboxes.get(&r.sandbox_id)?.clone();
        let cs: Vec<_> = r
            .containers
            .iter()
            .filter_map(|id| st.containers.get(id).cloned())
            .collect();
        (sb, r, cs)
    };
    let refs: Vec<_> = cs.iter().collect();
    let mut req = convert::build_create(&sb, &r, &refs, rt.hooks.as_ref(), &rt.cfg.plugin_config);
    if let Some(pod) = sb
        .config
        .metadata
        .as_ref()
        .and_then(|m| rt.pod_specs.get(&m.uid))
    {
        convert::apply_pod_spec(&mut req.pod, &pod);
    }
    let judged = match cs.as_slice() {
        [only] => only.admitted == Some(admission_fingerprint(&req.pod)),
        _ => false,
    };
    let denied = if judged {
        None
    } else {
        rt.hooks.admit(&req.pod).err().map(|d| d.to_string())
    };
    let probe_pod = convert::minimal_pod(&r, cs.iter().map(|c| c.name()).collect());
    Some(Built {
        req,
        probe_pod,
        containers: r.containers,
        probe: r.phase == Phase::Sending,
        denied,
    })
}

/// Send one batch: `Sending` (durable) -> `/create` -> `Created` or `Failed`.
async fn send(rt: &Arc<Runtime>, uid: &str) {
    let built = loop {
        let Some(b) = build(rt, uid) else { return };
        match effects::change(rt, |ch| ch.begin_send(uid, &b.containers)) {
            SendStart::Go => break b,
            SendStart::Changed => continue,
            SendStart::Nothing => return,
        }
    };
    if let Some(reason) = built.denied {
        tracing::warn!(uid, %reason, "admission denied the batch");
        effects::change(rt, |ch| {
            ch.send_failed(uid, ExitCause::AdmissionDenied(reason))
        });
        return;
    }
    let (req, probe_pod, mut probe) = (built.req, built.probe_pod, built.probe);
    let deadline = Instant::now() + rt.cfg.create_retry_for;
    let mut backoff = Duration::from_millis(250);
    loop {
        if probe {
            // a /create may have reached the server: ask before sending again
            if let Ok(Ok(sts)) = tokio::time::timeout(
                rt.cfg.cri.request_timeout,
                rt.remote.status(Arc::new(crate::remote::PodList::new(vec![
                    probe_pod.clone(),
                ]))),
            )
            .await
                && let Some(s) = sts
                    .decode_all()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|s| s.pod_uid == uid && remote_knows(s))
            {
                tracing::info!(uid, "remote pod already exists; not created again");
                effects::change(rt, |ch| ch.created(uid, &s.job_id));
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
        let failed = match res {
            Ok(cs) => {
                tracing::info!(uid, job = %cs.pod_jid, "remote pod created");
                effects::change(rt, |ch| ch.created(uid, &cs.pod_jid));
                return;
            }
            Err(RemoteError::Refused(msg)) => {
                tracing::warn!(uid, error = %msg, "remote pod refused");
                msg
            }
            Err(e) if Instant::now() > deadline => {
                format!("{e} (gave up after {:?})", rt.cfg.create_retry_for)
            }
            Err(e) => {
                tracing::warn!(uid, error = %e, "create failed; retrying");
                probe = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        effects::change(rt, |ch| {
            ch.send_failed(uid, ExitCause::CreateFailed(failed))
        });
        return;
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

/// One `/delete` of a remote pod in `Deleting`; on success its record goes and its
/// still-running containers are reported exited.
pub async fn delete_once(rt: &Arc<Runtime>, uid: &str) -> Result<(), RemoteError> {
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
        .and_then(|s| s.termination_grace_period_seconds);
    let res =
        match tokio::time::timeout(delete_bound(rt, grace), rt.remote.delete(pod.clone())).await {
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
    effects::change(rt, |ch| ch.deleted(uid));
    Ok(())
}

/// Delete now (waiting for it) if nobody else is; else leave it to the
/// dispatcher. A failure shows the containers stopped, delete pending.
async fn delete_now(rt: &Arc<Runtime>, uid: &str) {
    if !rt.inflight.claim(uid) {
        // the dispatcher is deleting it already (woken by the same change):
        // wait for its first outcome, so that what the caller reads next shows
        // the containers stopped (or gone), as after a delete of our own
        let grace = rt
            .store
            .read()
            .remotes
            .get(uid)
            .and_then(|r| r.grace_seconds);
        let bound = delete_bound(rt, grace);
        let settled = || delete_settled(rt, uid);
        let _ = tokio::time::timeout(bound, rt.inflight.wait(uid, settled)).await;
        return;
    }
    let r = delete_once(rt, uid).await;
    release(rt, uid);
    if let Err(e) = r {
        // the record stays Deleting: the dispatcher retries until the server confirms
        effects::change(rt, |ch| ch.delete_pending(uid, &e.to_string()));
    }
}

/// How long one `/delete` may take: the request timeout plus the pod's grace.
fn delete_bound(rt: &Runtime, grace_seconds: Option<i64>) -> Duration {
    rt.cfg.cri.request_timeout + Duration::from_secs(grace_seconds.unwrap_or(0).max(0) as u64)
}

/// The remote pod is gone, or no container of it is shown running any more.
fn delete_settled(rt: &Runtime, uid: &str) -> bool {
    let st = rt.store.read();
    let Some(r) = st.remotes.get(uid) else {
        return true;
    };
    r.phase != Phase::Deleting
        || r.containers
            .iter()
            .filter_map(|id| st.containers.get(id))
            .all(|c| c.state == ContainerState::Exited)
}

/// `StopContainer`: nothing of this container runs afterwards.
pub async fn stop_container(rt: &Arc<Runtime>, id: &str, timeout_s: i64) {
    if let Some(uid) = effects::change(rt, |ch| ch.stop_container(id, timeout_s)) {
        delete_now(rt, &uid).await;
    }
}

/// `StopPodSandbox`: every container stopped, every remote pod of the sandbox deleted.
pub async fn stop_sandbox(rt: &Arc<Runtime>, sandbox_id: &str) {
    let uids = effects::change(rt, |ch| ch.stop_sandbox(sandbox_id));
    futures::future::join_all(uids.iter().map(|u| delete_now(rt, u))).await;
    rt.dispatch_wake.notify_one();
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
}
