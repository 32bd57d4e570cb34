//! interLink: the wire contract between a Kubernetes-facing component, the
//! interLink API server and a plugin, plus an async client and the API server.
//!
//! - [`types`]: every JSON body of the contract, keys exactly as upstream emits them.
//! - [`client`]: an async client of the API server (http, https/mTLS, unix socket).
//! - [`exec`]: the wire of the exec extension (exec, attach, port-forward over WebSocket).
//! - [`PodRef`]: a pod as `/status`, `/stats` and `/status/watch` name it, decoded lean.
//! - [`last_body`]: the last body of a request kind and what was made of it, let go when unused.
//! - [`StatusAnswer`]: a `/status` answer split into its statuses, each decoded on demand.
//! - [`validate`]: the input rules (DNS labels, pod UIDs) the server applies; plugins reuse them.

pub mod client;
mod error_chain;
pub mod exec;
pub mod extensions;
pub mod last_body;
mod pod_ref;
pub mod server;
mod status_answer;
pub mod telemetry;
mod tls;
pub mod types;
pub mod validate;
mod ws;

pub use pod_ref::{ContainerRef, PodRef};
pub use status_answer::StatusAnswer;
pub use types::*;
