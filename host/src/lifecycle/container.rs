//! Containers: created, started (into a batch), stopped through the CRI,
//! removed; their log progress.

use super::{Change, ExitCause, LifecycleError, StopPoint};
use crate::proto::runtime::v1 as cri;
use crate::states::{ContainerState, Phase};
use crate::store::Container;

impl Change<'_> {
    /// Record a new container (CREATED) in its sandbox. kubelet creates each
    /// container just before it starts it: a regular one created while its
    /// sandbox's batch is collecting will join it, so the batch waits another
    /// `window_ns` for its start.
    pub fn create_container(
        &mut self,
        mut c: Container,
        window_ns: i64,
    ) -> Result<(), LifecycleError> {
        let md = c.config.metadata.clone().unwrap_or_default();
        if let Some(o) = self.st.containers.values().find(|o| {
            o.sandbox_id == c.sandbox_id
                && o.config
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.name == md.name && m.attempt == md.attempt)
        }) {
            return Err(LifecycleError::ContainerExists {
                name: md.name,
                attempt: md.attempt,
                sandbox: c.sandbox_id.clone(),
                id: o.id.clone(),
            });
        }
        if !self
            .st
            .sandboxes
            .get(&c.sandbox_id)
            .is_some_and(|s| s.ready)
        {
            return Err(LifecycleError::SandboxNotReady(c.sandbox_id.clone()));
        }
        c.state = ContainerState::Created;
        if c.kind == crate::store::Kind::Regular {
            let open = self.st.remotes.values().find(|r| {
                r.sandbox_id == c.sandbox_id
                    && r.kind == crate::store::Kind::Regular
                    && r.phase == Phase::Collecting
            });
            if let Some(uid) = open.map(|r| r.uid.clone()) {
                let now = self.now;
                let r = self.remote_mut(&uid).expect("found above");
                r.send_after = r.send_after.max(now + window_ns);
            }
        }
        // the ID PullImage answered for this image (ContainerStatus.image_ref)
        c.image_id = crate::images::record(self.st, self.dirty, &c.image_ref);
        self.fx
            .event(&c, cri::ContainerEventType::ContainerCreatedEvent);
        self.dirty.container(&c.id);
        self.st.containers.insert(c.id.clone(), c);
        Ok(())
    }

    /// Start a created container: RUNNING from now on, in its sandbox's open
    /// batch (or a new one) that the dispatcher sends when `window_ns` passed
    /// without another start. Returns the batch's UID.
    pub fn start_container(&mut self, id: &str, window_ns: i64) -> Result<String, LifecycleError> {
        let c = self
            .st
            .containers
            .get(id)
            .ok_or_else(|| LifecycleError::ContainerNotFound(id.to_string()))?;
        if !c.state.can_become(ContainerState::Running) || c.state != ContainerState::Created {
            return Err(LifecycleError::NotStartable {
                id: id.to_string(),
                state: c.state.cri_name(),
            });
        }
        let sandbox_id = c.sandbox_id.clone();
        if !self.st.sandboxes.get(&sandbox_id).is_some_and(|s| s.ready) {
            return Err(LifecycleError::SandboxNotReady(sandbox_id));
        }
        let uid = self.enqueue(id, window_ns)?;
        let now = self.now;
        let c = self.container_mut(id).expect("checked above");
        c.remote_uid = Some(uid.clone());
        c.state = ContainerState::Running;
        c.rev += 1;
        c.started_at = now;
        let c = c.clone();
        self.fx
            .event(&c, cri::ContainerEventType::ContainerStartedEvent);
        self.fx.wake_dispatcher = true;
        Ok(uid)
    }

    /// `StopContainer`: nothing of this container runs afterwards. Returns the
    /// remote pod to delete now (with the grace `timeout_s`) when this was the
    /// last of its containers to stop.
    pub fn stop_container(&mut self, id: &str, timeout_s: i64) -> Option<String> {
        let c = self.container_mut(id)?;
        c.stop_requested = true;
        let Some(uid) = c.remote_uid.clone() else {
            let _ = self.exit(id, ExitCause::Stopped(StopPoint::BeforeStart));
            return None;
        };
        let phase = self.st.remotes.get(&uid)?.phase;
        match phase {
            Phase::Collecting => {
                self.leave_batch(id, &uid);
                let _ = self.exit(id, ExitCause::Stopped(StopPoint::BeforeSend));
                None
            }
            Phase::Created | Phase::Failed => {
                let r = &self.st.remotes[&uid];
                let all_done = r.containers.iter().all(|x| {
                    self.st
                        .containers
                        .get(x)
                        .is_none_or(|c| c.stop_requested || c.state.is_exited())
                });
                if all_done {
                    self.mark_deleting(&uid, Some(timeout_s.max(0)));
                    Some(uid)
                } else {
                    let _ = self.exit(id, ExitCause::Stopped(StopPoint::OthersKeepRunning));
                    None
                }
            }
            // the sender deletes it when `/create` returns (every container stopped)
            Phase::Sending | Phase::Deleting => None,
        }
    }

    /// `RemoveContainer` of a container that is not running: forgotten; a
    /// remote pod left with no container is deleted. Returns whether it existed.
    pub fn remove_container(&mut self, id: &str) -> bool {
        let Some(c) = self.st.containers.remove(id) else {
            return false;
        };
        self.dirty.container(id);
        self.fx
            .event(&c, cri::ContainerEventType::ContainerDeletedEvent);
        if let Some(uid) = &c.remote_uid
            && let Some(r) = self.st.remotes.get(uid)
        {
            let others = r
                .containers
                .iter()
                .any(|x| x != id && self.st.containers.contains_key(x));
            if !others && matches!(r.phase, Phase::Created | Phase::Failed) {
                self.mark_deleting(uid, None);
            }
        }
        true
    }

    /// `n` more bytes of remote log were written to the container's file;
    /// `done`: the file has all the remote side will ever have.
    pub fn log_progress(&mut self, id: &str, n: u64, done: bool) {
        if let Some(c) = self.container_mut(id) {
            c.log_offset += n;
            c.log_done |= done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::states::{ContainerState, Phase};
    use crate::store::Kind;

    const WINDOW: i64 = 300_000_000;

    #[test]
    fn create_refuses_duplicates_and_stopped_sandboxes() {
        let store = store_with(&["a"]);
        let (r, fx) = change(&store, |ch| {
            ch.create_container(container("a2", "s", Kind::Regular), WINDOW)
        });
        assert_eq!(r, Ok(()));
        assert_eq!(fx.events.len(), 1);
        let mut dup = container("a3", "s", Kind::Regular);
        dup.config.metadata.as_mut().unwrap().name = "a".into();
        let (r, _) = change(&store, |ch| ch.create_container(dup, WINDOW));
        assert!(matches!(r, Err(LifecycleError::ContainerExists { .. })));
        store.update(|st, _| st.sandboxes.get_mut("s").unwrap().ready = false);
        let (r, _) = change(&store, |ch| {
            ch.create_container(container("b", "s", Kind::Regular), WINDOW)
        });
        assert_eq!(r, Err(LifecycleError::SandboxNotReady("s".into())));
    }

    #[test]
    fn a_container_created_while_its_pods_batch_collects_holds_the_batch() {
        let store = store_with(&["a"]);
        let (uid, _) = change(&store, |ch| ch.start_container("a", WINDOW).unwrap());
        let before = store.read().remotes[&uid].send_after;
        std::thread::sleep(std::time::Duration::from_millis(2));
        change(&store, |ch| {
            ch.create_container(container("b", "s", Kind::Regular), WINDOW)
                .unwrap()
        });
        assert!(store.read().remotes[&uid].send_after > before);
        // an init container never joins a batch: it does not hold one
        let held = store.read().remotes[&uid].send_after;
        change(&store, |ch| {
            ch.create_container(container("i", "s", Kind::Init), WINDOW)
                .unwrap()
        });
        assert_eq!(store.read().remotes[&uid].send_after, held);
    }

    #[test]
    fn starts_batch_regular_containers_and_isolate_init_ones() {
        let store = store_with(&["a", "b"]);
        store.update(|st, _| {
            st.containers
                .insert("i".into(), container("i", "s", Kind::Init));
        });
        let (init_uid, _) = change(&store, |ch| ch.start_container("i", WINDOW).unwrap());
        let (ua, fx) = change(&store, |ch| ch.start_container("a", WINDOW).unwrap());
        let (ub, _) = change(&store, |ch| ch.start_container("b", WINDOW).unwrap());
        assert!(fx.wake_dispatcher);
        assert_eq!(ua, ub, "regular containers share the open batch");
        assert_eq!(
            ua, "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11",
            "first batch: pod UID"
        );
        assert_ne!(init_uid, ua);
        let st = store.read();
        assert_eq!(st.remotes[&ua].containers, vec!["a", "b"]);
        assert_eq!(
            st.remotes[&init_uid].send_after,
            st.containers["i"].started_at
        );
        assert_eq!(st.containers["a"].state, ContainerState::Running);
        drop(st);
        // started once only
        let (r, _) = change(&store, |ch| ch.start_container("a", WINDOW));
        assert_eq!(
            r,
            Err(LifecycleError::NotStartable {
                id: "a".into(),
                state: "CONTAINER_RUNNING"
            })
        );
    }

    /// (phase of the batch, other container running?) -> (exit reason, delete now?, batch after)
    #[test]
    fn stop_container_by_phase() {
        let cases = [
            (None, false, "stopped before it was started", false, None),
            (
                Some(Phase::Collecting),
                false,
                "before it was sent",
                false,
                None,
            ),
            (
                Some(Phase::Collecting),
                true,
                "before it was sent",
                false,
                Some(Phase::Collecting),
            ),
            (Some(Phase::Created), false, "", true, Some(Phase::Deleting)),
            (
                Some(Phase::Created),
                true,
                "keeps running",
                false,
                Some(Phase::Created),
            ),
            (Some(Phase::Failed), false, "", true, Some(Phase::Deleting)),
            (Some(Phase::Sending), false, "", false, Some(Phase::Sending)),
        ];
        for (phase, other, msg, delete, after) in cases {
            let store = store_with(&["a", "b"]);
            let mut uid = String::new();
            if let Some(p) = phase {
                let (u, _) = change(&store, |ch| ch.start_container("a", WINDOW).unwrap());
                if other {
                    change(&store, |ch| ch.start_container("b", WINDOW).unwrap());
                }
                store.update(|st, _| st.remotes.get_mut(&u).unwrap().phase = p);
                uid = u;
            }
            let (del, fx) = change(&store, |ch| ch.stop_container("a", 5));
            let case = format!("{phase:?} other={other}");
            assert_eq!(del.is_some(), delete, "{case}");
            if phase.is_some() {
                assert_eq!(super::super::testing::phase(&store, &uid), after, "{case}");
            }
            let st = store.read();
            let a = &st.containers["a"];
            assert!(a.stop_requested, "{case}");
            if msg.is_empty() {
                assert_ne!(a.state, ContainerState::Exited, "{case}");
            } else {
                assert_eq!(a.state, ContainerState::Exited, "{case}");
                assert!(a.message.contains(msg), "{case}: {}", a.message);
                assert_eq!(fx.events.len(), 1, "{case}");
            }
            if delete {
                assert_eq!(st.remotes[&uid].grace_seconds, Some(5));
                assert!(fx.wake_dispatcher);
            }
        }
    }

    #[test]
    fn removing_the_last_container_deletes_its_remote_pod() {
        let store = store_with(&["a", "b"]);
        let (uid, _) = change(&store, |ch| {
            ch.start_container("a", WINDOW).unwrap();
            ch.start_container("b", WINDOW).unwrap()
        });
        store.update(|st, _| st.remotes.get_mut(&uid).unwrap().phase = Phase::Created);
        let (gone, fx) = change(&store, |ch| ch.remove_container("a"));
        assert!(gone && !fx.wake_dispatcher);
        assert_eq!(phase(&store, &uid), Some(Phase::Created));
        let (_, fx) = change(&store, |ch| ch.remove_container("b"));
        assert!(fx.wake_dispatcher);
        assert_eq!(phase(&store, &uid), Some(Phase::Deleting));
        let (again, fx) = change(&store, |ch| ch.remove_container("b"));
        assert!(!again && fx.is_empty());
    }
}
