//! Remote container status -> CRI container state: the default mapping, handed to
//! the [`Hooks`] seam's state step. A started container is never shown CREATED:
//! remote waiting (queued, pulling) is RUNNING, as kubelet would otherwise restart it.

use k8s_openapi::api::core::v1 as k8s;

use crate::hooks::{CriState, Hooks, RemoteState, StateDecision, StateInput};

/// What the remote side said about one container, flattened.
#[derive(Debug, Clone, Default)]
pub struct RemoteView {
    pub state: Option<RemoteState>,
    pub reason: String,
    pub message: String,
    pub exit_code: i32,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
}

pub fn view(status: Option<&k8s::ContainerStatus>) -> RemoteView {
    let Some(st) = status.and_then(|s| s.state.as_ref()) else {
        return RemoteView {
            state: Some(RemoteState::Missing),
            ..Default::default()
        };
    };
    let ts = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| t.0.as_nanosecond() as i64;
    if let Some(t) = &st.terminated {
        RemoteView {
            state: Some(RemoteState::Terminated),
            reason: t.reason.clone().unwrap_or_default(),
            message: t.message.clone().unwrap_or_default(),
            exit_code: t.exit_code,
            started_at_ns: t.started_at.as_ref().map(ts).unwrap_or(0),
            finished_at_ns: t.finished_at.as_ref().map(ts).unwrap_or(0),
        }
    } else if let Some(r) = &st.running {
        RemoteView {
            state: Some(RemoteState::Running),
            started_at_ns: r.started_at.as_ref().map(ts).unwrap_or(0),
            ..Default::default()
        }
    } else if let Some(w) = &st.waiting {
        RemoteView {
            state: Some(RemoteState::Waiting),
            reason: w.reason.clone().unwrap_or_default(),
            message: w.message.clone().unwrap_or_default(),
            ..Default::default()
        }
    } else {
        RemoteView {
            state: Some(RemoteState::Missing),
            ..Default::default()
        }
    }
}

/// The default decision for a started container whose current state is `current`.
pub fn default_decision(v: &RemoteView, current: &StateDecision) -> StateDecision {
    match v.state.unwrap_or(RemoteState::Missing) {
        RemoteState::Terminated => StateDecision {
            state: CriState::Exited,
            exit_code: v.exit_code,
            reason: if v.reason.is_empty() {
                if v.exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                }
            } else {
                v.reason.clone()
            },
            message: v.message.clone(),
        },
        RemoteState::Running => StateDecision {
            state: CriState::Running,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        },
        // queued remotely: show RUNNING, and say why in the message
        RemoteState::Waiting => StateDecision {
            state: CriState::Running,
            exit_code: 0,
            reason: String::new(),
            message: if v.reason.is_empty() {
                String::new()
            } else {
                format!("remote: {} {}", v.reason, v.message)
                    .trim_end()
                    .to_string()
            },
        },
        RemoteState::Missing => current.clone(),
    }
}

/// Default then hooks; a terminal EXITED never goes back, and CREATED is never
/// reported for a started container whatever a hook says.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    hooks: &dyn Hooks,
    pod_name: &str,
    pod_namespace: &str,
    container_name: &str,
    job_id: &str,
    v: &RemoteView,
    current: &StateDecision,
) -> StateDecision {
    let default = default_decision(v, current);
    let mut d = hooks.map_state(&StateInput {
        pod_name: pod_name.into(),
        pod_namespace: pod_namespace.into(),
        container_name: container_name.into(),
        job_id: job_id.into(),
        remote: v.state.unwrap_or(RemoteState::Missing),
        remote_reason: v.reason.clone(),
        remote_message: v.message.clone(),
        remote_exit_code: v.exit_code,
        default,
    });
    if d.state == CriState::Created {
        d.state = CriState::Running;
    }
    if current.state == CriState::Exited {
        return current.clone();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::NoHooks;

    fn running() -> StateDecision {
        StateDecision {
            state: CriState::Running,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn waiting_is_running_and_terminated_is_exited() {
        let w = RemoteView {
            state: Some(RemoteState::Waiting),
            reason: "Pending".into(),
            ..Default::default()
        };
        let d = decide(&NoHooks, "p", "ns", "c", "1", &w, &running());
        assert_eq!(d.state, CriState::Running);
        assert!(d.message.contains("Pending"));
        let t = RemoteView {
            state: Some(RemoteState::Terminated),
            exit_code: 3,
            ..Default::default()
        };
        let d = decide(&NoHooks, "p", "ns", "c", "1", &t, &running());
        assert_eq!(
            (d.state, d.exit_code, d.reason.as_str()),
            (CriState::Exited, 3, "Error")
        );
        // exited is terminal
        let back = decide(
            &NoHooks,
            "p",
            "ns",
            "c",
            "1",
            &RemoteView {
                state: Some(RemoteState::Running),
                ..Default::default()
            },
            &d,
        );
        assert_eq!(back.state, CriState::Exited);
        // missing keeps the current state
        let m = decide(&NoHooks, "p", "ns", "c", "1", &view(None), &running());
        assert_eq!(m.state, CriState::Running);
    }
}
