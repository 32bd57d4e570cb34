//! interlink-cri: a CRI v1 runtime whose pods run remotely through interLink.
//!
//! kubelet talks CRI gRPC to [`server`]; every RPC is one module under [`cri`],
//! named after it. State lives in [`store`] (memory, persisted under the data
//! root); [`dispatch`] turns started containers into remote pods (`/create`),
//! [`status_loop`] polls all of them in one `/status`, [`logs`] writes the CRI log
//! files, [`convert`] and [`state_map`] are the two conversion steps that go
//! through the [`hooks::Hooks`] seam.

pub mod config;
pub mod convert;
pub mod cri;
pub mod dispatch;
pub mod embedded;
pub mod events;
pub mod extensions;
pub mod hooks;
pub mod ids;
pub mod images;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod network;
pub mod remote;
pub mod runtime;
pub mod server;
pub mod state_map;
pub mod status_loop;
pub mod store;
pub mod streaming;
pub mod usage;

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
