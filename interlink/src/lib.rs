//! interLink: the wire contract between a Kubernetes-facing component, the
//! interLink API server and a plugin, plus an async client and the API server.
//!
//! - [`types`]: every JSON body of the contract, keys exactly as upstream emits them.

pub mod types;

pub use types::*;
