//! Serving the plugin API on TCP or a Unix socket.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Provider;

/// Where a plugin listens: `http://host:port`, `host:port`, or `unix:///path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Serve `provider` on `listen` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve<P: Provider>(
    provider: Arc<P>,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (provider, listen, shutdown);
    Err(std::io::Error::other("plugin kit: serve is not built yet"))
}
