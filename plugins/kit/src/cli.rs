//! The common command line of every plugin binary, so a plugin's `main` is a
//! few lines:
//!
//! ```no_run
//! use std::sync::Arc;
//! use interlink_plugin_kit::cli::{self, Info};
//! use interlink_plugin_kit::config::NoSettings;
//! # use interlink::*;
//! # use interlink_plugin_kit::{LogStream, PluginError, Provider};
//! # use k8s_openapi::api::core::v1::Pod;
//! # struct Demo;
//! # impl Provider for Demo {
//! #   async fn create(&self, _: RetrievedPodData) -> Result<CreateStruct, PluginError> { todo!() }
//! #   async fn delete(&self, _: Pod) -> Result<(), PluginError> { todo!() }
//! #   async fn status(&self, _: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> { todo!() }
//! #   async fn logs(&self, _: LogStruct) -> Result<LogStream, PluginError> { todo!() }
//! #   async fn ping(&self) -> Result<PingResponse, PluginError> { todo!() }
//! # }
//! fn main() -> anyhow::Result<()> {
//!     cli::run::<NoSettings, _, _, _>(Info::new("interlink-demo", "a demo plugin"), |settings| async move {
//!         // build the provider from settings.data_root, settings.plugin, ...
//!         let _ = settings.data_root;
//!         Ok(Arc::new(Demo))
//!     })
//! }
//! ```
//!
//! Flags (each also read from the environment):
//!
//! | flag | env | meaning |
//! |---|---|---|
//! | `--config FILE` | `INTERLINK_PLUGIN_CONFIG` | YAML config (see [`crate::config`]) |
//! | `--listen ADDR` | `INTERLINK_PLUGIN_LISTEN` | `unix:///path` or `host:port` (default `127.0.0.1:4000`) |
//! | `--data-root DIR` | `INTERLINK_PLUGIN_DATA_ROOT` | plugin state (default `/var/lib/<name>` as root, else `~/.local/state/<name>`) |
//! | `--log FILTER` | `INTERLINK_PLUGIN_LOG` | tracing filter (`RUST_LOG` wins) |
//!
//! OpenTelemetry tracing (a span per plugin action, a child of the API
//! server's through `traceparent`) is off unless the environment configures it:
//! `ENABLE_TRACING=1`, `TELEMETRY_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, ...
//! (see [`interlink::telemetry`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgAction, Command};

use crate::config::{self, CommonConfig, Config, PluginSettings};
use crate::metrics::Metrics;
use crate::serve::{Listen, ServeOptions, bind, serve_bound};
use crate::{Provider, logging};

/// Default listen address of a plugin.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

/// Name and one-line description of a plugin binary.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: &'static str,
    pub about: &'static str,
}

impl Info {
    pub fn new(name: &'static str, about: &'static str) -> Info {
        Info { name, about }
    }
}

/// Everything a provider factory needs, resolved from flags, env, file, defaults.
#[derive(Debug, Clone)]
pub struct Settings<T> {
    pub name: &'static str,
    pub listen: Listen,
    pub data_root: PathBuf,
    pub common: CommonConfig,
    pub plugin: T,
    /// Registry of the `/metrics` endpoint, for the plugin's own metrics.
    pub metrics: Metrics,
}

fn command(info: &Info) -> Command {
    let opt = |name: &'static str, env: &'static str, value: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .env(env)
            .value_name(value)
            .help(help)
            .action(ArgAction::Set)
    };
    Command::new(info.name)
        .about(info.about)
        .version(env!("CARGO_PKG_VERSION"))
        .arg(opt(
            "config",
            "INTERLINK_PLUGIN_CONFIG",
            "FILE",
            "YAML config file",
        ))
        .arg(opt(
            "listen",
            "INTERLINK_PLUGIN_LISTEN",
            "ADDR",
            "unix:///path or host:port [default: 127.0.0.1:4000]",
        ))
        .arg(opt(
            "data-root",
            "INTERLINK_PLUGIN_DATA_ROOT",
            "DIR",
            "where the plugin keeps its state",
        ))
        .arg(opt(
            "log",
            "INTERLINK_PLUGIN_LOG",
            "FILTER",
            "log filter such as info or debug (RUST_LOG wins)",
        ))
}

fn default_data_root(name: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib").join(name);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state").join(name),
        None => std::env::temp_dir().join(name),
    }
}

/// Resolve settings from these arguments (the first is the program name).
pub fn settings_from<T: PluginSettings>(
    info: &Info,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> anyhow::Result<Settings<T>> {
    let m = command(info)
        .try_get_matches_from(args)
        .unwrap_or_else(|e| e.exit());
    let cfg: Config<T> = match m.get_one::<String>("config") {
        Some(p) => config::load(p.as_ref())?,
        None => Config::default(),
    };
    let mut common = cfg.common;
    if let Some(l) = m.get_one::<String>("listen") {
        common.listen = Some(l.clone());
    }
    if let Some(d) = m.get_one::<String>("data-root") {
        common.data_root = Some(PathBuf::from(d));
    }
    if let Some(l) = m.get_one::<String>("log") {
        common.log = Some(l.clone());
    }
    let listen = Listen::parse(common.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let data_root = common
        .data_root
        .clone()
        .unwrap_or_else(|| default_data_root(info.name));
    Ok(Settings {
        name: info.name,
        listen,
        data_root,
        common,
        plugin: cfg.plugin,
        metrics: Metrics::new(),
    })
}

/// Parse the command line, set up logging, build the provider with `factory`
/// (inside the Tokio runtime), serve it until SIGTERM or SIGINT, then return.
pub fn run<T, P, F, Fut>(info: Info, factory: F) -> anyhow::Result<()>
where
    T: PluginSettings,
    P: Provider,
    F: FnOnce(Settings<T>) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<P>>>,
{
    let settings: Settings<T> = settings_from(&info, std::env::args_os())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // the OTLP exporter (when configured) lives on this runtime
    let telemetry = {
        let _in = rt.enter();
        logging::init(
            info.name,
            settings.common.log.as_deref(),
            settings.common.log_format,
        )?
    };
    let r = rt.block_on(async move {
        std::fs::create_dir_all(&settings.data_root)
            .with_context(|| format!("create data root {}", settings.data_root.display()))?;
        let mut opts = ServeOptions {
            limits: settings.common.connection_limits()?,
            ..ServeOptions::default()
        };
        if let Some(b) = settings.common.max_body_bytes {
            opts.max_body_bytes = b;
        }
        if let Some(s) = settings.common.drain_timeout_seconds {
            opts.drain_timeout = Duration::from_secs(s);
        }
        let listen = settings.listen.clone();
        let metrics = settings.metrics.clone();
        tracing::info!(plugin = info.name, data_root = %settings.data_root.display(), "starting");
        let provider = factory(settings).await.context("start the provider")?;
        let bound = bind(&listen, &opts)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        serve_bound(provider, bound, opts, metrics, shutdown_signal())
            .await
            .context("serve")?;
        Ok(())
    });
    drop(telemetry);
    r
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
