//! Engine container state -> Kubernetes container status.

use crate::engine::raw::Inspect;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A timestamp as the engine writes it; Go's zero time and garbage are `None`.
pub fn parse_time(s: Option<&str>) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = s?.parse().ok()?;
    (t.as_second() > 0).then_some(t)
}

/// The base status of a container (name, image, id), state filled in by callers.
pub fn base(name: &str, image: &str, id: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        container_id: (!id.is_empty()).then(|| format!("docker://{id}")),
        ..Default::default()
    }
}

pub fn waiting(mut st: ContainerStatus, reason: &str, message: Option<String>) -> ContainerStatus {
    st.ready = false;
    st.started = Some(false);
    st.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    });
    st
}

/// Status of a container the engine no longer has.
pub fn missing(st: ContainerStatus) -> ContainerStatus {
    let mut st = st;
    st.ready = false;
    st.started = Some(false);
    st.state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("the container was removed from the engine outside the plugin".into()),
            container_id: st.container_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    st
}

/// Status from an inspect answer. `pending_reason` is the waiting reason of a
/// created, not yet started container (`ContainerCreating`, `PodInitializing`).
pub fn from_inspect(mut st: ContainerStatus, i: &Inspect, pending_reason: &str) -> ContainerStatus {
    st.image_id = i.image.clone();
    let Some(s) = &i.state else {
        return waiting(st, pending_reason, None);
    };
    let started = parse_time(Some(&s.started_at));
    let finished = parse_time(Some(&s.finished_at));
    let error = Some(s.error.clone()).filter(|e| !e.is_empty());
    match s.normalized() {
        "running" | "paused" | "restarting" | "stopping" => {
            st.ready = true;
            st.started = Some(true);
            st.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: started.map(Time),
                }),
                ..Default::default()
            });
            st
        }
        "exited" | "dead" | "removing" => {
            let code = s.exit_code as i32;
            if started.is_none() && code != 0 {
                // never ran: the runtime refused it (command not found, bad mount ...)
                return waiting(
                    st,
                    "RunContainerError",
                    error.or_else(|| Some(format!("exit code {code}"))),
                );
            }
            let reason = if s.oom_killed {
                "OOMKilled"
            } else if code == 0 {
                "Completed"
            } else {
                "Error"
            };
            // podman may stamp a very short run's finish a little before its start
            let finished = match (started, finished) {
                (Some(a), Some(b)) if b < a => Some(a),
                (_, f) => f,
            };
            st.ready = false;
            st.started = Some(false);
            st.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(reason.into()),
                    message: error,
                    signal: (code > 128 && code < 160).then_some(code - 128),
                    started_at: started.map(Time),
                    finished_at: finished.map(Time),
                    container_id: st.container_id.clone(),
                }),
                ..Default::default()
            });
            st
        }
        _ => match error {
            Some(e) => waiting(st, "RunContainerError", Some(e)),
            None => waiting(st, pending_reason, None),
        },
    }
}

/// Has this container finished (any exit code)?
pub fn is_terminated(st: &ContainerStatus) -> bool {
    st.state.as_ref().is_some_and(|s| s.terminated.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspect(state: serde_json::Value) -> Inspect {
        serde_json::from_value(json!({"Id": "abc", "Image": "sha256:1", "State": state})).unwrap()
    }

    #[test]
    fn states() {
        let b = || base("c", "img", "abc");
        let r = from_inspect(
            b(),
            &inspect(
                json!({"Status": "running", "StartedAt": "2026-11-22T07:00:00.5Z",
            "FinishedAt": "0001-01-01T00:00:00Z", "ExitCode": 0}),
            ),
            "ContainerCreating",
        );
        assert!(r.ready);
        assert_eq!(
            r.state
                .unwrap()
                .running
                .unwrap()
                .started_at
                .unwrap()
                .0
                .to_string(),
            "2026-11-22T07:00:00.5Z"
        );
        let t = from_inspect(
            b(),
            &inspect(
                json!({"Status": "exited", "StartedAt": "2026-11-22T07:00:01Z",
            "FinishedAt": "2026-11-22T07:00:00.9Z", "ExitCode": 3}),
            ),
            "x",
        );
        let term = t.state.unwrap().terminated.unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
        assert_eq!(term.finished_at, term.started_at);
        let c = from_inspect(
            b(),
            &inspect(json!({"Status": "created"})),
            "PodInitializing",
        );
        assert_eq!(
            c.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("PodInitializing")
        );
        let never = from_inspect(
            b(),
            &inspect(json!({"Status": "exited", "ExitCode": 127,
            "StartedAt": "0001-01-01T00:00:00Z", "Error": "executable file not found"})),
            "x",
        );
        let w = never.state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("RunContainerError"));
        assert!(is_terminated(&missing(b())));
    }
}
