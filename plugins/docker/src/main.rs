//! `interlink-docker`: the Docker plugin's server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use interlink_plugin_docker::{Config, DockerProvider};
use interlink_plugin_kit::Listen;

/// interLink plugin running pods as containers through the Docker Engine API
/// (Docker or `podman system service`).
#[derive(Debug, Parser)]
#[command(name = "interlink-docker", version)]
struct Args {
    /// YAML config file (DockerHost, DataRoot, InfraImage, ...).
    #[arg(long, env = "INTERLINK_DOCKER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address: `http://127.0.0.1:4000`, `127.0.0.1:4000` or `unix:///path.sock`.
    #[arg(long)]
    listen: Option<String>,
    /// Directory for pod volumes and the plugin's state.
    #[arg(long)]
    data_root: Option<PathBuf>,
}

fn parse_listen(s: &str) -> Result<Listen> {
    if let Some(p) = s.strip_prefix("unix://") {
        if p.is_empty() {
            bail!("listen address {s:?}: empty socket path");
        }
        return Ok(Listen::Unix(PathBuf::from(p)));
    }
    let hp = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let addr = hp
        .parse()
        .with_context(|| format!("listen address {s:?}: expected host:port or unix:///path"))?;
    Ok(Listen::Tcp(addr))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let listen = args
        .listen
        .clone()
        .or_else(|| config.listen.clone())
        .context("no listen address: give --listen or Listen in the config")?;
    let listen = parse_listen(&listen)?;
    let data_root = args
        .data_root
        .clone()
        .or_else(|| config.data_root.clone())
        .context("no data root: give --data-root or DataRoot in the config")?;
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    let data_root = std::fs::canonicalize(&data_root)?;
    let provider = DockerProvider::open(config, &data_root).context("opening the plugin state")?;
    tracing::info!(?listen, data_root = %data_root.display(), "interlink-docker listening");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    interlink_plugin_kit::serve(Arc::new(provider), listen, shutdown).await?;
    Ok(())
}
