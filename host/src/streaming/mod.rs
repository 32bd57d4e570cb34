//! The host's streaming server for CRI `Exec`, `Attach` and `PortForward`: the
//! URLs kubelet and crictl open, and the protocols they speak on them.
//! - [`server`]: HTTP listener, single-use tokens, upgrades, session bound;
//! - [`spdy`]: SPDY/3.1 framing and connections (moby/spdystream's dialect);
//! - [`remotecommand`]: exec/attach streams over SPDY (`v4`/`v3`/`v2.channel.k8s.io`);
//! - [`websocket`]: exec/attach over WebSocket (`v5`/`v4.channel.k8s.io`) and
//!   port-forward tunnelled in WebSocket;
//! - [`portforward`]: `portforward.k8s.io` over SPDY;
//! - [`backend`]: the [`StreamBackend`] sessions run on.

pub mod backend;
pub mod interlink_exec;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod websocket;

pub use backend::{BackendError, ExecIo, ExecTarget, StreamBackend, TermSize};
pub use server::{Pending, Settings, Streaming};
