//! The one way a container exits. Every cause has one exit code, reason and
//! message, and says whether the container's log is complete.

use super::{Change, LifecycleError};
use crate::proto::runtime::v1 as cri;
use crate::states::ContainerState;

/// Where a stop through the CRI found the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPoint {
    /// Created, never started.
    BeforeStart,
    /// Started, but its batch was not sent yet.
    BeforeSend,
    /// Running in a remote pod whose other containers keep running.
    OthersKeepRunning,
}

/// Why a container exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitCause {
    /// The remote side reported it (through the state-mapping step).
    Remote {
        exit_code: i32,
        reason: String,
        message: String,
        /// When it exited (ns); 0 = now.
        finished_at: i64,
    },
    /// Stopped through the CRI.
    Stopped(StopPoint),
    /// Stopped; the `/delete` of its remote pod has not been confirmed yet
    /// (the dispatcher retries).
    StoppedDeletePending(String),
    /// Its remote pod was deleted (stop confirmed).
    RemoteDeleted,
    /// `/create` of its batch failed or was refused.
    CreateFailed(String),
    /// Admission denied its batch when it was sent (see [`crate::hooks::Hooks::admit`]).
    AdmissionDenied(String),
}

/// Exit code of a container killed by a stop (SIGKILL, as runtimes report it).
pub const KILLED: i32 = 137;
/// Exit code of a container that never ran (runtimes' "could not start").
pub const NOT_RUN: i32 = 128;

/// What happens to the container's CRI log file at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// Nothing more will come: the file is complete.
    Complete,
    /// Fetch the remote tail (a follower drains it and marks the log complete).
    DrainTail,
    /// Keep following as now (the remote side may still write).
    Unchanged,
}

impl ExitCause {
    /// (exit code, reason, message, log) of this cause for a container that
    /// `was_started`.
    pub fn outcome(&self, was_started: bool) -> (i32, &'static str, String, LogEnd) {
        let stopped_code = if was_started { KILLED } else { 0 };
        match self {
            ExitCause::Remote {
                exit_code, message, ..
            } => (*exit_code, "", message.clone(), LogEnd::DrainTail),
            ExitCause::Stopped(p) => (
                stopped_code,
                "Stopped",
                match p {
                    StopPoint::BeforeStart => "stopped before it was started",
                    StopPoint::BeforeSend => "stopped before it was sent to the remote side",
                    StopPoint::OthersKeepRunning => {
                        "stopped; the remote pod keeps running until its other containers stop"
                    }
                }
                .to_string(),
                LogEnd::Complete,
            ),
            ExitCause::StoppedDeletePending(err) => (
                KILLED,
                "Stopped",
                format!("stopped; remote deletion pending ({err})"),
                LogEnd::Unchanged,
            ),
            ExitCause::RemoteDeleted => (
                stopped_code,
                "Stopped",
                "stopped through the CRI; the remote pod was deleted".to_string(),
                LogEnd::Complete,
            ),
            ExitCause::CreateFailed(m) => (NOT_RUN, "CreateFailed", m.clone(), LogEnd::Complete),
            ExitCause::AdmissionDenied(m) => (
                NOT_RUN,
                "AdmissionDenied",
                format!("admission denied the pod: {m}"),
                LogEnd::Complete,
            ),
        }
    }
}

impl Change<'_> {
    /// The container exits for `cause`, unless it already has. Returns whether
    /// it changed.
    pub fn exit(&mut self, id: &str, cause: ExitCause) -> Result<bool, LifecycleError> {
        let now = self.now;
        let c = self
            .container_mut(id)
            .ok_or_else(|| LifecycleError::ContainerNotFound(id.to_string()))?;
        if !c.state.can_become(ContainerState::Exited) {
            return Ok(false);
        }
        let was_started = c.state != ContainerState::Created;
        let (code, reason, message, log) = cause.outcome(was_started);
        c.state = ContainerState::Exited;
        c.rev += 1;
        c.exit_code = code;
        c.reason = match &cause {
            ExitCause::Remote { reason, .. } => reason.clone(),
            _ => reason.to_string(),
        };
        c.message = message;
        c.finished_at = match cause {
            // remote times have whole seconds (Kubernetes `Time`): never before the start
            ExitCause::Remote { finished_at, .. } if finished_at > 0 => {
                finished_at.max(c.started_at)
            }
            _ => now,
        };
        let follow = match log {
            LogEnd::Complete => {
                c.log_done = true;
                false
            }
            LogEnd::DrainTail if c.log_file.is_some() && !c.log_done => true,
            LogEnd::DrainTail => {
                c.log_done = true;
                false
            }
            LogEnd::Unchanged => false,
        };
        let (id, sandbox) = (c.id.clone(), c.sandbox_id.clone());
        if follow {
            self.fx.followers.push(id.clone());
        }
        self.fx
            .events
            .push((id, sandbox, cri::ContainerEventType::ContainerStoppedEvent));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;

    fn running(store: &crate::store::Store, id: &str, log: bool) {
        store.update(|st, _| {
            let c = st.containers.get_mut(id).unwrap();
            c.state = ContainerState::Running;
            c.started_at = 10;
            if log {
                c.log_file = Some("/nonexistent/log".into());
            }
        });
    }

    /// (cause, started?, log file?, code, reason, message contains, log done, follower)
    type Case = (
        ExitCause,
        bool,
        bool,
        i32,
        &'static str,
        &'static str,
        bool,
        bool,
    );

    #[test]
    fn every_cause_has_one_outcome() {
        let cases: Vec<Case> = vec![
            (
                ExitCause::Remote {
                    exit_code: 3,
                    reason: "Error".into(),
                    message: "m".into(),
                    finished_at: 5,
                },
                true,
                true,
                3,
                "Error",
                "m",
                false,
                true,
            ),
            (
                ExitCause::Remote {
                    exit_code: 0,
                    reason: "Completed".into(),
                    message: String::new(),
                    finished_at: 0,
                },
                true,
                false,
                0,
                "Completed",
                "",
                true,
                false,
            ),
            (
                ExitCause::Stopped(StopPoint::BeforeStart),
                false,
                true,
                0,
                "Stopped",
                "before it was started",
                true,
                false,
            ),
            (
                ExitCause::Stopped(StopPoint::BeforeSend),
                true,
                true,
                KILLED,
                "Stopped",
                "before it was sent",
                true,
                false,
            ),
            (
                ExitCause::Stopped(StopPoint::OthersKeepRunning),
                true,
                true,
                KILLED,
                "Stopped",
                "keeps running",
                true,
                false,
            ),
            (
                ExitCause::StoppedDeletePending("down".into()),
                true,
                true,
                KILLED,
                "Stopped",
                "deletion pending (down)",
                false,
                false,
            ),
            (
                ExitCause::RemoteDeleted,
                true,
                true,
                KILLED,
                "Stopped",
                "remote pod was deleted",
                true,
                false,
            ),
            (
                ExitCause::CreateFailed("no".into()),
                true,
                true,
                NOT_RUN,
                "CreateFailed",
                "no",
                true,
                false,
            ),
            (
                ExitCause::AdmissionDenied("policy".into()),
                true,
                true,
                NOT_RUN,
                "AdmissionDenied",
                "admission denied the pod: policy",
                true,
                false,
            ),
        ];
        for (cause, started, log, code, reason, msg, done, follower) in cases {
            let store = store_with(&["c"]);
            if started {
                running(&store, "c", log);
            } else if log {
                store.update(|st, _| {
                    st.containers.get_mut("c").unwrap().log_file = Some("/x".into())
                });
            }
            let (changed, fx) = change(&store, |ch| ch.exit("c", cause.clone()).unwrap());
            assert!(changed, "{cause:?}");
            let st = store.read();
            let c = &st.containers["c"];
            assert_eq!(c.state, ContainerState::Exited, "{cause:?}");
            assert_eq!(c.exit_code, code, "{cause:?}");
            assert_eq!(c.reason, reason, "{cause:?}");
            assert!(c.message.contains(msg), "{cause:?}: {}", c.message);
            assert_eq!(c.log_done, done, "{cause:?}");
            assert!(c.finished_at > 0 && c.finished_at >= c.started_at);
            assert_eq!(fx.followers.len(), follower as usize, "{cause:?}");
            assert_eq!(
                fx.events,
                vec![(
                    "c".to_string(),
                    "s".to_string(),
                    cri::ContainerEventType::ContainerStoppedEvent
                )]
            );
        }
    }

    #[test]
    fn an_exited_container_exits_once() {
        let store = store_with(&["c"]);
        running(&store, "c", false);
        let (first, _) = change(&store, |ch| ch.exit("c", ExitCause::RemoteDeleted).unwrap());
        let (again, fx) = change(&store, |ch| {
            ch.exit("c", ExitCause::CreateFailed("late".into()))
                .unwrap()
        });
        assert!(first && !again);
        assert!(fx.is_empty());
        assert_eq!(store.read().containers["c"].reason, "Stopped");
        let (r, _) = change(&store, |ch| ch.exit("nope", ExitCause::RemoteDeleted));
        assert_eq!(r, Err(LifecycleError::ContainerNotFound("nope".into())));
    }

    #[test]
    fn remote_exit_time_is_never_before_the_start() {
        let store = store_with(&["c"]);
        running(&store, "c", false);
        change(&store, |ch| {
            ch.exit(
                "c",
                ExitCause::Remote {
                    exit_code: 0,
                    reason: "Completed".into(),
                    message: String::new(),
                    finished_at: 3,
                },
            )
            .unwrap()
        });
        assert_eq!(store.read().containers["c"].finished_at, 10);
    }
}
