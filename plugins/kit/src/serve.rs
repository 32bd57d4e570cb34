//! Serving the plugin API on TCP or a Unix socket.
//!
//! Endpoints (the plugin side of the interLink contract, plus two of our own):
//!
//! | path | methods | body | answer |
//! |---|---|---|---|
//! | `/create` | POST | `RetrievedPodData` (or a list of them, as older interLink sends) | `CreateStruct` (a list for a list) |
//! | `/delete` | POST, DELETE | `v1.Pod` | `{"deleted": uid}` |
//! | `/status` | GET, POST (with body) | `[v1.Pod]` (`[]` or no body: liveness) | `[PodStatus]` |
//! | `/getLogs` | GET, POST (with body) | `LogStruct` | `text/plain`, streamed on `Follow` |
//! | `/pinglink` | GET, POST | none | `PingResponse` |
//! | `/extensions` | GET | none | the extensions the provider lists |
//! | `/stats` | POST | `[v1.Pod]` | `[PodStats]` (extension `stats`) |
//! | `/status/watch` | POST | `[v1.Pod]` (`[]`: every pod) | NDJSON `PodStatus` lines, open (extension `statusWatch`, see [`crate::status_watch`]) |
//! | `/exec`, `/attach`, `/portforward` | GET, WebSocket upgrade | query (see [`interlink::exec`]) | `v5.channel.k8s.io` frames / raw bytes (extension `exec`, see [`crate::exec_ws`]) |
//! | `/healthz` | GET | none | `ok` (the process answers; the provider is not asked) |
//! | `/metrics` | GET | none | Prometheus text format |
//!
//! Every failure is a JSON `{"error": message}` with a 4xx/5xx status. Bodies
//! larger than [`ServeOptions::max_body_bytes`] get a 413, bodies slower than
//! the connection bounds ([`ServeOptions::limits`], the same as the API
//! server's: request head, request body, keep-alive idle time and connection
//! count) a 408. Request bodies are never logged (they carry Secrets).

use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use interlink::exec::{AttachRequest, ExecRequest, PortForwardRequest, StreamRequest};
use interlink::last_body::LastBody;
use interlink::server::connections::{ConnectionLimits, Connections};
use interlink::{LogStruct, PodRef, RetrievedPodData};
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::http_error::ApiError;
use crate::metrics::Metrics;
use crate::{Provider, validate};

/// Where a plugin listens: `http://host:port`, `host:port`, `:port`, or `unix:///path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A listen address that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid listen address {input:?}: {reason}")]
pub struct ListenError {
    pub input: String,
    pub reason: String,
}

impl Listen {
    /// Parse `unix:///path/to.sock`, `http://127.0.0.1:4000`, `127.0.0.1:4000`,
    /// `localhost:4000` or `:4000` (every interface).
    pub fn parse(s: &str) -> Result<Listen, ListenError> {
        let err = |reason: &str| ListenError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if let Some(path) = t.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err("no socket path after unix://"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        if t.starts_with("https://") {
            return Err(err(
                "the plugin API is served as plain HTTP; put TLS in front or use a Unix socket",
            ));
        }
        let hostport = t.strip_prefix("http://").unwrap_or(t).trim_end_matches('/');
        if hostport.is_empty() {
            return Err(err("empty address"));
        }
        if hostport.contains('/') {
            return Err(err("expected host:port (a path is not allowed)"));
        }
        let hostport = if hostport.starts_with(':') {
            format!("0.0.0.0{hostport}")
        } else {
            hostport.to_string()
        };
        if let Ok(a) = hostport.parse::<SocketAddr>() {
            return Ok(Listen::Tcp(a));
        }
        if !hostport.contains(':') {
            return Err(err("expected host:port or unix:///path"));
        }
        match hostport.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .map(Listen::Tcp)
                .ok_or_else(|| err("host resolves to no address")),
            Err(e) => Err(err(&e.to_string())),
        }
    }

    /// The base URL a client uses: `http://ip:port` or `unix:///path`.
    pub fn url(&self) -> String {
        match self {
            Listen::Tcp(a) => format!("http://{a}"),
            Listen::Unix(p) => format!("unix://{}", p.display()),
        }
    }
}

impl FromStr for Listen {
    type Err = ListenError;
    fn from_str(s: &str) -> Result<Listen, ListenError> {
        Listen::parse(s)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// Tunables of the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest accepted request body (ConfigMaps and Secrets travel in `/create`).
    pub max_body_bytes: usize,
    /// After shutdown is asked, how long requests in flight may take before the
    /// server stops anyway (log streams are ended at once).
    pub drain_timeout: Duration,
    /// File mode of a Unix socket.
    pub socket_mode: u32,
    /// Bounds on client connections: request head and body times, keep-alive
    /// idle time, connections at once.
    pub limits: ConnectionLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: 32 << 20,
            drain_timeout: Duration::from_secs(10),
            socket_mode: 0o660,
            limits: ConnectionLimits::default(),
        }
    }
}

/// A bound listener, ready to serve.
pub struct Bound {
    inner: BoundInner,
    local: Listen,
}

enum BoundInner {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Bound {
    /// The actual address (with the port the system chose for `:0`).
    pub fn local(&self) -> &Listen {
        &self.local
    }
}

/// Bind `listen`. A Unix socket's parent directory is created; a stale socket
/// file (nothing answers on it) is replaced; a live one is an `AddrInUse` error.
pub async fn bind(listen: &Listen, opts: &ServeOptions) -> std::io::Result<Bound> {
    match listen {
        Listen::Tcp(addr) => {
            // a long accept queue: clients waiting for a connection slot keep
            // their place instead of losing SYNs (capped by `somaxconn`)
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            let l = socket.listen(1024)?;
            let local = Listen::Tcp(l.local_addr()?);
            Ok(Bound {
                inner: BoundInner::Tcp(l),
                local,
            })
        }
        Listen::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!(
                            "{} exists and is not a socket; not replacing it",
                            path.display()
                        ),
                    ));
                }
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("another server already answers on {}", path.display()),
                    ));
                }
                tracing::info!(socket = %path.display(), "replacing a stale socket file");
                std::fs::remove_file(path)?;
            }
            let l = tokio::net::UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.socket_mode))?;
            Ok(Bound {
                inner: BoundInner::Unix(l),
                local: Listen::Unix(path.clone()),
            })
        }
    }
}

/// Serve `provider` on `listen` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve<P: Provider>(
    provider: Arc<P>,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let opts = ServeOptions::default();
    let bound = bind(&listen, &opts).await?;
    serve_bound(provider, bound, opts, Metrics::new(), shutdown).await
}

/// Serve on an already bound listener (see [`bind`]), with options and metrics.
pub async fn serve_bound<P: Provider>(
    provider: Arc<P>,
    bound: Bound,
    opts: ServeOptions,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = CancellationToken::new();
    let app = router(provider, &opts, metrics, cancel.clone());
    let conns = Connections::new(opts.limits.clone());
    tracing::info!(
        listen = %bound.local,
        max_connections = opts.limits.max_connections,
        "plugin API listening"
    );
    tokio::pin!(shutdown);
    loop {
        // room first, then accept: clients beyond the limit wait in the kernel's queue
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = conns.slot() => s,
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = accept(&bound.inner) => r,
        };
        match accepted {
            Ok(Accepted::Tcp(s)) => {
                let _ = s.set_nodelay(true);
                conns.serve(slot, s, app.clone());
            }
            Ok(Accepted::Unix(s)) => conns.serve(slot, s, app.clone()),
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // log streams end now; other requests may finish within the drain time
    cancel.cancel();
    drop(bound.inner);
    if let Listen::Unix(p) = &bound.local {
        let _ = std::fs::remove_file(p);
    }
    conns.shutdown();
    let drain = opts.drain_timeout;
    tokio::select! {
        _ = conns.drained() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("requests still in flight after {drain:?}; stopping anyway"),
    }
    tracing::info!("plugin API stopped");
    Ok(())
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &BoundInner) -> std::io::Result<Accepted> {
    Ok(match l {
        BoundInner::Tcp(l) => Accepted::Tcp(l.accept().await?.0),
        BoundInner::Unix(l) => Accepted::Unix(l.accept().await?.0),
    })
}

struct Shared<P> {
    provider: Arc<P>,
    metrics: Metrics,
    cancel: CancellationToken,
    /// The pods of the last `/status`, `/stats` or `/status/watch` body.
    pod_lists: Arc<LastBody<Arc<Vec<PodRef>>>>,
}

type St<P> = State<Arc<Shared<P>>>;

/// The plugin API as an axum router (what [`serve`] serves). `cancel` ends log
/// streams when cancelled.
pub fn router<P: Provider>(
    provider: Arc<P>,
    opts: &ServeOptions,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Router {
    let shared = Arc::new(Shared {
        provider,
        metrics: metrics.clone(),
        cancel,
        pod_lists: LastBody::new(),
    });
    Router::new()
        .route("/create", post(create::<P>))
        .route("/delete", post(delete::<P>).delete(delete::<P>))
        .route("/status", get(status::<P>).post(status::<P>))
        .route("/getLogs", get(logs::<P>).post(logs::<P>))
        .route("/pinglink", get(ping::<P>).post(ping::<P>))
        .route(interlink::extensions::PATH, get(extensions::<P>))
        .route(interlink::extensions::STATS_PATH, post(stats::<P>))
        .route(
            interlink::extensions::STATUS_WATCH_PATH,
            post(status_watch::<P>),
        )
        .route(interlink::extensions::EXEC_PATH, get(exec::<P>))
        .route(interlink::extensions::ATTACH_PATH, get(attach::<P>))
        .route(
            interlink::extensions::PORT_FORWARD_PATH,
            get(port_forward::<P>),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text::<P>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

const ENDPOINTS: [&str; 13] = [
    "/create",
    "/delete",
    "/status",
    "/getLogs",
    "/pinglink",
    "/extensions",
    "/stats",
    "/status/watch",
    "/exec",
    "/attach",
    "/portforward",
    "/healthz",
    "/metrics",
];

async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // upstream's API server (and ours) send the client's session for correlation
    let session: String = req
        .headers()
        .get("InterLink-Http-Session")
        .map(|v| {
            v.as_bytes()
                .iter()
                .filter(|b| b.is_ascii_graphic())
                .take(128)
                .map(|b| *b as char)
                .collect()
        })
        .unwrap_or_default();
    let endpoint = ENDPOINTS
        .iter()
        .find(|e| **e == path)
        .copied()
        .unwrap_or("other");
    // one span per plugin action, a child of the caller's (W3C traceparent)
    let span = tracing::debug_span!(
        "plugin.action",
        otel.name = %format_args!("{method} {endpoint}"),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    interlink::telemetry::adopt_parent(&span, req.headers());
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let secs = start.elapsed().as_secs_f64();
    let code = resp.status().as_u16();
    span.record("http.response.status_code", code);
    if code >= 400 {
        interlink::telemetry::fail(&span, &format!("{method} {path}: HTTP {code}"));
    }
    metrics.observe(endpoint, code, secs);
    let ms = secs * 1000.0;
    if code >= 500 {
        tracing::error!(%method, path, code, ms, session, "request failed");
    } else if code >= 400 {
        tracing::warn!(%method, path, code, ms, session, "request refused");
    } else if matches!(endpoint, "/create" | "/delete") {
        tracing::info!(%method, path, code, ms, session, "request");
    } else {
        tracing::debug!(%method, path, code, ms, session, "request");
    }
    resp
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The request body, with a JSON error when it is too large or unreadable.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if let Some(t) = interlink::server::connections::body_read_timeout(&r) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, t.to_string());
        }
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is too large".to_string()
        } else {
            format!("cannot read the request body: {}", r.body_text())
        };
        ApiError::new(status, msg)
    })
}

/// The body of `/status`, `/stats` and `/status/watch`: a JSON array of
/// pods (an empty body: none), each naming a pod.
/// Only what a provider answers from is decoded (see [`PodRef`]); `null`
/// (Go's nil slice) is no pods. A host asks about the same pods round after
/// round: the same body as the last one is not decoded again (see
/// [`LastBody`]; 10,000 pods: 10–20 ms of decoding saved per round).
fn pod_list(
    last: &LastBody<Arc<Vec<PodRef>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Arc<Vec<PodRef>>, ApiError> {
    let body = body_bytes(body)?;
    last.get_or_make(&body, |body| {
        let pods: Vec<PodRef> = if body.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            parse_json::<Option<Vec<PodRef>>>(body, "JSON array of v1.Pod")?.unwrap_or_default()
        };
        for (i, p) in pods.iter().enumerate() {
            validate::named_pod(p).map_err(|e| ApiError::bad_request(format!("pods[{i}]: {e}")))?;
        }
        Ok(Arc::new(pods))
    })
}

fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "empty body: expected {what}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

async fn create<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    // older interLink versions send a list of pods and expect a list back
    let is_list = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let pods: Vec<RetrievedPodData> = if is_list {
        parse_json(&body, "JSON array of RetrievedPodData")?
    } else {
        vec![parse_json(&body, "RetrievedPodData JSON")?]
    };
    for (i, data) in pods.iter().enumerate() {
        validate::create_request(data)
            .map_err(|e| ApiError::bad_request(if is_list { format!("[{i}]: {e}") } else { e }))?;
    }
    let mut created = Vec::with_capacity(pods.len());
    for data in pods {
        tracing::info!(
            pod = %interlink::pod_name(&data.pod),
            namespace = %interlink::pod_namespace(&data.pod),
            uid = %interlink::pod_uid(&data.pod),
            "create"
        );
        created.push(s.provider.create(data).await?);
    }
    if is_list {
        Ok(axum::Json(created).into_response())
    } else {
        Ok(axum::Json(created.remove(0)).into_response())
    }
}

async fn delete<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let pod: Pod = parse_json(&body, "v1.Pod JSON")?;
    validate::pod_ref(&pod).map_err(ApiError::bad_request)?;
    let uid = interlink::pod_uid(&pod).to_string();
    tracing::info!(uid = %uid, pod = %interlink::pod_name(&pod), "delete");
    s.provider.delete(pod).await?;
    Ok(axum::Json(serde_json::json!({ "deleted": uid })).into_response())
}

async fn status<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let pods = pod_list(&s.pod_lists, body)?;
    let answer = s.provider.status(&pods).await?;
    Ok(axum::Json(answer).into_response())
}

async fn extensions<P: Provider>(State(s): St<P>) -> Response {
    axum::Json(s.provider.extensions()).into_response()
}

async fn stats<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !s.provider.extensions().has(interlink::extensions::STATS) {
        return Err(
            crate::PluginError::NotFound("this plugin has no stats extension".into()).into(),
        );
    }
    let pods = pod_list(&s.pod_lists, body)?;
    let answer = s.provider.stats(&pods).await?;
    Ok(axum::Json(answer).into_response())
}

/// `POST /status/watch` (extension `statusWatch`): the body of `/status`,
/// answered by a stream of status lines (see [`crate::status_watch`]).
async fn status_watch<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !s
        .provider
        .extensions()
        .has(interlink::extensions::STATUS_WATCH)
    {
        return Err(crate::PluginError::NotFound(
            "this plugin has no statusWatch extension".into(),
        )
        .into());
    }
    let pods = pod_list(&s.pod_lists, body)?;
    let stream = crate::status_watch::open(s.provider.clone(), pods, s.cancel.clone()).await?;
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(interlink::extensions::STATUS_WATCH_CONTENT_TYPE),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// An endpoint of the exec extension: the extension (else a JSON 501), a
/// WebSocket upgrade offering the request's subprotocol (else a JSON 400),
/// and a valid request (else a JSON 400).
fn exec_request<P: Provider, R: StreamRequest>(
    s: &Shared<P>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    query: Option<String>,
) -> Result<(WebSocketUpgrade, R), ApiError> {
    if !s.provider.extensions().has(interlink::extensions::EXEC) {
        return Err(crate::PluginError::Unsupported(format!(
            "this plugin has no {:?} extension",
            interlink::extensions::EXEC
        ))
        .into());
    }
    let upgrade = upgrade.map_err(|r| {
        ApiError::bad_request(format!(
            "{} is a WebSocket endpoint (GET with Upgrade: websocket): {}",
            R::PATH,
            r.body_text()
        ))
    })?;
    let upgrade = match R::PROTOCOL {
        None => upgrade,
        Some(p) => {
            let u = upgrade.protocols([p]);
            if u.selected_protocol().is_none() {
                return Err(ApiError::bad_request(format!(
                    "{} speaks the WebSocket protocol {p}: offer it in Sec-WebSocket-Protocol",
                    R::PATH
                )));
            }
            u
        }
    };
    let req =
        R::from_query(query.as_deref().unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
    tracing::info!(
        endpoint = R::PATH,
        uid = %req.target().pod_uid,
        "opening a stream"
    );
    Ok((upgrade, req))
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn exec<P: Provider>(
    State(s): St<P>,
    RawQuery(q): RawQuery,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let (upgrade, req) = exec_request::<P, ExecRequest>(&s, upgrade, q)?;
    let stdin = req.stdin;
    let run = s.provider.exec(req).await?;
    Ok(crate::exec_ws::serve_exec(upgrade, stdin, run))
}

async fn attach<P: Provider>(
    State(s): St<P>,
    RawQuery(q): RawQuery,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let (upgrade, req) = exec_request::<P, AttachRequest>(&s, upgrade, q)?;
    let stdin = req.stdin;
    let run = s.provider.attach(req).await?;
    Ok(crate::exec_ws::serve_exec(upgrade, stdin, run))
}

async fn port_forward<P: Provider>(
    State(s): St<P>,
    RawQuery(q): RawQuery,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let (upgrade, req) = exec_request::<P, PortForwardRequest>(&s, upgrade, q)?;
    let target = s.provider.port_forward(req).await?;
    Ok(crate::exec_ws::serve_port_forward(upgrade, target))
}

async fn logs<P: Provider>(
    State(s): St<P>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let req: LogStruct = parse_json(&body, "LogStruct JSON")?;
    validate::log_request(&req).map_err(ApiError::bad_request)?;
    let follow = req.opts.follow;
    let stream = s.provider.logs(req).await?;
    let guard = s.metrics.log_stream();
    let cancel = s.cancel.clone();
    let stream = stream
        .take_until(cancel.cancelled_owned())
        .map(move |item| {
            let _ = &guard;
            item
        });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if follow {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(resp)
}

async fn ping<P: Provider>(State(s): St<P>) -> Result<Response, ApiError> {
    let p = s.provider.ping().await?;
    Ok(axum::Json(p).into_response())
}

async fn metrics_text<P: Provider>(State(s): St<P>) -> Response {
    let mut resp = s.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listen() {
        assert_eq!(
            Listen::parse("unix:///tmp/a.sock").unwrap(),
            Listen::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            Listen::parse("127.0.0.1:4000").unwrap(),
            Listen::Tcp("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("http://127.0.0.1:4000/").unwrap(),
            Listen::Tcp("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(
            Listen::parse(":4000").unwrap(),
            Listen::Tcp("0.0.0.0:4000".parse().unwrap())
        );
        assert!(
            matches!(Listen::parse("localhost:4000").unwrap(), Listen::Tcp(a) if a.port() == 4000)
        );
        assert!(Listen::parse("unix://").is_err());
        assert!(Listen::parse("https://x:1").is_err());
        assert!(Listen::parse("nonsense").is_err());
        assert!(Listen::parse("http://h:1/path").is_err());
        assert_eq!(Listen::parse("unix:///x").unwrap().to_string(), "unix:///x");
    }
}
