//! What the plugin remembers about each pod, persisted as `state.json` in the
//! pod's directory (written to a temporary file, then renamed), so a restarted
//! plugin knows every pod it was running.

use std::path::{Path, PathBuf};

use interlink_plugin_kit::json_store;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Exit code reported for a process whose end the plugin could not observe.
pub const LOST_EXIT_CODE: i32 = 255;

/// Exit code reported for a container that could not be started (as Kubernetes).
pub const START_ERROR_EXIT_CODE: i32 = 128;

/// One pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub created_at: Timestamp,
    /// Seconds between TERM and KILL on delete (from the pod spec, default 30).
    pub grace_seconds: i64,
    pub init_containers: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Why the pod was refused at create (nothing of it runs), if it was.
    #[serde(default)]
    pub refused: Option<String>,
}

/// How to start one container, resolved at create time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// One container of a pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// `None` when the pod was refused before this container could be prepared.
    pub launch: Option<Launch>,
    pub state: ContainerState,
    /// The spec asked for stdin (`stdin: true`): the process reads a FIFO
    /// that attach writes to (see `exec.rs`).
    #[serde(default)]
    pub stdin: bool,
    /// `stdinOnce`: the first attach's end of input is the process's.
    #[serde(default)]
    pub stdin_once: bool,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ContainerState {
    Waiting {
        reason: String,
        #[serde(default)]
        message: Option<String>,
    },
    Running {
        /// The process group leader (the supervising shim, or the command itself).
        pid: i32,
        /// Its start time in clock ticks since boot: with `pid`, its identity.
        start_ticks: u64,
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        #[serde(default)]
        signal: Option<i32>,
        reason: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

impl ContainerState {
    pub fn waiting(reason: &str, message: Option<String>) -> ContainerState {
        ContainerState::Waiting {
            reason: reason.to_string(),
            message,
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self, ContainerState::Terminated { .. })
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ContainerState::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// How a container's process ended, written by its supervisor next to the log
/// (`run/<container>.exit`) so the plugin can read it even after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    pub reason: String,
    #[serde(default)]
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl ExitRecord {
    pub fn into_state(self) -> ContainerState {
        ContainerState::Terminated {
            exit_code: self.exit_code,
            signal: self.signal,
            reason: self.reason,
            message: self.message,
            started_at: Some(self.started_at),
            finished_at: self.finished_at,
        }
    }
}

/// Replace `path` with `value` atomically, mode 0600 (see
/// [`interlink_plugin_kit::json_store`]).
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    Ok(json_store::save(path, value)?)
}

pub fn load(path: &Path) -> std::io::Result<PodRecord> {
    Ok(json_store::load(path)?)
}

pub fn read_exit(path: &Path) -> Option<ExitRecord> {
    json_store::load(path).ok()
}
