//! An async client for the interLink API server: every endpoint, over
//! `http://`, `https://` (CA bundle, optional client certificate) or
//! `unix:///path`, with a bearer token read from a file that may be rotated on disk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), interlink::client::ClientError> {
//! use interlink::client::{Client, ClientConfig};
//! let client = Client::new(ClientConfig { address: "unix:///run/interlink.sock".into(), ..Default::default() })?;
//! let statuses = client.status(&[]).await?;
//! # let _ = statuses; Ok(()) }
//! ```

mod config;
mod error;
mod exec;
mod extensions;
mod status_watch;
mod tls;
mod token;

pub use config::ClientConfig;
pub use error::ClientError;
pub use exec::{ExecEvent, ExecInput, ExecOutcome, ExecOutput, ExecSession, PortForwardStream};

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use reqwest::Method;
use serde::de::DeserializeOwned;

use crate::StatusAnswer;
use crate::types::{CreateStruct, LogStruct, PingResponse, PodCreateRequests, PodStatus};
use token::TokenFile;

/// Largest error body read to build an error message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A client of one API server; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Option<TokenFile>,
    request_timeout: Duration,
    connect_timeout: Duration,
    /// How WebSockets (the exec extension) reach the server.
    dial: crate::ws::Dial,
    /// The server's extensions and when they were asked (see `extensions`).
    extensions: std::sync::Mutex<Option<(crate::extensions::Extensions, std::time::Instant)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Where requests go: the URL prefix and, for `unix://`, the socket.
fn endpoint(cfg: &ClientConfig) -> Result<(String, Option<std::path::PathBuf>), ClientError> {
    let addr = cfg.address.trim();
    if let Some(path) = addr.strip_prefix("unix://") {
        if path.is_empty() || !path.starts_with('/') {
            return Err(ClientError::Config(format!(
                "unix address needs an absolute path (unix:///path.sock), got {addr:?}"
            )));
        }
        return Ok(("http://localhost".to_string(), Some(path.into())));
    }
    let rest = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .ok_or_else(|| {
            ClientError::Config(format!(
                "address must start with http://, https:// or unix://, got {addr:?}"
            ))
        })?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(ClientError::Config(format!(
            "address must be scheme://host without a path, got {addr:?}"
        )));
    }
    let has_port = match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    };
    let mut base = addr.trim_end_matches('/').to_string();
    if let (Some(port), false) = (cfg.port, has_port) {
        base.push_str(&format!(":{port}"));
    }
    reqwest::Url::parse(&base)
        .map_err(|e| ClientError::Config(format!("address {base:?}: {e}")))?;
    Ok((base, None))
}

impl Client {
    /// Build a client; fails on an unusable address or unreadable TLS files.
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        let (base, socket) = endpoint(&cfg)?;
        let dial = match &socket {
            Some(path) => crate::ws::Dial::Unix(path.clone()),
            None => {
                let tls = if base.starts_with("https://") {
                    // a WebSocket upgrade is HTTP/1.1 only
                    let mut t = tls::rustls_config(&cfg)?;
                    t.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Some(Arc::new(t))
                } else {
                    None
                };
                crate::ws::Dial::from_url(&base, tls).map_err(ClientError::Config)?
            }
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(20))
            // a burst of follows that ended leaves this many connections, not all
            .pool_max_idle_per_host(64)
            .no_proxy()
            .user_agent(concat!("interlink-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = socket {
            b = b.unix_socket(path);
        }
        if cfg.http2_prior_knowledge {
            b = b.http2_prior_knowledge();
        }
        if base.starts_with("https://") {
            b = b.tls_backend_preconfigured(tls::rustls_config(&cfg)?);
        } else if cfg.client_cert_file.is_some() || cfg.ca_cert_file.is_some() {
            // a plain http client has no use for certificates; refuse rather than silently ignore
            return Err(ClientError::Config(
                "certificates are configured but the address is not https://".into(),
            ));
        } else {
            // reqwest has no default crypto provider here; give it one even for http
            b = b.tls_backend_preconfigured(crate::tls::default_client_config());
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Config(crate::error_chain::chain(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: cfg.token_file.map(TokenFile::new),
                request_timeout: cfg.request_timeout,
                connect_timeout: cfg.connect_timeout,
                dial,
                extensions: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The URL prefix requests go to (`http://localhost` for a Unix socket).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Send one request; a non-2xx answer becomes a typed error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        // one span per request (exported when tracing is on), its context sent on
        let span = tracing::debug_span!(
            "interlink.request",
            otel.name = %format_args!("{method} {path}"),
            otel.kind = "client",
            http.request.method = %method,
            url.path = path,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let call = self.send_in(&span, method, path, body, timeout);
        crate::telemetry::traced(span.clone(), call, |e| e.to_string()).await
    }

    async fn send_in(
        &self,
        span: &tracing::Span,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.inner.base, path);
        let mut rb = self.inner.http.request(method, &url);
        if crate::telemetry::enabled() {
            let mut h = http::HeaderMap::new();
            crate::telemetry::inject(span, &mut h);
            rb = rb.headers(h);
        }
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        if let Some(tf) = &self.inner.token {
            // the token value is never logged nor put in an error
            rb = rb.bearer_auth(tf.token()?);
        }
        if let Some(body) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(e, path))?;
        let status = resp.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_success() {
            return Ok(resp);
        }
        let body = read_bounded(resp, MAX_ERROR_BODY, path)
            .await
            .unwrap_or_default();
        Err(ClientError::from_response(status.as_u16(), &body))
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Decode(format!("{path}: {e} (body starts {:?})", preview(&bytes)))
        })
    }

    /// The answer's body, as it came.
    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ClientError> {
        let resp = self
            .send(method, path, Some(body), Some(self.inner.request_timeout))
            .await?;
        resp.bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(e, path))
    }

    /// `POST /create`: start a pod; the answer carries its job id.
    pub async fn create(&self, req: &PodCreateRequests) -> Result<CreateStruct, ClientError> {
        self.call_json(Method::POST, "/create", encode(req)?).await
    }

    /// `DELETE /delete`: stop and forget a pod.
    pub async fn delete(&self, pod: &Pod) -> Result<(), ClientError> {
        let resp = self
            .send(
                Method::DELETE,
                "/delete",
                Some(encode(pod)?),
                Some(self.inner.request_timeout),
            )
            .await?;
        drain(resp, "/delete").await
    }

    /// `GET /status` with a body: the status of many pods in one request.
    /// Upstream's server answers `null` when it knows none of them: an empty list.
    pub async fn status(&self, pods: &[Pod]) -> Result<Vec<PodStatus>, ClientError> {
        self.status_answer(encode(&pods)?)
            .await?
            .decode_all()
            .map_err(|e| ClientError::Decode(format!("/status: {e}")))
    }

    /// [`Client::status`] with the body already encoded (a JSON array of
    /// pods, as [`encode_pods`] makes it), answering the statuses undecoded:
    /// a caller that asks about the same pods every round encodes them once,
    /// and decodes only the statuses that changed (see [`StatusAnswer`]).
    pub async fn status_answer(&self, pods_json: Bytes) -> Result<StatusAnswer, ClientError> {
        let bytes = self.call(Method::GET, "/status", pods_json).await?;
        StatusAnswer::parse(bytes.clone()).map_err(|e| {
            ClientError::Decode(format!("/status: {e} (body starts {:?})", preview(&bytes)))
        })
    }

    /// `GET /getLogs` with a body: the logs as they are now, at most `max_bytes`
    /// of them (the rest is not read). `Opts.Follow` is sent as false.
    pub async fn logs(&self, req: &LogStruct, max_bytes: usize) -> Result<Bytes, ClientError> {
        let mut req = req.clone();
        req.opts.follow = false;
        let resp = self
            .send(
                Method::GET,
                "/getLogs",
                Some(encode(&req)?),
                Some(self.inner.request_timeout),
            )
            .await?;
        read_bounded(resp, max_bytes, "/getLogs").await
    }

    /// `GET /getLogs` with `Opts.Follow`: a stream of log chunks that stays open
    /// while the container runs. No overall timeout; drop the stream to stop.
    pub async fn logs_follow(
        &self,
        req: &LogStruct,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let mut req = req.clone();
        req.opts.follow = true;
        let resp = self
            .send(Method::GET, "/getLogs", Some(encode(&req)?), None)
            .await?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(|e| ClientError::from_reqwest(e, "/getLogs (follow)")))
            .boxed())
    }

    /// `POST /pinglink`: is the plugin behind the server alive? `Ok(None)` when
    /// it answered with plain text rather than a `PingResponse`.
    pub async fn ping(&self) -> Result<Option<PingResponse>, ClientError> {
        let resp = self
            .send(
                Method::POST,
                "/pinglink",
                None,
                Some(self.inner.request_timeout),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(e, "/pinglink"))?;
        let trimmed = bytes.trim_ascii_start();
        if trimmed.first() != Some(&b'{') {
            return Ok(None);
        }
        serde_json::from_slice(trimmed)
            .map(Some)
            .map_err(|e| ClientError::Decode(format!("/pinglink: {e}")))
    }

    /// `POST /updateCache`: re-register a pod after the server restarted.
    pub async fn update_cache(&self, pod: &Pod) -> Result<(), ClientError> {
        let resp = self
            .send(
                Method::POST,
                "/updateCache",
                Some(encode(pod)?),
                Some(self.inner.request_timeout),
            )
            .await?;
        drain(resp, "/updateCache").await
    }
}

/// The body of `/status` (and `/stats`) for `pods`, for
/// [`Client::status_answer`].
pub fn encode_pods(pods: &[Pod]) -> Result<Bytes, ClientError> {
    encode(pods)
}

fn encode<T: serde::Serialize + ?Sized>(v: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ClientError::Config(format!("cannot encode the request: {e}")))
}

async fn drain(resp: reqwest::Response, path: &str) -> Result<(), ClientError> {
    read_bounded(resp, MAX_ERROR_BODY, path).await.map(|_| ())
}

/// Read at most `max` bytes of a body, then stop reading.
async fn read_bounded(
    resp: reqwest::Response,
    max: usize,
    path: &str,
) -> Result<Bytes, ClientError> {
    let mut out = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while out.len() < max {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let room = max - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(e)) => return Err(ClientError::from_reqwest(e, path)),
            None => break,
        }
    }
    Ok(out.freeze())
}

fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(address: &str, port: Option<u16>) -> Result<String, ClientError> {
        endpoint(&ClientConfig {
            address: address.into(),
            port,
            ..Default::default()
        })
        .map(|e| e.0)
    }

    #[test]
    fn addresses() {
        assert_eq!(
            base("http://127.0.0.1", Some(3000)).unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            base("https://api.example/", Some(443)).unwrap(),
            "https://api.example:443"
        );
        assert_eq!(base("http://h:8080", Some(3000)).unwrap(), "http://h:8080");
        assert_eq!(base("http://[::1]", Some(1)).unwrap(), "http://[::1]:1");
        assert_eq!(base("http://h", None).unwrap(), "http://h");
        let (b, s) = endpoint(&ClientConfig {
            address: "unix:///run/x.sock".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(b, "http://localhost");
        assert_eq!(s.unwrap(), std::path::Path::new("/run/x.sock"));
        for bad in [
            "127.0.0.1",
            "ftp://x",
            "unix://relative",
            "http://h/path",
            "http://",
        ] {
            assert!(
                matches!(base(bad, Some(1)), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn certificates_need_https() {
        let cfg = ClientConfig {
            ca_cert_file: Some("/nonexistent".into()),
            ..Default::default()
        };
        assert!(matches!(Client::new(cfg), Err(ClientError::Config(_))));
        let cfg = ClientConfig {
            address: "https://h".into(),
            ca_cert_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        match Client::new(cfg) {
            Err(ClientError::Config(m)) => assert!(m.contains("/nonexistent/ca.pem"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
