//! The connection to the local CRI runtime (containerd, CRI-O): HTTP/2 over
//! its Unix socket, connected on first use and again after a failure (it may
//! start after us or restart at any time), calls bounded by the caller's own
//! deadline, and errors that name the local runtime.
//!
//! The client is hyper's own (no request queue task in between, as tonic's
//! `Channel` has): each forwarded call is sent from the task that serves it,
//! which keeps what forwarding adds small (bench `forward_latency`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::transport::Uri;
use tonic::{Request, Status};

use crate::config::LocalRuntimeSection;
use crate::proto::runtime::v1::image_service_client::ImageServiceClient;
use crate::proto::runtime::v1::runtime_service_client::RuntimeServiceClient;

type Connector =
    tower::util::BoxCloneSyncService<Uri, TokioIo<tokio::net::UnixStream>, std::io::Error>;
type Http = Client<Connector, tonic::body::Body>;

/// The HTTP/2 client under the gRPC clients, with each call bounded by its
/// `grpc-timeout` (what [`Request::set_timeout`] puts there).
#[derive(Clone)]
pub struct Transport {
    http: Http,
}

impl tower::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let call = tower::Service::call(&mut self.http, req);
        // what fails below gRPC (connecting, the connection) is Unavailable,
        // as tonic's own transport says
        let unavailable = |e: hyper_util::client::legacy::Error| -> Self::Error {
            Box::new(Status::unavailable(error_chain(&e)))
        };
        Box::pin(async move {
            match deadline {
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r.map_err(unavailable),
                    Err(_) => Err(Box::new(Status::deadline_exceeded(format!(
                        "no answer within {d:?}"
                    ))) as Self::Error),
                },
                None => call.await.map_err(unavailable),
            }
        })
    }
}

/// The local runtime's clients (cheap to clone: one shared connection).
#[derive(Clone)]
pub struct Local {
    pub endpoint: String,
    transport: Transport,
    default_timeout: Duration,
}

/// Responses up to this size come back from the local runtime (kubelet's own
/// limit for a CRI response).
const MAX_MSG: usize = 16 << 20;

impl Local {
    pub fn new(cfg: &LocalRuntimeSection) -> Local {
        let path: PathBuf = cfg.socket_path();
        let connect_timeout = cfg.connect_timeout;
        let connector: Connector =
            tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    let s =
                        tokio::time::timeout(connect_timeout, tokio::net::UnixStream::connect(p))
                            .await
                            .map_err(|_| {
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    format!("connecting took more than {connect_timeout:?}"),
                                )
                            })??;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }));
        let http = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(300))
            .build(connector);
        Local {
            endpoint: format!("unix://{}", cfg.socket_path().display()),
            transport: Transport { http },
            default_timeout: cfg.request_timeout,
        }
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Transport> {
        RuntimeServiceClient::with_origin(
            self.transport.clone(),
            Uri::from_static("http://localhost"),
        )
        .max_decoding_message_size(MAX_MSG)
        .max_encoding_message_size(MAX_MSG)
    }

    pub fn image(&self) -> ImageServiceClient<Transport> {
        ImageServiceClient::with_origin(
            self.transport.clone(),
            Uri::from_static("http://localhost"),
        )
        .max_decoding_message_size(MAX_MSG)
        .max_encoding_message_size(MAX_MSG)
    }

    /// The outgoing copy of `incoming`, carrying the caller's deadline (its
    /// `grpc-timeout`), or the configured bound when it set none.
    pub fn forward<T>(&self, incoming: Request<T>) -> Request<T> {
        let t = incoming
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .unwrap_or(self.default_timeout);
        let mut r = Request::new(incoming.into_inner());
        r.set_timeout(t);
        r
    }

    /// A request with a short bound, for calls the forwarder makes itself
    /// (status, lists it merges) where a slow local runtime must not hold up
    /// the answer about interLink's pods.
    pub fn quick<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(QUICK);
        r
    }

    /// Say which runtime failed when the failure is about reaching it.
    pub fn named(&self, s: Status) -> Status {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                if !s.message().contains(&self.endpoint) =>
            {
                Status::new(
                    s.code(),
                    format!("local runtime {}: {}", self.endpoint, error_text(&s)),
                )
            }
            _ => s,
        }
    }
}

/// Bound on the calls the forwarder makes on its own behalf.
pub const QUICK: Duration = Duration::from_secs(2);

/// An error with its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = c.source();
    }
    msg
}

/// A status's message with its transport cause (tonic puts "transport error"
/// in the message and the cause in the source chain).
fn error_text(s: &Status) -> String {
    let msg = s.message().to_string();
    match std::error::Error::source(s).map(error_chain) {
        Some(cause) if !msg.contains(&cause) => format!("{msg}: {cause}"),
        _ => msg,
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }
}
