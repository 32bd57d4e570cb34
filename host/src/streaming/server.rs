//! The streaming server: the URLs CRI `Exec`, `Attach` and `PortForward` answer
//! (`http://<addr>/exec/<token>`, `/attach/<token>`, `/portforward/<token>`)
//! and the HTTP/1.1 upgrades on them, to SPDY/3.1 (what kubelet and crictl send
//! by default) or WebSocket. Like kubelet's own streaming server, a token is
//! single-use and expires after a minute; sessions at once are bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;
use interlink::server::connections::{ConnectionLimits, Connections};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::backend::{ExecTarget, StreamBackend};
use super::remotecommand::{self, Options, Session};
use super::spdy::{self, Conn};
use super::{portforward, websocket};

/// How long a URL stays valid (as kubelet's streaming server).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Bound on URLs handed out and not used yet.
pub const MAX_PENDING: usize = 1000;

/// A session a URL was handed out for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Exec { target: ExecTarget, opts: Options },
    Attach { container_id: String, opts: Options },
    PortForward { sandbox_id: String },
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("too many streaming URLs waiting to be used ({MAX_PENDING}); try again shortly")]
    TooManyPending,
}

/// Settings of the streaming server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub address: SocketAddr,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    /// How long a URL stays valid ([`TOKEN_TTL`] in production).
    pub token_ttl: Duration,
}

/// A running streaming server.
pub struct Streaming {
    base_url: String,
    addr: SocketAddr,
    tokens: Mutex<HashMap<String, (Instant, Pending)>>,
    backend: Arc<dyn StreamBackend>,
    sessions: Arc<Semaphore>,
    idle_timeout: Duration,
    token_ttl: Duration,
}

impl Streaming {
    /// Bind `settings.address` and serve until `shutdown` resolves.
    pub async fn start(
        settings: Settings,
        backend: Arc<dyn StreamBackend>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Arc<Streaming>> {
        let listener = tokio::net::TcpListener::bind(settings.address).await?;
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let s = Arc::new(Streaming {
            base_url: format!("http://{host}"),
            addr,
            tokens: Mutex::new(HashMap::new()),
            backend,
            sessions: Arc::new(Semaphore::new(settings.max_sessions.max(1))),
            idle_timeout: settings.idle_timeout,
            token_ttl: settings.token_ttl,
        });
        let app = Router::new()
            .route("/{kind}/{token}", any(handle))
            .with_state(s.clone());
        // the API server's connection bounds: a request head within 10s, idle
        // connections closed, their number bounded (upgraded sessions leave
        // them and count against `max_sessions` instead)
        let conns = Connections::new(ConnectionLimits {
            max_connections: settings.max_sessions.max(1) + 64,
            ..Default::default()
        });
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                let slot = tokio::select! {
                    _ = &mut shutdown => break,
                    s = conns.slot() => s,
                };
                let accepted = tokio::select! {
                    _ = &mut shutdown => break,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok((sock, _)) => {
                        let _ = sock.set_nodelay(true);
                        conns.serve(slot, sock, app.clone());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "streaming server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            conns.shutdown();
        });
        tracing::info!(address = %addr, "streaming server listening");
        Ok(s)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend sessions run on (also what `ExecSync` uses).
    pub fn backend(&self) -> Arc<dyn StreamBackend> {
        self.backend.clone()
    }

    /// Hand out a single-use URL for `p`.
    pub fn url_for(&self, p: Pending) -> Result<String, StreamingError> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock().expect("tokens");
        tokens.retain(|_, (at, _)| now.duration_since(*at) < self.token_ttl);
        if tokens.len() >= MAX_PENDING {
            return Err(StreamingError::TooManyPending);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let url = format!("{}/{}/{token}", self.base_url, p.kind());
        tokens.insert(token, (now, p));
        Ok(url)
    }

    /// Take the session of `token` (once), if it is of `kind` and not expired.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut tokens = self.tokens.lock().expect("tokens");
        let (at, p) = tokens.remove(token)?;
        (at.elapsed() < self.token_ttl && p.kind() == kind).then_some(p)
    }
}

fn json_error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": msg }).to_string(),
    )
        .into_response()
}

fn upgrade_token(h: &HeaderMap) -> Option<String> {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// The client's protocols from all `name` headers (comma-separated values).
fn offered(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first of the client's protocols the server speaks.
fn negotiate(client: &[String], server: &'static [&'static str]) -> Option<&'static str> {
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
}

const PORTFORWARD_SPDY: &[&str] = &[portforward::PROTOCOL];
const PORTFORWARD_WEBSOCKET: &[&str] = &[websocket::PORTFORWARD_TUNNEL];

async fn handle(
    State(s): State<Arc<Streaming>>,
    Path((kind, token)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(pending) = s.take(&kind, &token) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown or expired streaming URL (URLs are single-use and valid for 1 minute)",
        );
    };
    let Ok(permit) = s.sessions.clone().try_acquire_owned() else {
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many streaming sessions at once; try again later",
        );
    };
    match upgrade_token(req.headers()).as_deref() {
        Some("websocket") => upgrade_websocket(s, pending, permit, req).await,
        Some(u) if u.eq_ignore_ascii_case(spdy::UPGRADE) => upgrade_spdy(s, pending, permit, req),
        _ => json_error(
            StatusCode::BAD_REQUEST,
            "this URL must be opened with an HTTP/1.1 upgrade to SPDY/3.1 or websocket",
        ),
    }
}

fn upgrade_spdy(
    s: Arc<Streaming>,
    pending: Pending,
    permit: OwnedSemaphorePermit,
    mut req: Request,
) -> Response {
    let server: &'static [&'static str] = match pending {
        Pending::PortForward { .. } => PORTFORWARD_SPDY,
        _ => remotecommand::SPDY_PROTOCOLS,
    };
    let client = offered(req.headers(), "x-stream-protocol-version");
    let Some(protocol) = negotiate(&client, server) else {
        let mut r = json_error(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts {server:?}"
            ),
        );
        for p in server {
            r.headers_mut().append(
                "x-accepted-stream-protocol-versions",
                HeaderValue::from_static(p),
            );
        }
        return r;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _permit = permit;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        let conn = Conn::new(TokioIo::new(upgraded));
        run_spdy(s, pending, protocol, conn).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, spdy::UPGRADE)
        .header("X-Stream-Protocol-Version", protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn run_spdy(s: Arc<Streaming>, pending: Pending, protocol: &str, conn: Conn) {
    let idle = s.idle_timeout;
    match pending {
        Pending::Exec { target, opts } => {
            remotecommand::serve_spdy(
                conn,
                protocol,
                opts,
                Session::Exec(target),
                s.backend.clone(),
                idle,
            )
            .await
        }
        Pending::Attach { container_id, opts } => {
            remotecommand::serve_spdy(
                conn,
                protocol,
                opts,
                Session::Attach { container_id },
                s.backend.clone(),
                idle,
            )
            .await
        }
        Pending::PortForward { sandbox_id } => {
            portforward::serve_spdy(conn, sandbox_id, s.backend.clone(), idle).await
        }
    }
}

async fn upgrade_websocket(
    s: Arc<Streaming>,
    pending: Pending,
    permit: OwnedSemaphorePermit,
    req: Request,
) -> Response {
    let server: &'static [&'static str] = match pending {
        Pending::PortForward { .. } => PORTFORWARD_WEBSOCKET,
        _ => websocket::EXEC_PROTOCOLS,
    };
    let client = offered(req.headers(), "sec-websocket-protocol");
    let Some(protocol) = negotiate(&client, server) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unable to upgrade: no supported websocket subprotocol: client offers {client:?}, server accepts {server:?}"
            ),
        );
    };
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let idle = s.idle_timeout;
    ws.protocols([protocol])
        .max_message_size(16 << 20)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            let backend = s.backend.clone();
            match pending {
                Pending::Exec { target, opts } => {
                    websocket::serve_exec(
                        socket,
                        protocol.to_string(),
                        opts,
                        Session::Exec(target),
                        backend,
                        idle,
                    )
                    .await
                }
                Pending::Attach { container_id, opts } => {
                    websocket::serve_exec(
                        socket,
                        protocol.to_string(),
                        opts,
                        Session::Attach { container_id },
                        backend,
                        idle,
                    )
                    .await
                }
                Pending::PortForward { sandbox_id } => {
                    websocket::serve_portforward_tunnel(socket, sandbox_id, backend, idle).await
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported_protocol() {
        let c = vec!["v5.channel.k8s.io".to_string(), "v4.channel.k8s.io".into()];
        assert_eq!(
            negotiate(&c, remotecommand::SPDY_PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&c[1..], remotecommand::SPDY_PROTOCOLS),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&c, websocket::EXEC_PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&["v1".into()], remotecommand::SPDY_PROTOCOLS),
            None
        );
        let mut h = HeaderMap::new();
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            "x-stream-protocol-version",
            HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"),
        );
        assert_eq!(
            offered(&h, "x-stream-protocol-version"),
            vec![
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
    }
}
