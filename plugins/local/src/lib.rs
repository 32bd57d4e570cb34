//! The local plugin: runs each pod's containers as processes on this host. It is
//! the development backend and the default backend embedded in the CRI host.
//!
//! **There is no image isolation.** The image of a container is recorded and
//! reported, never pulled or run: its `command` + `args` run as given, as the
//! plugin's user, with this host's programs, network and file system.
//!
//! Per pod, under `<data root>/pods/<uid>/` (mode 0700):
//! - `state.json`: what the plugin knows of the pod (persisted on every change);
//! - `work/`: the working directory of its containers;
//! - `volumes/<name>/`: ConfigMap, Secret, projected, downward-API and emptyDir
//!   volumes as files; mount paths are mapped onto them (see [`launch`]);
//! - `logs/<container>.log`: output in the CRI log format (timestamped lines);
//! - `run/<container>.exit`: how the container's process ended.
//!
//! Init containers run one after the other, each must exit 0; then the regular
//! containers run together, each in its own process group. Containers are not
//! restarted. Delete sends TERM to each process group and KILL after the pod's
//! grace period, then removes the pod directory.
//!
//! Each container runs under a small supervisor process (`interlink-local
//! __shim`) that timestamps its output and records its exit status, so the
//! plugin can be restarted while pods run: a restarted plugin recognises live
//! processes by pid and start time, reads the recorded exit of those that ended,
//! reports a process whose end was not recorded as terminated with reason
//! `Lost` (exit code 255), and carries on with the pods' remaining containers.
//!
//! `kubectl exec`, `attach` and `port-forward` (the interLink exec extension)
//! run commands with the container's environment, working directory and
//! mounts, follow its output, and connect to its ports on this host; see
//! `exec.rs` for what each does and does not do.
//!
//! Status is pushed as well as polled: every change of a pod's record (a
//! container started, ended, could not start) goes to the watchers of the
//! `statusWatch` extension (`POST /status/watch`) at once. A followed log
//! (`/getLogs` with `Follow`) waits for its file to change (one inotify
//! instance for the process, see [`file_watch`]) and for the pod's record to
//! change (its container's end), not on a timer; where a file cannot be
//! watched, or with `INTERLINK_LOCAL_LOG_POLL=1`, it is read every 100 ms.
//!
//! Limits, said plainly:
//! - no isolation of any kind: no image, no mount/network/pid namespace, no
//!   resource limits (requests and limits are only reported through the downward
//!   API), `readOnly` mounts are writable, `runAsUser` is ignored;
//! - mount paths exist only through the rewriting described in [`launch`];
//! - a process that leaves its process group (`setsid`, daemons) escapes delete;
//! - containers are never restarted (`restartPolicy` is not applied), and logs are
//!   not rotated;
//! - `Previous` logs do not exist (there is no previous instance).
//!
//! Embedding:
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use interlink_plugin_kit::{Listen, serve};
//! use interlink_plugin_local::LocalProvider;
//! let p = LocalProvider::new("/var/lib/interlink-local".into())?;
//! serve(Arc::new(p), Listen::Unix("/run/interlink/local.sock".into()), std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod exec;
pub mod file_watch;
pub mod launch;
pub mod logfile;
pub mod options;
pub mod process;
mod provider;
mod runner;
pub mod state;
pub mod stats;
pub mod supervise;
pub mod volumes;

pub use options::{LocalOptions, Supervisor};
pub use provider::{LocalError, LocalProvider};
