//! Remote pods (batches): collecting started containers, sending, created or
//! failed, deleting, deleted.

use super::{Change, ExitCause, LifecycleError};
use crate::states::Phase;
use crate::store::{Kind, RemotePod};

/// A UID derived from the pod UID for batch `n`.
pub fn derived_uid(pod_uid: &str, n: u32) -> String {
    let ns = uuid::Uuid::parse_str(pod_uid).unwrap_or(uuid::Uuid::NAMESPACE_OID);
    uuid::Uuid::new_v5(&ns, format!("{pod_uid}/batch/{n}").as_bytes()).to_string()
}

/// What [`Change::begin_send`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStart {
    /// Recorded `Sending` (durably): send `/create` now.
    Go,
    /// The batch is not what was built (a container joined or stopped, the
    /// phase moved): build it again.
    Changed,
    /// Nothing to send: every container was stopped (the batch is gone, or is
    /// being deleted in case an earlier `/create` arrived).
    Nothing,
}

impl Change<'_> {
    /// Put a started container in its sandbox's open batch, or a new one.
    pub(super) fn enqueue(&mut self, id: &str, window_ns: i64) -> Result<String, LifecycleError> {
        let now = self.now;
        let c = self
            .st
            .containers
            .get(id)
            .ok_or_else(|| LifecycleError::ContainerNotFound(id.to_string()))?;
        let (sandbox_id, kind) = (c.sandbox_id.clone(), c.kind);
        let open = (kind == Kind::Regular)
            .then(|| {
                self.st.remotes.values().find(|r| {
                    r.sandbox_id == sandbox_id
                        && r.kind == Kind::Regular
                        && r.phase == Phase::Collecting
                })
            })
            .flatten()
            .map(|r| r.uid.clone());
        if let Some(uid) = open {
            let r = self.remote_mut(&uid).expect("found above");
            r.containers.push(id.to_string());
            r.send_after = now + window_ns;
            return Ok(uid);
        }
        let sb = self
            .sandbox_mut(&sandbox_id)
            .ok_or_else(|| LifecycleError::SandboxNotFound(sandbox_id.clone()))?;
        let md = sb.config.metadata.clone().unwrap_or_default();
        let (uid, name) = if kind == Kind::Regular && !sb.main_used {
            sb.main_used = true;
            (sb.uid.clone(), crate::names::pod_name(&md.name))
        } else {
            sb.batches += 1;
            let name = crate::names::pod_name(&format!("{}-{}", md.name, sb.batches));
            (derived_uid(&sb.uid, sb.batches), name)
        };
        self.st.remotes.insert(
            uid.clone(),
            RemotePod {
                uid: uid.clone(),
                sandbox_id,
                name,
                namespace: crate::names::dns_label(&md.namespace),
                kind,
                containers: vec![id.to_string()],
                phase: Phase::Collecting,
                job_id: String::new(),
                grace_seconds: None,
                send_after: if kind == Kind::Init {
                    now
                } else {
                    now + window_ns
                },
                finished: false,
            },
        );
        self.dirty.remote(&uid);
        Ok(uid)
    }

    /// Take a container out of a collecting batch (a batch left empty goes).
    pub(super) fn leave_batch(&mut self, id: &str, uid: &str) {
        let Some(r) = self.remote_mut(uid) else {
            return;
        };
        r.containers.retain(|x| x != id);
        if r.containers.is_empty() && r.phase.can_be_forgotten() {
            self.st.remotes.remove(uid);
        }
        if let Some(c) = self.container_mut(id) {
            c.remote_uid = None;
        }
    }

    /// The sender built the `/create` of batch `uid` from its `containers` (a
    /// snapshot): record `Sending`, durably, before it is sent — unless the
    /// batch changed meanwhile.
    pub fn begin_send(&mut self, uid: &str, containers: &[String]) -> SendStart {
        let Some(r) = self.st.remotes.get(uid) else {
            return SendStart::Nothing;
        };
        if !matches!(r.phase, Phase::Collecting | Phase::Sending) {
            return SendStart::Nothing;
        }
        let live = r.containers.iter().any(|id| {
            self.st
                .containers
                .get(id)
                .is_some_and(|c| !c.stop_requested)
        });
        if !live {
            if r.phase.can_be_forgotten() {
                self.st.remotes.remove(uid);
                self.dirty.remote(uid);
            } else {
                // a `/create` may have arrived before a crash
                self.mark_deleting(uid, None);
            }
            return SendStart::Nothing;
        }
        if r.containers != containers {
            return SendStart::Changed;
        }
        let r = self.remote_mut(uid).expect("checked above");
        r.phase = Phase::Sending;
        self.durable();
        SendStart::Go
    }

    /// `/create` succeeded (or the remote side already had the pod).
    pub fn created(&mut self, uid: &str, job_id: &str) {
        let Some(r) = self.remote_mut(uid) else {
            return;
        };
        if !r.phase.can_become(Phase::Created) {
            return;
        }
        r.phase = Phase::Created;
        r.job_id = job_id.to_string();
        let ids = r.containers.clone();
        let mut all_stopped = true;
        for id in &ids {
            if let Some(c) = self.container_mut(id) {
                c.spec = None;
                all_stopped &= c.stop_requested;
                if c.log_file.is_some() && !c.log_done {
                    self.fx.followers.push(id.clone());
                }
            }
        }
        if all_stopped {
            self.mark_deleting(uid, None);
        }
    }

    /// `/create` failed for good: nothing runs remotely; its containers exit.
    pub fn send_failed(&mut self, uid: &str, cause: ExitCause) {
        let Some(r) = self.remote_mut(uid) else {
            return;
        };
        if !r.phase.can_become(Phase::Failed) {
            return;
        }
        r.phase = Phase::Failed;
        for id in r.containers.clone() {
            let _ = self.exit(&id, cause.clone());
        }
    }

    /// The remote pod must go: `/delete` is due (the dispatcher sends it).
    /// `grace`: seconds for its containers to stop (kept when already set).
    pub fn mark_deleting(&mut self, uid: &str, grace: Option<i64>) {
        let Some(r) = self.remote_mut(uid) else {
            return;
        };
        if r.phase.can_become(Phase::Deleting) {
            r.phase = Phase::Deleting;
        }
        if r.phase == Phase::Deleting {
            if let Some(g) = grace {
                r.grace_seconds = Some(g);
            } else {
                r.grace_seconds.get_or_insert(0);
            }
            self.fx.wake_dispatcher = true;
        }
    }

    /// `/delete` of a remote pod was not confirmed: its containers are shown
    /// stopped meanwhile (the dispatcher retries the delete).
    pub fn delete_pending(&mut self, uid: &str, error: &str) {
        let Some(r) = self.st.remotes.get(uid) else {
            return;
        };
        for id in r.containers.clone() {
            let _ = self.exit(&id, ExitCause::StoppedDeletePending(error.to_string()));
        }
        self.fx.wake_dispatcher = true;
    }

    /// The API server confirmed the `/delete`: the record goes; its containers
    /// that still ran have exited and every log is complete.
    pub fn deleted(&mut self, uid: &str) {
        match self.st.remotes.get(uid) {
            Some(r) if r.phase == Phase::Deleting => {}
            _ => return,
        }
        let r = self.st.remotes.remove(uid).expect("checked above");
        self.dirty.remote(uid);
        for id in &r.containers {
            let _ = self.exit(id, ExitCause::RemoteDeleted);
            if let Some(c) = self.container_mut(id) {
                c.remote_uid = None;
                c.log_done = true;
            }
        }
    }

    /// A status answer named a job ID for the remote pod.
    pub fn remote_job_id(&mut self, uid: &str, job_id: &str) {
        if job_id.is_empty() || self.st.remotes.get(uid).is_none_or(|r| r.job_id == job_id) {
            return;
        }
        if let Some(r) = self.remote_mut(uid) {
            r.job_id = job_id.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::states::ContainerState;

    fn started(ids: &[&str]) -> (crate::store::Store, String) {
        let store = store_with(ids);
        let (uid, _) = change(&store, |ch| {
            let mut uid = String::new();
            for id in ids {
                uid = ch.start_container(id, 0).unwrap();
            }
            uid
        });
        (store, uid)
    }

    #[test]
    fn send_is_recorded_only_for_the_batch_that_was_built() {
        let (store, uid) = started(&["a", "b"]);
        let (r, _) = change(&store, |ch| ch.begin_send(&uid, &["a".into()]));
        assert_eq!(r, SendStart::Changed);
        assert_eq!(phase(&store, &uid), Some(Phase::Collecting));
        let (r, _) = change(&store, |ch| ch.begin_send(&uid, &["a".into(), "b".into()]));
        assert_eq!(r, SendStart::Go);
        assert_eq!(phase(&store, &uid), Some(Phase::Sending));
        change(&store, |ch| ch.created(&uid, "job-1"));
        assert_eq!(phase(&store, &uid), Some(Phase::Created));
        assert_eq!(store.read().remotes[&uid].job_id, "job-1");
        // a created pod is not sent again
        let (r, _) = change(&store, |ch| ch.begin_send(&uid, &["a".into(), "b".into()]));
        assert_eq!(r, SendStart::Nothing);
    }

    #[test]
    fn a_batch_with_every_container_stopped_is_not_sent() {
        // collecting: forgotten
        let (store, uid) = started(&["a"]);
        store.update(|st, _| st.containers.get_mut("a").unwrap().stop_requested = true);
        let (r, _) = change(&store, |ch| ch.begin_send(&uid, &["a".into()]));
        assert_eq!(r, SendStart::Nothing);
        assert_eq!(phase(&store, &uid), None);
        // sending (recovered after a crash): deleted, as its /create may have arrived
        let (store, uid) = started(&["a"]);
        store.update(|st, _| {
            st.containers.get_mut("a").unwrap().stop_requested = true;
            st.remotes.get_mut(&uid).unwrap().phase = Phase::Sending;
        });
        let (r, fx) = change(&store, |ch| ch.begin_send(&uid, &["a".into()]));
        assert_eq!(r, SendStart::Nothing);
        assert!(fx.wake_dispatcher);
        assert_eq!(phase(&store, &uid), Some(Phase::Deleting));
    }

    #[test]
    fn created_after_every_container_stopped_deletes_at_once() {
        let (store, uid) = started(&["a"]);
        change(&store, |ch| ch.begin_send(&uid, &["a".into()]));
        change(&store, |ch| ch.stop_container("a", 3));
        let (_, fx) = change(&store, |ch| ch.created(&uid, ""));
        assert!(fx.wake_dispatcher);
        assert_eq!(phase(&store, &uid), Some(Phase::Deleting));
    }

    #[test]
    fn a_failed_send_exits_every_container_once() {
        let (store, uid) = started(&["a", "b"]);
        change(&store, |ch| ch.begin_send(&uid, &["a".into(), "b".into()]));
        let (_, fx) = change(&store, |ch| {
            ch.send_failed(&uid, ExitCause::CreateFailed("refused".into()))
        });
        assert_eq!(fx.events.len(), 2);
        assert_eq!(phase(&store, &uid), Some(Phase::Failed));
        assert_eq!(cstate(&store, "a"), ContainerState::Exited);
        assert_eq!(store.read().containers["b"].reason, "CreateFailed");
        // failing again changes nothing
        let (_, fx) = change(&store, |ch| {
            ch.send_failed(&uid, ExitCause::CreateFailed("x".into()))
        });
        assert!(fx.is_empty());
    }

    #[test]
    fn deleted_only_from_deleting_and_logs_complete() {
        let (store, uid) = started(&["a"]);
        change(&store, |ch| ch.begin_send(&uid, &["a".into()]));
        change(&store, |ch| ch.created(&uid, ""));
        change(&store, |ch| ch.deleted(&uid));
        assert_eq!(
            phase(&store, &uid),
            Some(Phase::Created),
            "not Deleting: kept"
        );
        change(&store, |ch| ch.mark_deleting(&uid, Some(7)));
        assert_eq!(store.read().remotes[&uid].grace_seconds, Some(7));
        change(&store, |ch| ch.delete_pending(&uid, "unreachable"));
        assert!(store.read().containers["a"].message.contains("pending"));
        change(&store, |ch| ch.deleted(&uid));
        assert_eq!(phase(&store, &uid), None);
        let st = store.read();
        let a = &st.containers["a"];
        assert!(a.log_done && a.remote_uid.is_none());
        assert_eq!(a.state, ContainerState::Exited);
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
