//! The plugin kit: serves the plugin side of the interLink API and hands typed
//! calls to a [`Provider`]. Validation, errors, tracing, metrics and config
//! loading live here once for every plugin.
//!
//! - [`provider`]: the trait a plugin implements.
//! - [`mod@serve`]: the HTTP server (TCP or Unix socket) and its endpoints.
//! - [`exec_ws`]: the WebSocket side of the exec extension (exec, attach, port-forward).
//! - [`validate`]: checks on requests before a provider sees them.
//! - [`log_tail`]: the last lines of a log file, read from its end with bounded memory.
//! - [`http_error`]: errors as `{"error": message}` answers.
//! - [`metrics`]: Prometheus metrics on `/metrics`.
//! - [`mod@pod`]: what a plugin needs to know about a pod, as Kubernetes defines it
//!   (env, downward API, volume files, resource fields).
//! - [`json_store`]: records kept as JSON files, replaced atomically.
//! - [`private_fs`]: the plugin's own files and directories, private from the start.
//! - [`quantity`]: Kubernetes resource quantities (`500m`, `64Mi`) as numbers.
//! - [`subpath`]: volume subPaths opened beneath their volume at the moment of use.
//! - [`config`], [`cli`], [`logging`]: the common config file, flags and log setup.

pub mod cli;
pub mod config;
pub mod exec_ws;
pub mod http_error;
pub mod json_store;
pub mod log_tail;
pub mod logging;
pub mod metrics;
pub mod pod;
pub mod private_fs;
pub mod provider;
pub mod quantity;
pub mod serve;
pub mod status_watch;
pub mod subpath;
pub mod validate;

pub use provider::{
    ExecIo, ExecResult, ExecRun, LogStream, PluginError, PortStream, Provider, check_log_target,
    exec_run,
};
pub use serve::{Listen, serve};
