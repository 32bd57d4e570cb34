//! Remote status, committed. The status loop reads a snapshot, runs the
//! state-mapping step (hooks) outside the lock, and commits here: a decision
//! applies only if its container did not change since the snapshot
//! (`Container::rev`); otherwise the next round decides again.

use super::{Change, ExitCause};
use crate::hooks::{CriState, StateDecision};
use crate::states::ContainerState;

/// One container's decision, made on a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub container: String,
    /// `Container::rev` when the snapshot was read.
    pub rev: u64,
    /// Fingerprint of the remote answer decided on (`Container::remote_seen`).
    pub seen: u64,
    pub decision: StateDecision,
    /// When the remote side says it exited (ns), 0 = unknown.
    pub finished_at: i64,
}

/// The typed state of a decision.
pub fn typed(s: CriState) -> ContainerState {
    match s {
        CriState::Created => ContainerState::Created,
        CriState::Running => ContainerState::Running,
        CriState::Exited => ContainerState::Exited,
        CriState::Unknown => ContainerState::Unknown,
    }
}

/// What a container record shows, as a decision (the state step's "current").
pub fn current(c: &crate::store::Container) -> StateDecision {
    StateDecision {
        state: match c.state {
            ContainerState::Created => CriState::Created,
            ContainerState::Running => CriState::Running,
            ContainerState::Exited => CriState::Exited,
            ContainerState::Unknown => CriState::Unknown,
        },
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

impl Change<'_> {
    /// Commit the decisions of one remote pod's status; returns how many
    /// containers changed. When all of its containers have exited, the pod is
    /// finished (no more polling).
    pub fn commit_status(&mut self, uid: &str, job_id: &str, decided: Vec<Decided>) -> usize {
        let mut changed = 0;
        for d in decided {
            let Some(c) = self.st.containers.get(&d.container) else {
                continue;
            };
            if c.rev != d.rev || c.remote_uid.as_deref() != Some(uid) {
                continue;
            }
            let unchanged = current(c) == d.decision;
            let c = self.container_mut(&d.container).expect("checked above");
            c.remote_seen = d.seen;
            if unchanged {
                continue;
            }
            let next = typed(d.decision.state);
            if next == ContainerState::Exited {
                let _ = self.exit(
                    &d.container,
                    ExitCause::Remote {
                        exit_code: d.decision.exit_code,
                        reason: d.decision.reason,
                        message: d.decision.message,
                        finished_at: d.finished_at,
                    },
                );
            } else if next == c.state || c.state.can_become(next) {
                c.state = next;
                c.rev += 1;
                c.exit_code = d.decision.exit_code;
                c.reason = d.decision.reason;
                c.message = d.decision.message;
            } else {
                tracing::warn!(
                    container = %d.container,
                    from = c.state.cri_name(),
                    to = next.cri_name(),
                    "the state-mapping step asked for a transition that cannot happen; ignored"
                );
                continue;
            }
            changed += 1;
        }
        self.remote_job_id(uid, job_id);
        let all_exited = self.st.remotes.get(uid).is_some_and(|r| {
            !r.finished
                && r.containers.iter().all(|id| {
                    self.st
                        .containers
                        .get(id)
                        .is_none_or(|c| c.state.is_exited())
                })
        });
        if all_exited && let Some(r) = self.remote_mut(uid) {
            r.finished = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::states::Phase;

    fn decided(id: &str, rev: u64, state: CriState, code: i32) -> Decided {
        Decided {
            container: id.into(),
            rev,
            seen: 7,
            decision: StateDecision {
                state,
                exit_code: code,
                reason: match (state, code) {
                    (CriState::Exited, 0) => "Completed",
                    (CriState::Exited, _) => "Error",
                    _ => "",
                }
                .into(),
                message: String::new(),
            },
            finished_at: 0,
        }
    }

    fn created_pod(ids: &[&str]) -> (crate::store::Store, String) {
        let store = store_with(ids);
        let (uid, _) = change(&store, |ch| {
            let mut u = String::new();
            for id in ids {
                u = ch.start_container(id, 0).unwrap();
            }
            ch.begin_send(&u, &ids.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            ch.created(&u, "");
            u
        });
        (store, uid)
    }

    fn rev(store: &crate::store::Store, id: &str) -> u64 {
        store.read().containers[id].rev
    }

    #[test]
    fn decisions_commit_exits_and_finish_the_pod() {
        let (store, uid) = created_pod(&["a", "b"]);
        let (ra, rb) = (rev(&store, "a"), rev(&store, "b"));
        let (n, fx) = change(&store, |ch| {
            ch.commit_status(
                &uid,
                "42",
                vec![
                    decided("a", ra, CriState::Exited, 3),
                    decided("b", rb, CriState::Running, 0),
                ],
            )
        });
        assert_eq!(n, 1, "b was already running");
        assert_eq!(fx.events.len(), 1);
        assert_eq!(store.read().containers["a"].exit_code, 3);
        assert_eq!(store.read().containers["b"].remote_seen, 7);
        assert_eq!(store.read().remotes[&uid].job_id, "42");
        assert!(!store.read().remotes[&uid].finished);
        let rb = rev(&store, "b");
        change(&store, |ch| {
            ch.commit_status(&uid, "42", vec![decided("b", rb, CriState::Exited, 0)])
        });
        assert!(store.read().remotes[&uid].finished);
        assert_eq!(phase(&store, &uid), Some(Phase::Created));
    }

    #[test]
    fn a_decision_on_a_stale_snapshot_is_dropped() {
        let (store, uid) = created_pod(&["a", "b"]);
        let stale = rev(&store, "a");
        // the container was stopped while the hook ran
        change(&store, |ch| ch.stop_container("a", 0));
        let before = store.read().containers["a"].clone();
        let (n, fx) = change(&store, |ch| {
            ch.commit_status(&uid, "", vec![decided("a", stale, CriState::Exited, 9)])
        });
        assert_eq!(n, 0);
        assert!(fx.events.is_empty());
        let after = &store.read().containers["a"];
        assert_eq!(after.exit_code, before.exit_code);
        assert_eq!(after.remote_seen, 0, "decided again next round");
    }

    #[test]
    fn illegal_decisions_are_ignored() {
        let (store, uid) = created_pod(&["a"]);
        let r = rev(&store, "a");
        let (n, _) = change(&store, |ch| {
            ch.commit_status(&uid, "", vec![decided("a", r, CriState::Created, 0)])
        });
        assert_eq!(n, 0);
        assert_eq!(cstate(&store, "a"), ContainerState::Running);
        let (n, _) = change(&store, |ch| {
            ch.commit_status(&uid, "", vec![decided("a", r, CriState::Unknown, 0)])
        });
        assert_eq!(n, 1);
        assert_eq!(cstate(&store, "a"), ContainerState::Unknown);
    }
}
