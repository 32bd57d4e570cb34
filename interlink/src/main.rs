//! `interlink`: the interLink API server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use interlink::server::{Server, ServerConfig};

/// The interLink API server: accepts the interLink API (create, delete,
/// status, getLogs, pinglink, updateCache) and forwards it to a plugin.
///
/// Configuration: upstream's InterLinkConfig.yaml keys (InterlinkAddress,
/// InterlinkPort, SidecarURL, SidecarPort, VerboseLogging, ErrorsOnlyLogging,
/// DataRootFolder, TLS.*) plus Auth.*, MaxBodyBytes, PluginTimeoutSeconds,
/// ShutdownGraceSeconds; sites' older keys (SidecarService, VKTokenFile,
/// ExportPodData, Pprof, JobScriptTemplate) load too, see the README.
/// Environment overrides: INTERLINKURL, INTERLINKPORT, SIDECARURL,
/// SIDECARSERVICE (docker: port 4000, slurm: 4001), SIDECARPORT, INTERLINK_VERBOSE_LOGGING,
/// INTERLINK_ERRORS_ONLY_LOGGING, INTERLINK_DATA_ROOT_FOLDER,
/// INTERLINK_TOKENS_FILE, INTERLINK_MAX_BODY_BYTES,
/// INTERLINK_PLUGIN_TIMEOUT_SECONDS. RUST_LOG overrides the log level.
/// Tracing (off unless set): ENABLE_TRACING=1, TELEMETRY_ENDPOINT or
/// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, TLS files; see
/// the README.
#[derive(Parser, Debug)]
#[command(name = "interlink", version)]
struct Args {
    /// Path of the InterLinkConfig.yaml (default: none, built-in defaults).
    #[arg(long, short = 'c', env = "INTERLINKCONFIGPATH")]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn init_logging(cfg: &ServerConfig) -> anyhow::Result<interlink::telemetry::Guard> {
    use tracing_subscriber::prelude::*;
    let level = if cfg.verbose_logging {
        "debug"
    } else if cfg.errors_only_logging {
        "error"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn"))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let (otel, guard) = interlink::telemetry::init("interlink")?;
    tracing_subscriber::registry().with(fmt).with(otel).init();
    interlink::telemetry::log_settings("interlink");
    Ok(guard)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interlink: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interlink: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => ServerConfig::from_yaml_file(p)?,
        None => ServerConfig::default(),
    };
    cfg.apply_env()?;
    cfg.check()?;
    if args.check {
        println!("configuration ok");
        return Ok(());
    }
    let _telemetry = init_logging(&cfg)?;
    let server = Server::bind(cfg).await.context("starting the API server")?;
    server.serve(shutdown_signal()).await?;
    Ok(())
}
