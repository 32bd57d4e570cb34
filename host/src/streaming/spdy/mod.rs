//! SPDY/3.1 as Kubernetes speaks it (moby/spdystream): [`frame`] is the wire
//! format with its header compression, [`conn`] a server-side connection whose
//! client opens the streams.

pub mod conn;
pub mod dictionary;
pub mod frame;

pub use conn::{Conn, Stream, StreamWriter};

/// The `Upgrade` token of an HTTP/1.1 request for SPDY.
pub const UPGRADE: &str = "SPDY/3.1";
