//! The CRI listener: a Unix socket (mode 0660, a stale one replaced) serving
//! `RuntimeService` and `ImageService` over gRPC, and, beside it on the same
//! socket, plain HTTP/1.1 `/healthz` and `/metrics` (what troubleshooting runs:
//! `curl --unix-socket /var/run/interlink/cri.sock http://localhost/healthz`).
//! Each connection's first bytes tell the two apart: gRPC is HTTP/2, whose
//! connection preface starts with `PRI `.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use crate::cri::Cri;
use crate::proto::runtime::v1::image_service_server::ImageServiceServer;
use crate::proto::runtime::v1::runtime_service_server::RuntimeServiceServer;
use crate::runtime::Runtime;

/// Bind `path`: create its directory, replace a stale socket (refuse a live one).
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// A connection whose first bytes were read to pick the protocol; they are
/// replayed to the reader.
pub struct Sniffed {
    head: Vec<u8>,
    pos: usize,
    inner: UnixStream,
}

impl tonic::transport::server::Connected for Sniffed {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Sniffed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.head.len() {
            let n = (me.head.len() - me.pos).min(buf.remaining());
            buf.put_slice(&me.head[me.pos..me.pos + n]);
            me.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How long a new connection may take to send its first bytes.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on an HTTP/1.1 request head.
const MAX_HTTP_HEAD: usize = 8 * 1024;

/// Read up to 4 bytes: `PRI ` is gRPC (HTTP/2), anything else HTTP/1.1.
async fn sniff(mut s: UnixStream) -> std::io::Result<(bool, Sniffed)> {
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while head.len() < 4 && b"PRI ".starts_with(&head) {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let grpc = head.starts_with(b"PRI ");
    Ok((
        grpc,
        Sniffed {
            head,
            pos: 0,
            inner: s,
        },
    ))
}

/// Answer one HTTP/1.1 request (`/healthz`, `/metrics`) and close.
async fn http1(rt: &Runtime, mut c: Sniffed) -> std::io::Result<()> {
    let mut head = std::mem::take(&mut c.head);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HTTP_HEAD {
            return reply(&mut c.inner, 431, "text/plain", "request head too large\n").await;
        }
        let n = c.inner.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return reply(&mut c.inner, 405, "text/plain", "method not allowed\n").await;
    }
    match path {
        "/healthz" => match rt.runtime_ready() {
            Ok(()) => reply(&mut c.inner, 200, "text/plain", "ok").await,
            Err(why) => reply(&mut c.inner, 503, "text/plain", &why.to_string()).await,
        },
        "/metrics" => {
            rt.refresh_gauges();
            reply(
                &mut c.inner,
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &rt.metrics.encode(),
            )
            .await
        }
        _ => {
            reply(
                &mut c.inner,
                404,
                "text/plain",
                "not found: this socket serves CRI gRPC, /healthz and /metrics\n",
            )
            .await
        }
    }
}

async fn reply(s: &mut UnixStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await
}

/// Serve both CRI services of `svc` on the accepted connections.
async fn serve_services<R, I>(
    mut builder: tonic::transport::Server,
    runtime: R,
    images: I,
    incoming: tokio_stream::wrappers::ReceiverStream<std::io::Result<Sniffed>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    max_msg: usize,
) -> Result<(), tonic::transport::Error>
where
    R: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    R::Future: Send + 'static,
    I: crate::proto::runtime::v1::image_service_server::ImageService,
{
    builder
        .add_service(runtime)
        .add_service(ImageServiceServer::new(images).max_decoding_message_size(max_msg))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serve CRI (and HTTP/1.1 health) on `listener` until `shutdown` resolves.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Sniffed>>(64);
    let (stop_accept, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let accept_rt = rt.clone();
    let accept = tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = &mut stopped => return,
                r = listener.accept() => r,
            };
            let s = match s {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a CRI connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            let rt = accept_rt.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(SNIFF_TIMEOUT, sniff(s)).await {
                    Ok(Ok((true, c))) => {
                        let _ = tx.send(Ok(c)).await;
                    }
                    Ok(Ok((false, c))) => {
                        if let Ok(Err(e)) = tokio::time::timeout(SNIFF_TIMEOUT, http1(&rt, c)).await
                        {
                            tracing::debug!(error = %e, "HTTP/1.1 request on the CRI socket failed");
                        }
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "CRI connection closed early"),
                    Err(_) => tracing::debug!("CRI connection sent nothing; closed"),
                }
            });
        }
    });
    let local = rt
        .cfg
        .local_runtime
        .as_ref()
        .map(crate::forward::local::Local::new);
    let cri = Cri { rt };
    const MAX_MSG: usize = 16 << 20;
    const MAX_ENCODED: usize = 64 << 20;
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let builder = tonic::transport::Server::builder();
    let r = match local {
        // beside a local runtime: every call is routed (crate::forward)
        Some(local) => {
            tracing::info!(local = %local.endpoint, handler = %cri.rt.cfg.cri.runtime_handler,
                "forwarding pods of other runtime handlers to the local runtime");
            let fwd = crate::forward::Forwarder::new(cri, local);
            let runtime = RuntimeServiceServer::new(fwd.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_ENCODED);
            serve_services(builder, runtime, fwd, incoming, shutdown, MAX_MSG).await
        }
        // every container is ours: ListContainers from the encoded entries kept
        None => {
            let images = cri.clone();
            let runtime = crate::cri::list_wire::RuntimeRoutes::new(cri, MAX_MSG, MAX_ENCODED);
            serve_services(builder, runtime, images, incoming, shutdown, MAX_MSG).await
        }
    };
    let _ = stop_accept.send(());
    let _ = accept.await;
    r
}
