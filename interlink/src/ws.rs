//! Opening a WebSocket (RFC 6455) to a peer over TCP, TLS or a Unix socket:
//! what the client of the exec extension and the API server's relay to its
//! plugin share. The connection is made first, the WebSocket handshake then
//! runs over it (so a Unix socket needs no URL of its own).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::error_chain::chain;

/// A connected byte stream.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket.
pub(crate) type Ws = WebSocketStream<Box<dyn Io>>;

/// Where to connect.
#[derive(Clone)]
pub(crate) enum Dial {
    Tcp {
        /// `host:port` (an IPv6 host in brackets).
        addr: String,
        /// The host name for `Host:` and for TLS.
        host: String,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    Unix(PathBuf),
}

/// Why the WebSocket could not be opened.
#[derive(Debug)]
pub(crate) enum DialError {
    /// The peer cannot be reached (connect, TLS, reset).
    Unreachable(String),
    /// The connection or the handshake took longer than allowed.
    Timeout(String),
    /// The peer answered an HTTP status instead of switching protocols.
    Status(u16, Vec<u8>),
    /// The request cannot be built.
    Config(String),
}

impl Dial {
    /// From a base URL (`http://h:p`, `https://h:p`); `tls` for https.
    pub(crate) fn from_url(
        base: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Dial, String> {
        let url = reqwest::Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("{base:?} has no host"))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{base:?} has no port"))?;
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls = if url.scheme() == "https" { tls } else { None };
        Ok(Dial::Tcp { addr, host, tls })
    }

    async fn stream(&self) -> Result<Box<dyn Io>, DialError> {
        let unreachable = |what: &str, e: &(dyn std::error::Error + 'static)| {
            DialError::Unreachable(format!("{what}: {}", chain(e)))
        };
        match self {
            Dial::Unix(p) => tokio::net::UnixStream::connect(p)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>)
                .map_err(|e| unreachable(&format!("unix://{}", p.display()), &e)),
            Dial::Tcp { addr, host, tls } => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| unreachable(addr, &e))?;
                let _ = tcp.set_nodelay(true);
                let Some(tls) = tls else {
                    return Ok(Box::new(tcp));
                };
                let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                    .map_err(|e| DialError::Config(format!("TLS server name {host:?}: {e}")))?
                    .to_owned();
                let s = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable(&format!("TLS to {addr}"), &e))?;
                Ok(Box::new(s))
            }
        }
    }

    fn host(&self) -> &str {
        match self {
            Dial::Tcp { host, .. } => host,
            Dial::Unix(_) => "localhost",
        }
    }

    /// Connect and upgrade `GET path_and_query` to a WebSocket, with these
    /// headers and, when given, this subprotocol (which the peer must choose).
    /// The whole takes at most `timeout`.
    pub(crate) async fn websocket(
        &self,
        path_and_query: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        protocol: Option<&str>,
        timeout: Duration,
    ) -> Result<(Ws, Option<String>), DialError> {
        let host = self.host();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let url = format!("ws://{host}{path_and_query}");
        let mut req = url
            .into_client_request()
            .map_err(|e| DialError::Config(format!("{path_and_query}: {e}")))?;
        for (k, v) in headers {
            req.headers_mut().insert(k, v);
        }
        if let Some(p) = protocol {
            req.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(p).map_err(|e| DialError::Config(e.to_string()))?,
            );
        }
        let work = async {
            let stream = self.stream().await?;
            match tokio_tungstenite::client_async(req, stream).await {
                Ok((ws, resp)) => {
                    let chosen = resp
                        .headers()
                        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    Ok((ws, chosen))
                }
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(DialError::Status(
                    resp.status().as_u16(),
                    resp.body().clone().unwrap_or_default(),
                )),
                Err(e) => Err(DialError::Unreachable(format!(
                    "WebSocket handshake at {path_and_query}: {}",
                    chain(&e)
                ))),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Timeout(format!(
                "opening the WebSocket at {} took longer than {timeout:?}",
                path_and_query.split('?').next().unwrap_or("")
            ))),
        }
    }
}
