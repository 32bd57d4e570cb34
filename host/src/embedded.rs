//! The embedded default: an interLink API server and the local plugin running in
//! this process, on Unix sockets under `<DataRootFolder>/embedded/`, so the host
//! works on a fresh machine with no configuration. The local plugin runs each
//! container as a process of this machine (no image isolation), supervised by
//! `interlink-cri __shim` processes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Start the plugin and the API server; returns the API server's socket.
pub async fn start(data_root: &Path, stop: watch::Receiver<bool>) -> Result<PathBuf> {
    let dir = data_root.join("embedded");
    // the API server's and the plugin's data (pod specs, Secrets): this process's only
    crate::store::private_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    let plugin_sock = dir.join("plugin.sock");
    let api_sock = dir.join("interlink.sock");

    let opts = interlink_plugin_local::LocalOptions {
        shim: Some(std::env::current_exe().context("own executable")?),
        ..Default::default()
    };
    let provider = interlink_plugin_local::LocalProvider::with_options(dir.join("local"), opts)
        .map_err(|e| anyhow::anyhow!("local plugin: {e}"))?;
    let listen = interlink_plugin_kit::Listen::Unix(plugin_sock.clone());
    let s = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = interlink_plugin_kit::serve(Arc::new(provider), listen, stopped(s)).await {
            tracing::error!(error = %e, "embedded local plugin stopped");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(&plugin_sock).await.is_err() {
        if Instant::now() > deadline {
            anyhow::bail!(
                "the embedded local plugin did not listen on {}",
                plugin_sock.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cfg = interlink::server::ServerConfig {
        interlink_address: format!("unix://{}", api_sock.display()),
        interlink_port: 0,
        sidecar_url: format!("unix://{}", plugin_sock.display()),
        sidecar_port: 0,
        data_root_folder: dir.join("interlink").display().to_string(),
        // the plugin kit takes HTTP/2: one connection for every call and follow
        plugin_http2_prior_knowledge: true,
        ..Default::default()
    };
    let server = interlink::server::Server::bind(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("embedded API server: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = server.serve(stopped(stop)).await {
            tracing::error!(error = %e, "embedded API server stopped");
        }
    });
    tracing::info!(api = %api_sock.display(), plugin = %plugin_sock.display(), "embedded interLink API server and local plugin running (containers run as local processes, no image isolation)");
    Ok(api_sock)
}

/// The client settings for the embedded API server at `api_sock`: HTTP/2
/// from the first byte (the server takes it), so all calls, every log follow
/// and the status watch share one connection.
pub fn client_config(api_sock: &Path) -> interlink::client::ClientConfig {
    interlink::client::ClientConfig {
        address: format!("unix://{}", api_sock.display()),
        port: None,
        http2_prior_knowledge: true,
        ..Default::default()
    }
}
