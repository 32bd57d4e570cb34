//! Calls to the plugin (`SidecarURL`/`SidecarPort`, `http://` or `unix://`),
//! with the methods upstream uses, a timeout, and errors mapped to what the
//! API server answers: plugin 4xx passed on, plugin 5xx or garbage -> 502,
//! unreachable -> 502, timeout -> 504. Each call carries the request's
//! `InterLink-Http-Session` (see `session`), as upstream's server sends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use reqwest::Method;

use super::error::ApiError;
use super::metrics::Metrics;
use crate::error_chain::chain;
use crate::types::{CreateStruct, LogStruct, RetrievedPodData};

/// Largest error body read from the plugin.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest answer read from the plugin (a `/status` of many pods fits well).
pub const MAX_ANSWER_BODY: usize = 64 << 20;

#[derive(Clone)]
pub struct PluginClient {
    http: reqwest::Client,
    base: String,
    /// Human-readable target for messages (`unix:///x.sock`, `http://h:p`).
    target: String,
    timeout: Duration,
    metrics: Metrics,
    /// Whether the plugin serves `/pinglink` (see [`PluginClient::ping`]).
    pinglink: Arc<AtomicU8>,
    /// How WebSockets (the exec extension) reach the plugin.
    dial: crate::ws::Dial,
}

const PINGLINK_UNKNOWN: u8 = 0;
const PINGLINK_YES: u8 = 1;
const PINGLINK_NO: u8 = 2;

/// Why a plugin call failed.
#[derive(Debug)]
pub enum PluginFailure {
    Unreachable(String),
    Timeout(String),
    /// The plugin answered an error status.
    Status(u16, String),
    /// The plugin answered 2xx with a body that does not parse.
    Garbage(String),
}

impl PluginFailure {
    pub fn into_api(self, target: &str) -> ApiError {
        match self {
            PluginFailure::Unreachable(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("plugin at {target} is unreachable: {m}"),
            ),
            PluginFailure::Timeout(m) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("plugin at {target} did not answer in time: {m}"),
            ),
            PluginFailure::Status(s, m) if (400..500).contains(&s) => ApiError::new(
                StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
                format!("plugin: {m}"),
            ),
            PluginFailure::Status(s, m) => {
                ApiError::new(StatusCode::BAD_GATEWAY, format!("plugin failed ({s}): {m}"))
            }
            PluginFailure::Garbage(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("plugin answered something unreadable: {m}"),
            ),
        }
    }
}

fn from_reqwest(e: reqwest::Error) -> PluginFailure {
    if e.is_timeout() {
        PluginFailure::Timeout(chain(&e))
    } else {
        PluginFailure::Unreachable(chain(&e))
    }
}

fn error_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("error").and_then(|m| m.as_str())
    {
        return m.to_string();
    }
    let t = String::from_utf8_lossy(body);
    let t = t.trim();
    if t.is_empty() {
        "(empty answer)".to_string()
    } else {
        t.chars().take(512).collect()
    }
}

impl PluginClient {
    /// `url` is `http://host` (port appended) or `unix:///path`; `http2`: the
    /// plugin is known to take HTTP/2 without TLS (one connection for all).
    pub fn new(
        url: &str,
        port: u16,
        timeout: Duration,
        http2: bool,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(64)
            .tls_backend_preconfigured(crate::tls::default_client_config());
        if http2 {
            b = b.http2_prior_knowledge();
        }
        let mut dial = None;
        let (base, target) = if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "SidecarURL {url:?}: a unix socket needs an absolute path"
                ));
            }
            b = b.unix_socket(path);
            dial = Some(crate::ws::Dial::Unix(path.into()));
            ("http://localhost".to_string(), url.to_string())
        } else if let Some(rest) = url.strip_prefix("http://") {
            let has_port = rest.rsplit(']').next().is_some_and(|t| t.contains(':'));
            let base = if has_port || port == 0 {
                url.to_string()
            } else {
                format!("{url}:{port}")
            };
            reqwest::Url::parse(&base).map_err(|e| format!("SidecarURL {base:?}: {e}"))?;
            (base.clone(), base)
        } else {
            return Err(format!(
                "SidecarURL {url:?} must start with http:// or unix://"
            ));
        };
        let http = b
            .build()
            .map_err(|e| format!("plugin client: {}", chain(&e)))?;
        let dial = match dial {
            Some(d) => d,
            None => crate::ws::Dial::from_url(&base, None)?,
        };
        Ok(PluginClient {
            http,
            base,
            target,
            timeout,
            metrics,
            pinglink: Arc::new(AtomicU8::new(PINGLINK_UNKNOWN)),
            dial,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// One call; answers the response of a 2xx, else the failure.
    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, PluginFailure> {
        let span = tracing::debug_span!(
            "plugin.request",
            otel.name = %format_args!("plugin {method} {endpoint}"),
            otel.kind = "client",
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let call = self.call_in(&span, endpoint, method, body, timeout);
        crate::telemetry::traced(span.clone(), call, |e| format!("{e:?}")).await
    }

    async fn call_in(
        &self,
        span: &tracing::Span,
        endpoint: &'static str,
        method: Method,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, PluginFailure> {
        let start = Instant::now();
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base, endpoint));
        if crate::telemetry::enabled() {
            let mut h = http::HeaderMap::new();
            crate::telemetry::inject(span, &mut h);
            rb = rb.headers(h);
        }
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        if let Some(session) = super::session::current() {
            rb = rb.header(super::session::HEADER, session);
        }
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        tracing::debug!(endpoint, "calling the plugin");
        let result = rb.send().await;
        let outcome = match &result {
            Ok(r) if r.status().is_success() => "ok",
            Ok(_) => "error_status",
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "unreachable",
        };
        self.metrics.plugin_call(endpoint, outcome, start.elapsed());
        let resp = result.map_err(from_reqwest)?;
        let status = resp.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_success() {
            return Ok(resp);
        }
        let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        Err(PluginFailure::Status(status.as_u16(), error_text(&body)))
    }

    /// The answer's body, refused (not read on) above [`MAX_ANSWER_BODY`].
    async fn body_of(&self, mut resp: reqwest::Response) -> Result<Bytes, PluginFailure> {
        let too_big =
            || PluginFailure::Garbage(format!("the answer is larger than {MAX_ANSWER_BODY} bytes"));
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BODY as u64)
        {
            return Err(too_big());
        }
        // room for what the plugin announced, so a large answer is not regrown
        let announced = resp.content_length().unwrap_or(0) as usize;
        let mut out = bytes::BytesMut::with_capacity(announced);
        while let Some(c) = resp.chunk().await.map_err(from_reqwest)? {
            if out.len() + c.len() > MAX_ANSWER_BODY {
                return Err(too_big());
            }
            out.extend_from_slice(&c);
        }
        Ok(out.freeze())
    }

    /// `POST /create` with the pod's data.
    pub async fn create(&self, data: &RetrievedPodData) -> Result<CreateStruct, PluginFailure> {
        let body = serde_json::to_vec(data).map_err(|e| PluginFailure::Garbage(e.to_string()))?;
        let resp = self
            .call(
                "/create",
                Method::POST,
                Some(body.into()),
                Some(self.timeout),
            )
            .await?;
        let bytes = self.body_of(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            PluginFailure::Garbage(format!("/create answer is not a CreateStruct: {e}"))
        })
    }

    /// `POST /delete` with the pod.
    pub async fn delete(&self, pod: &Pod) -> Result<Bytes, PluginFailure> {
        let body = serde_json::to_vec(pod).map_err(|e| PluginFailure::Garbage(e.to_string()))?;
        let resp = self
            .call(
                "/delete",
                Method::POST,
                Some(body.into()),
                Some(self.timeout),
            )
            .await?;
        self.body_of(resp).await
    }

    /// `GET /status` with a body: the request's own JSON array of pods is passed
    /// on as is. Answers the plugin's bytes (checked by the caller).
    pub async fn status(&self, pods_json: Bytes) -> Result<Bytes, PluginFailure> {
        let resp = self
            .call("/status", Method::GET, Some(pods_json), Some(self.timeout))
            .await?;
        self.body_of(resp).await
    }

    /// `GET /extensions`: the plugin's extensions. An error status or a body
    /// that is not the extensions object (an upstream plugin) is "none"; only a
    /// plugin that cannot be reached is an error (ask again later).
    pub async fn extensions(&self) -> Result<crate::extensions::Extensions, PluginFailure> {
        use crate::extensions::Extensions;
        match self
            .call(
                crate::extensions::PATH,
                Method::GET,
                None,
                Some(self.timeout),
            )
            .await
        {
            Ok(resp) => {
                let bytes = self.body_of(resp).await?;
                Ok(Extensions::from_answer(200, &bytes))
            }
            Err(PluginFailure::Status(s, _)) => Ok(Extensions::from_answer(s, b"")),
            Err(PluginFailure::Garbage(_)) => Ok(Extensions::none()),
            Err(e) => Err(e),
        }
    }

    /// `POST /stats` with the request's JSON array of pods, passed on as is.
    pub async fn stats(&self, pods_json: Bytes) -> Result<Bytes, PluginFailure> {
        let resp = self
            .call(
                crate::extensions::STATS_PATH,
                Method::POST,
                Some(pods_json),
                Some(self.timeout),
            )
            .await?;
        self.body_of(resp).await
    }

    /// `POST /status/watch` (extension `statusWatch`) with the request's JSON
    /// array of pods, passed on as is; the answer streams (no overall timeout).
    pub async fn status_watch(&self, pods_json: Bytes) -> Result<reqwest::Response, PluginFailure> {
        self.call(
            crate::extensions::STATUS_WATCH_PATH,
            Method::POST,
            Some(pods_json),
            None,
        )
        .await
    }

    /// Open a WebSocket to the plugin at `path_and_query` (an endpoint of the
    /// exec extension), with the request's session, within the plugin timeout.
    /// Answers the socket and the subprotocol the plugin chose.
    pub async fn websocket(
        &self,
        endpoint: &'static str,
        path_and_query: &str,
        protocol: Option<&str>,
    ) -> Result<(crate::ws::Ws, Option<String>), PluginFailure> {
        use crate::ws::DialError;
        let start = Instant::now();
        let mut headers = Vec::new();
        if let Some(session) = super::session::current()
            && let Ok(v) = axum::http::HeaderValue::from_str(&session)
        {
            headers.push((
                axum::http::HeaderName::from_static("interlink-http-session"),
                v,
            ));
        }
        tracing::debug!(endpoint, "opening a WebSocket to the plugin");
        let result = self
            .dial
            .websocket(path_and_query, headers, protocol, self.timeout)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(DialError::Status(..)) => "error_status",
            Err(DialError::Timeout(_)) => "timeout",
            Err(_) => "unreachable",
        };
        self.metrics.plugin_call(endpoint, outcome, start.elapsed());
        result.map_err(|e| match e {
            DialError::Status(s, body) => PluginFailure::Status(s, error_text(&body)),
            DialError::Timeout(m) => PluginFailure::Timeout(m),
            DialError::Unreachable(m) | DialError::Config(m) => PluginFailure::Unreachable(m),
        })
    }

    /// `GET /getLogs` with a body; the response streams (no overall timeout on follow).
    pub async fn logs(&self, req: &LogStruct) -> Result<reqwest::Response, PluginFailure> {
        let body = serde_json::to_vec(req).map_err(|e| PluginFailure::Garbage(e.to_string()))?;
        let timeout = (!req.opts.follow).then_some(self.timeout);
        self.call("/getLogs", Method::GET, Some(body.into()), timeout)
            .await
    }

    /// Liveness as upstream checks it: `GET /status` with `[]`. A plugin
    /// answering an object there (upstream's Slurm plugin: status, resources,
    /// taints) has said everything; one answering a list (ours) is asked its
    /// `/pinglink` for its resources, unless it answered 404/405 there once
    /// already. Answers the body to hand to the client.
    pub async fn ping(&self, timeout: Duration) -> Result<Bytes, PluginFailure> {
        let resp = self
            .call(
                "/status",
                Method::GET,
                Some(Bytes::from_static(b"[]")),
                Some(timeout),
            )
            .await?;
        let status_body = self.body_of(resp).await?;
        if status_body.trim_ascii_start().first() == Some(&b'{')
            || self.pinglink.load(Ordering::Relaxed) == PINGLINK_NO
        {
            return Ok(status_body);
        }
        match self
            .call("/pinglink", Method::POST, None, Some(timeout))
            .await
        {
            Ok(resp) => {
                self.pinglink.store(PINGLINK_YES, Ordering::Relaxed);
                self.body_of(resp).await
            }
            Err(PluginFailure::Status(404 | 405, _)) => {
                self.pinglink.store(PINGLINK_NO, Ordering::Relaxed);
                Ok(status_body)
            }
            Err(e) => Err(e),
        }
    }
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while out.len() < max {
        match resp.chunk().await? {
            Some(c) => out.extend_from_slice(&c[..c.len().min(max - out.len())]),
            None => break,
        }
    }
    Ok(out)
}
