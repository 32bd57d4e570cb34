//! The connection to the local CRI runtime (containerd, CRI-O): one lazily
//! (re)connecting gRPC channel over its Unix socket, calls bounded by the
//! caller's own deadline, and errors that name the local runtime.

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

use crate::config::LocalRuntimeSection;
use crate::proto::runtime::v1::image_service_client::ImageServiceClient;
use crate::proto::runtime::v1::runtime_service_client::RuntimeServiceClient;

/// The local runtime's clients (cheap to clone: one shared channel).
#[derive(Clone)]
pub struct Local {
    pub endpoint: String,
    channel: Channel,
    default_timeout: Duration,
}

/// Responses up to this size come back from the local runtime (kubelet's own
/// limit for a CRI response).
const MAX_MSG: usize = 16 << 20;

impl Local {
    /// A channel that connects on first use and again after a failure: the
    /// local runtime may start after us or restart at any time.
    pub fn new(cfg: &LocalRuntimeSection) -> Local {
        let path: PathBuf = cfg.socket_path();
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(cfg.connect_timeout)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }));
        Local {
            endpoint: format!("unix://{}", cfg.socket_path().display()),
            channel,
            default_timeout: cfg.request_timeout,
        }
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MSG)
            .max_encoding_message_size(MAX_MSG)
    }

    pub fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
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

/// A status's message with its transport cause (tonic puts "transport error"
/// in the message and the cause in the source chain).
fn error_text(s: &Status) -> String {
    let mut msg = s.message().to_string();
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        let t = e.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = e.source();
    }
    msg
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
