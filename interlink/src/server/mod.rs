//! The `interlink` API server: the endpoints of the interLink contract,
//! forwarded to a plugin, with validation, limits, a status cache, auth,
//! metrics and a graceful shutdown. Embeddable:
//!
//! ```no_run
//! # async fn demo() -> Result<(), interlink::server::ServerError> {
//! use interlink::server::{Server, ServerConfig};
//! let cfg = ServerConfig { interlink_port: 0, ..Default::default() };
//! let server = Server::bind(cfg).await?;
//! println!("listening on {:?}", server.local_addr());
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod auth;
mod body;
mod cache;
pub mod config;
pub mod connections;
mod create;
mod delete;
mod error;
mod exec;
mod extensions;
mod health;
mod listen;
mod logs;
pub mod metrics;
mod ping;
mod plugin_client;
mod retrieve;
mod serve;
mod session;
mod state;
mod stats;
mod status;
mod status_watch;
mod update_cache;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{any, get, post};

pub use config::{AuthConfig, ConfigError, OidcConfig, ServerConfig, TlsConfig};
pub use retrieve::build as build_retrieved_pod_data;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Bind(String),
    #[error("{0}")]
    Io(String),
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e.0)
    }
}

/// A bound, not yet serving, API server.
pub struct Server {
    bound: listen::Bound,
    app: Router,
    grace: Duration,
    conns: connections::Connections,
}

fn router(state: state::AppState, auth: Option<Arc<auth::Authenticator>>) -> Router {
    let api = Router::new()
        .route("/create", post(create::create))
        .route("/delete", any(delete::delete))
        .route("/status", get(status::status).post(status::status))
        .route("/getLogs", get(logs::logs).post(logs::logs))
        .route("/pinglink", post(ping::ping).get(ping::ping))
        .route("/updateCache", post(update_cache::update_cache))
        .route(crate::extensions::PATH, get(extensions::extensions))
        .route(crate::extensions::STATS_PATH, post(stats::stats))
        .route(
            crate::extensions::STATUS_WATCH_PATH,
            post(status_watch::status_watch),
        )
        .merge(exec::routes());
    let api = match auth {
        Some(a) => api.route_layer(middleware::from_fn_with_state(a, auth::require)),
        None => api,
    };
    let metrics = state.metrics.clone();
    Router::new()
        .merge(api)
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { error::json_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn(session::track))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}

impl Server {
    /// Check the configuration, connect the pieces and bind the listener.
    pub async fn bind(cfg: ServerConfig) -> Result<Server, ServerError> {
        cfg.check()?;
        let metrics = metrics::Metrics::new();
        let plugin = plugin_client::PluginClient::new(
            &cfg.sidecar_url,
            cfg.sidecar_port,
            Duration::from_secs_f64(cfg.plugin_timeout_seconds),
            cfg.plugin_http2_prior_knowledge,
            metrics.clone(),
        )
        .map_err(ServerError::Config)?;
        let auth = auth::Authenticator::from_config(&cfg.auth).map_err(ServerError::Config)?;
        if cfg
            .pprof
            .as_ref()
            .and_then(|p| p.get("Enabled"))
            .and_then(|e| e.as_bool())
            == Some(true)
        {
            tracing::warn!("Pprof.Enabled: this server has no pprof endpoint; ignored");
        }
        let job_config = match &cfg.job_script_build_config {
            Some(v) => Some(
                serde_json::to_value(v)
                    .map_err(|e| ServerError::Config(format!("JobScriptBuildConfig: {e}")))?,
            ),
            None => None,
        };
        let state = state::AppState {
            plugin,
            cache: Arc::new(cache::StatusCache::default()),
            pod_lists: crate::last_body::LastBody::new(),
            metrics,
            max_body: cfg.max_body_bytes,
            job_config,
            plugin_extensions: Arc::default(),
        };
        {
            // ask the plugin for its extensions now, so the first answer is ready
            let st = state.clone();
            tokio::spawn(async move {
                st.plugin_extensions.get(&st).await;
            });
        }
        let app = router(state, auth);
        let bound = listen::bind(&cfg).await?;
        tracing::info!(
            address = %cfg.interlink_address,
            local = ?bound.local_addr(),
            plugin = %cfg.sidecar_url,
            auth = cfg.auth_enabled(),
            "interLink API server listening"
        );
        Ok(Server {
            bound,
            app,
            grace: Duration::from_secs_f64(cfg.shutdown_grace_seconds),
            conns: connections::Connections::new(cfg.connection_limits()),
        })
    }

    /// The TCP address bound (None for a Unix socket).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// Serve until `shutdown` resolves, then finish the requests in flight
    /// (up to `ShutdownGraceSeconds`).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        serve::run(self.bound, self.app, self.conns, shutdown, self.grace).await
    }
}
