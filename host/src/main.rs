//! `interlink-cri`: the CRI runtime kubelet points `containerRuntimeEndpoint` at.
//! Every pod runs remotely through an interLink API server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use interlink_cri::config::Config;
use interlink_cri::hooks::{Hooks, NoHooks};
use interlink_cri::remote::{InterlinkRemote, Remote};
use interlink_cri::runtime::Runtime;
use interlink_cri::store::Store;
use interlink_cri::{embedded, extensions, metrics_server, server, streaming};

const LONG_ABOUT: &str = "\
A CRI v1 runtime (RuntimeService + ImageService on a Unix socket) that runs every
pod remotely through an interLink API server and shows kubelet the truth.

Without a config file (no --config, no INTERLINK_CRI_CONFIG) it runs its embedded
default: an interLink API server and the local plugin inside this process, on Unix
sockets under DataRootFolder, so `crictl runp/create/start/ps/logs/stop/rm` works
on a fresh machine.

Config file (YAML, every key optional, an unknown key is an error):
  InterlinkAddress    http://host | https://host | unix:///path   (unset: embedded)
  Interlinkport       port of the API server (ignored for unix://)
  CRI:
    SocketPath        gRPC socket (default /var/run/interlink/cri.sock; unix:// ok)
    RuntimeHandler    handler served and reported (default interlink)
    RequestTimeout    bound on each interLink request (default 30s)
    StreamingAddress  exec/attach/port-forward server (default 127.0.0.1:0,
                      an ephemeral port)
    MaxStreamingSessions  sessions at once (default 128)
    StreamIdleTimeout     a session idle this long is closed (default 4h)
  TLS:
    Enabled, CertFile, KeyFile, CACertFile, InsecureSkipVerify   (to the API server)
  TokenFile           bearer token file, re-read on change (env VK_TOKEN_FILE wins)
  VerboseLogging      debug logs          ErrorsOnlyLogging   errors only
  DataRootFolder      state and embedded backend data (default /var/lib/interlink-cri)
  StatusInterval      one /status for all pods per interval (default 1s)
  BatchWindow         quiet time after the last StartContainer before /create (50ms)
  PingInterval        /pinglink period (default 5s)
  PingTimeout         RuntimeReady false after this long without /pinglink (30s)
  CreateRetryFor      how long an unreachable /create is retried (60s)
  CgroupDriver        cgroupfs | systemd, reported by RuntimeConfig
  PluginConfig        map offered to the annotation step
  EmptyDirMode        emptyDir | hostPath (kubelet's directory; keeps init data);
                      default hostPath on the embedded default, else emptyDir
  PodCIDR             IPv4 range of pod IPs when kubelet sends none (10.234.0.0/16)
  Kubeconfig          kubeconfig (kubelet's): watch this node's pods, send a batch once
                      its last container started, send the real spec (probes, ports)
  NodeName            this node's name in Kubernetes (default: the host name)
  MetricsAddress      host:port for /metrics and /healthz (off when unset; both are
                      also answered over HTTP/1.1 on the CRI socket)
  Extensions:         WebAssembly hooks
    Dir, CallTimeout, MemoryLimitBytes, AdmissionFailOpen
  LocalRuntime:       forwarding mode: pods of other handlers go to this CRI runtime
    Endpoint          its socket (unix:///run/containerd/containerd.sock)
    Handlers          handlers forwarded besides \"\" (unset: all but CRI.RuntimeHandler)
    RequestTimeout    a forwarded call without a deadline of its own (2m)
    ConnectTimeout    connecting to it (2s)

Environment: INTERLINK_CRI_CONFIG (config path), INTERLINK_CRI_DEBUG=true (debug
logs), VK_TOKEN_FILE or VKTOKENFILE (token file), RUST_LOG (log filter, overrides the rest).
Tracing (OpenTelemetry over OTLP/gRPC, off unless set): ENABLE_TRACING=1,
TELEMETRY_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_EXPORTER_OTLP_CERTIFICATE / _CLIENT_CERTIFICATE / _CLIENT_KEY (or upstream's
TELEMETRY_CA_CRT_FILEPATH / TELEMETRY_CLIENT_CRT_FILEPATH / TELEMETRY_CLIENT_KEY_FILEPATH),
OTEL_SERVICE_NAME, TELEMETRY_UNIQUE_ID; see README.md.";

#[derive(Parser, Debug)]
#[command(name = "interlink-cri", version, about = "CRI runtime offloading pods through interLink (beside a local runtime with LocalRuntime)", long_about = LONG_ABOUT)]
struct Cli {
    /// Config file (YAML)
    #[arg(long, env = "INTERLINK_CRI_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC socket, overrides CRI.SocketPath
    #[arg(long)]
    socket: Option<String>,
    /// Data root, overrides DataRootFolder
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// /metrics and /healthz address, overrides MetricsAddress
    #[arg(long)]
    metrics_address: Option<std::net::SocketAddr>,
    /// Debug logging
    #[arg(long, env = "INTERLINK_CRI_DEBUG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    debug: bool,
}

fn main() -> Result<()> {
    // before any thread allocates
    interlink_cri::memory_return::configure_allocator();
    // the embedded local plugin supervises containers with `<this binary> __shim`
    if std::env::args_os().nth(1).is_some_and(|a| a == "__shim") {
        std::process::exit(interlink_plugin_local::supervise::shim_main());
    }
    let cli = Cli::parse();
    // reqwest is built without a default crypto provider: use ring process-wide
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = cli.socket {
        cfg.cri.socket_path = s;
    }
    if let Some(d) = cli.data_root {
        cfg.data_root_folder = d;
    }
    if let Some(m) = cli.metrics_address {
        cfg.metrics_address = Some(m);
    }
    // VKTOKENFILE: the original interLink README's spelling
    if let Some(t) = ["VK_TOKEN_FILE", "VKTOKENFILE"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|t| !t.is_empty())
    {
        cfg.token_file = Some(PathBuf::from(t));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // the OTLP exporter (when configured) lives on this runtime
    let telemetry = {
        let _in = rt.enter();
        init_logging(&cfg, cli.debug)?
    };
    let r = rt.block_on(run(cfg));
    drop(telemetry);
    r
}

fn init_logging(cfg: &Config, debug: bool) -> Result<interlink::telemetry::Guard> {
    use tracing_subscriber::prelude::*;
    let level = if debug || cfg.verbose_logging {
        "info,interlink_cri=debug"
    } else if cfg.errors_only_logging {
        "error"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // colour only on a terminal (log files and journald get plain text)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_filter(filter);
    let (otel, guard) = interlink::telemetry::init("interlink-cri")?;
    tracing_subscriber::registry().with(fmt).with(otel).init();
    interlink::telemetry::log_settings("interlink-cri");
    Ok(guard)
}

async fn run(cfg: Config) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_root_folder)
        .with_context(|| format!("data root {}", cfg.data_root_folder.display()))?;
    // one host per data root: a second one would corrupt the state
    let root = cfg.data_root_folder.clone();
    let _lock = tokio::task::spawn_blocking(move || {
        interlink_cri::data_root_lock::lock(&root, interlink_cri::data_root_lock::DEFAULT_WAIT)
    })
    .await??;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_embedded = stop_rx.clone();
    let shutdown = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };

    let hooks: Arc<dyn Hooks> = match &cfg.extensions {
        Some(e) => extensions::start(extensions::ExtensionSettings {
            dir: e.dir.clone(),
            call_timeout: e.call_timeout,
            memory_limit: e.memory_limit_bytes,
            admission_fail_open: e.admission_fail_open,
        })
        .context("extensions")?,
        None => Arc::new(NoHooks),
    };

    // the embedded server is ours: it takes HTTP/2 from the first byte
    let (address, http2_prior_knowledge) = match &cfg.interlink_address {
        Some(a) => (a.clone(), false),
        None => {
            let sock = embedded::start(&cfg.data_root_folder, stop_rx_embedded.clone())
                .await
                .context("embedded interLink backend")?;
            (format!("unix://{}", sock.display()), true)
        }
    };
    let client = interlink::client::Client::new(interlink::client::ClientConfig {
        address: address.clone(),
        port: cfg.interlink_port,
        token_file: cfg.token_file.clone(),
        ca_cert_file: cfg.tls.ca_cert_file.clone(),
        client_cert_file: if cfg.tls.enabled {
            cfg.tls.cert_file.clone()
        } else {
            None
        },
        client_key_file: if cfg.tls.enabled {
            cfg.tls.key_file.clone()
        } else {
            None
        },
        insecure_skip_verify: cfg.tls.insecure_skip_verify,
        request_timeout: cfg.cri.request_timeout,
        connect_timeout: std::time::Duration::from_secs(5),
        http2_prior_knowledge,
    })
    .context("interLink client")?;
    let exec_client = client.clone();
    let remote: Arc<dyn Remote> = Arc::new(InterlinkRemote { client });

    let state_dir = cfg.data_root_folder.join("state");
    let store =
        Store::open(&state_dir).with_context(|| format!("state {}", state_dir.display()))?;
    let socket = cfg.socket_path();
    let listener =
        server::bind(&socket).with_context(|| format!("CRI socket {}", socket.display()))?;
    let rt = Runtime::new(cfg.clone(), store, hooks, remote);
    {
        let st = rt.store.read();
        tracing::info!(
            socket = %socket.display(), interlink = %address, sandboxes = st.sandboxes.len(),
            containers = st.containers.len(), remote_pods = st.remotes.len(), "interlink-cri ready"
        );
    }
    interlink_cri::background::start(&rt);
    let streaming = streaming::Streaming::start(
        streaming::Settings {
            address: cfg.cri.streaming_address,
            max_sessions: cfg.cri.max_streaming_sessions,
            idle_timeout: cfg.cri.stream_idle_timeout,
            token_ttl: streaming::server::TOKEN_TTL,
        },
        Arc::new(streaming::interlink_exec::InterlinkExec::new(
            exec_client,
            Arc::downgrade(&rt) as _,
        )),
        shutdown(),
    )
    .await
    .with_context(|| format!("streaming server {}", cfg.cri.streaming_address))?;
    let _ = rt.streaming.set(streaming);
    if let Some(addr) = cfg.metrics_address {
        let rt = rt.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics_server::serve(addr, rt).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    server::serve(rt, listener, shutdown())
        .await
        .context("CRI server")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
