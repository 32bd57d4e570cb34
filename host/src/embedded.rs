//! The embedded default: an interLink API server and the local plugin running in
//! this process, on Unix sockets under the data root, so the host works on a
//! fresh machine with no configuration.

use std::path::{Path, PathBuf};

/// Start both; returns the API server's socket.
pub async fn start(data_root: &Path, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<PathBuf> {
    let _ = shutdown;
    anyhow::bail!("the embedded backend is not available yet (data root {})", data_root.display())
}
