//! State mapper for Slurm jobs (hook `state/`).
//!
//! - A queued job (remote `waiting`) is shown to kubelet as `running`, with the
//!   Slurm reason ("Priority", "Resources", ...) as the message and reason
//!   `SlurmQueued`, so the pod does not look stuck in creation.
//! - Terminal Slurm states get readable reasons and exit codes:
//!
//!   | Slurm state     | reason             | exit code |
//!   |-----------------|--------------------|-----------|
//!   | `TIMEOUT`       | `DeadlineExceeded` | 124       |
//!   | `PREEMPTED`     | `Preempted`        | 143       |
//!   | `NODE_FAIL`     | `NodeFailure`      | 135       |
//!   | `OUT_OF_MEMORY` | `OOMKilled`        | 137       |
//!   | `CANCELLED`     | `Cancelled`        | 143       |
//!
//! The Slurm state is looked for in the remote reason, then the message.
//! Configuration (optional), `slurm-state.json`: `{ "codes": { "TIMEOUT": 124 },
//! "queued_as_running": true }`.

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "state-mapping",
    path: "../../wit",
});

use interlink::extensions::host::{Level, config, log};
use interlink::extensions::types::{CriState, RemoteState};

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Slurm state -> exit code override.
    codes: BTreeMap<String, i32>,
    /// Show queued jobs as running (default true).
    queued_as_running: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            codes: BTreeMap::new(),
            queued_as_running: true,
        }
    }
}

interlink_guest_sdk::config!(Config, config);

/// (Slurm state, reason, exit code, explanation)
const TERMINAL: &[(&str, &str, i32, &str)] = &[
    ("OUT_OF_MEMORY", "OOMKilled", 137, "ran out of memory"),
    ("TIMEOUT", "DeadlineExceeded", 124, "reached its time limit"),
    (
        "PREEMPTED",
        "Preempted",
        143,
        "was preempted by a higher priority job",
    ),
    (
        "NODE_FAIL",
        "NodeFailure",
        135,
        "was lost because its node failed",
    ),
    ("CANCELLED", "Cancelled", 143, "was cancelled"),
];

fn find_state(text: &str) -> Option<&'static (&'static str, &'static str, i32, &'static str)> {
    let upper = text.to_ascii_uppercase();
    TERMINAL.iter().find(|(s, ..)| {
        upper
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == *s)
    })
}

struct Mapper;

impl Guest for Mapper {
    fn map_state(input: StateInput) -> Result<StateDecision, String> {
        with_config(|cfg| map(cfg, input))
    }
}

fn map(cfg: &Config, input: StateInput) -> StateDecision {
    let job = if input.job_id.is_empty() {
        String::from("the Slurm job")
    } else {
        format!("Slurm job {}", input.job_id)
    };
    match input.remote {
        RemoteState::Waiting if cfg.queued_as_running => {
            let why = [&input.remote_message, &input.remote_reason]
                .into_iter()
                .find(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| "queued".into());
            StateDecision {
                state: CriState::Running,
                exit_code: 0,
                reason: "SlurmQueued".into(),
                message: format!("{job} is queued: {why}"),
            }
        }
        RemoteState::Terminated | RemoteState::Missing => {
            let found =
                find_state(&input.remote_reason).or_else(|| find_state(&input.remote_message));
            match found {
                Some((state, reason, code, text)) => {
                    let code = cfg.codes.get(*state).copied().unwrap_or(*code);
                    log(
                        Level::Info,
                        "slurm terminal state mapped",
                        &[
                            ("job".into(), input.job_id.clone()),
                            ("slurm-state".into(), state.to_string()),
                            ("exit-code".into(), code.to_string()),
                        ],
                    );
                    StateDecision {
                        state: CriState::Exited,
                        exit_code: code,
                        reason: reason.to_string(),
                        message: format!("{job} {text} ({state})"),
                    }
                }
                None => input.current,
            }
        }
        _ => input.current,
    }
}

export!(Mapper);
