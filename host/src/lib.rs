//! interlink-cri: a CRI v1 runtime whose pods run remotely through interLink.
//!
//! kubelet talks CRI gRPC to [`server`]; every RPC is one module under [`cri`],
//! named after it. State lives in [`store`] (memory, persisted under the data
//! root) with the typed states of [`states`]; every change of it — a container
//! created, started, exited, a remote pod sent or deleted — is a function of
//! [`lifecycle`], whose effects [`effects`] runs after the lock is released.
//! [`views`] builds the CRI messages from the state. [`dispatch`] sends
//! batches of started containers as remote pods (`/create`, `/delete`),
//! [`status_loop`] polls all of them in one `/status`, [`logs`] writes the CRI
//! log files, [`convert`] and [`state_map`] are the two conversion steps that
//! go through the [`hooks::Hooks`] seam. [`runtime::Runtime`] is the context
//! they share; [`background`] starts the tasks.

pub mod background;
pub mod claims;
pub mod config;
pub mod convert;
pub mod cri;
pub mod data_root_lock;
pub mod dispatch;
pub mod effects;
pub mod embedded;
pub mod events;
pub mod extensions;
pub mod forward;
pub mod hooks;
pub mod ids;
pub mod images;
pub mod lifecycle;
pub mod logs;
pub mod memory_return;
pub mod metrics;
pub mod metrics_server;
pub mod names;
pub mod network;
pub mod ping_loop;
pub mod pod_specs;
pub mod pod_watch;
pub mod polled;
pub mod readiness;
pub mod recovery;
pub mod remote;
pub mod runtime;
pub mod server;
pub mod state_map;
pub mod states;
pub mod status_loop;
pub mod store;
pub mod streaming;
pub mod usage;
pub mod usage_loop;
pub mod views;

/// The generated CRI v1 messages, servers and clients (`proto/runtime/v1/api.proto`).
pub mod proto {
    pub mod runtime {
        pub mod v1 {
            #![allow(clippy::all, missing_docs)]
            tonic::include_proto!("runtime.v1");
        }
    }
}

/// Nanoseconds since the Unix epoch, as CRI timestamps are.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
