//! The client side of the exec extension (see [`crate::exec`]): `exec`,
//! `attach` and `port_forward` over a WebSocket, with the same address, TLS and
//! token rules as every other call of [`Client`].
//!
//! A server without the extension (upstream's) answers 404 at `/exec`; the
//! client then asks `GET /extensions` and, when `exec` is not there, answers
//! [`ClientError::Server`] with status 501 and a message naming the missing
//! extension ([`ClientError::is_unimplemented`]). Our API server answers the
//! same 501 when its plugin lacks the extension.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{Sink, SinkExt, Stream, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Client, ClientError};
use crate::exec::{
    AttachRequest, CLOSE_INTERNAL_ERROR, Channel, ExecRequest, ExitStatus, Frame,
    PortForwardRequest, StreamRequest, TermSize,
};
use crate::extensions::EXEC;
use crate::ws::{DialError, Ws};

/// Messages queued for the writer of a session.
const INPUT_QUEUE: usize = 16;

impl Client {
    /// `GET /exec` (extension `exec`): run a command in a container. Fails
    /// before anything runs on bad input (400), an unknown pod or container
    /// (404), or a server or plugin without the extension (501).
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecSession, ClientError> {
        Ok(ExecSession::new(self.open(req).await?))
    }

    /// `GET /attach` (extension `exec`): the streams of a container's main
    /// process, from now on.
    pub async fn attach(&self, req: &AttachRequest) -> Result<ExecSession, ClientError> {
        Ok(ExecSession::new(self.open(req).await?))
    }

    /// `GET /portforward` (extension `exec`): one TCP connection to a port of
    /// the pod, as a byte stream. A target that refuses the connection fails
    /// here; an error later is an `io::Error` of the stream with the peer's reason.
    pub async fn port_forward(
        &self,
        req: &PortForwardRequest,
    ) -> Result<PortForwardStream, ClientError> {
        Ok(PortForwardStream {
            ws: self.open(req).await?,
            pending: Bytes::new(),
            eof: false,
        })
    }

    /// Check `req` and open its WebSocket.
    async fn open<R: StreamRequest>(&self, req: &R) -> Result<Ws, ClientError> {
        req.validate()
            .map_err(|e| ClientError::Config(format!("{}: {e}", R::PATH)))?;
        self.open_ws(&format!("{}?{}", R::PATH, req.to_query()), R::PROTOCOL)
            .await
    }

    /// Open the WebSocket at `path_and_query`, authenticated like every call.
    async fn open_ws(
        &self,
        path_and_query: &str,
        protocol: Option<&str>,
    ) -> Result<Ws, ClientError> {
        let path = path_and_query.split('?').next().unwrap_or("");
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if let Some(tf) = &self.inner.token {
            // the token value is never logged nor put in an error
            let mut v = HeaderValue::from_str(&format!("Bearer {}", tf.token()?))
                .map_err(|_| ClientError::Config("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.push((http::header::AUTHORIZATION, v));
        }
        headers.push((
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("interlink-rs/", env!("CARGO_PKG_VERSION"))),
        ));
        let timeout = self.inner.connect_timeout + self.inner.request_timeout;
        match self
            .inner
            .dial
            .websocket(path_and_query, headers, protocol, timeout)
            .await
        {
            Ok((ws, chosen)) => {
                if let Some(p) = protocol
                    && chosen.as_deref() != Some(p)
                {
                    return Err(ClientError::Decode(format!(
                        "{path}: the server did not choose the WebSocket protocol {p} (it chose {chosen:?})"
                    )));
                }
                Ok(ws)
            }
            Err(DialError::Status(status, body)) => {
                if matches!(status, 404 | 405 | 400)
                    && let Ok(ext) = self.extensions().await
                    && !ext.has(EXEC)
                {
                    return Err(ClientError::Server {
                        status: 501,
                        message: format!(
                            "the interLink API server at {} has no {EXEC:?} extension (GET /extensions does not list it): \
                             exec, attach and port-forward need an interLink API server and plugin that have it",
                            self.inner.base
                        ),
                    });
                }
                Err(ClientError::from_response(status, &body))
            }
            Err(DialError::Unreachable(m)) => Err(ClientError::Unreachable(m)),
            Err(DialError::Timeout(m)) => Err(ClientError::Timeout(m)),
            Err(DialError::Config(m)) => Err(ClientError::Config(m)),
        }
    }
}

/// An exec or attach in progress: its input and output halves, usable from
/// separate tasks.
pub struct ExecSession {
    pub input: ExecInput,
    pub output: ExecOutput,
}

impl ExecSession {
    fn new(ws: Ws) -> ExecSession {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let writer = tokio::spawn(write_loop(sink, rx));
        ExecSession {
            input: ExecInput { tx },
            output: ExecOutput {
                stream,
                done: false,
                writer,
            },
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(m) = rx.recv().await {
        if sink.send(m).await.is_err() {
            break;
        }
    }
}

/// The sending half: stdin, its end, terminal sizes. Cheap to clone.
#[derive(Clone)]
pub struct ExecInput {
    tx: mpsc::Sender<Message>,
}

impl ExecInput {
    async fn frame(&self, f: Frame) -> Result<(), ClientError> {
        self.tx
            .send(Message::Binary(f.encode()))
            .await
            .map_err(|_| ClientError::Unreachable("the exec stream is closed".into()))
    }

    /// Bytes for the command's stdin (when the request asked for stdin).
    pub async fn stdin(&self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        self.frame(Frame::new(Channel::Stdin, data)).await
    }

    /// The end of stdin: the command reads EOF.
    pub async fn close_stdin(&self) -> Result<(), ClientError> {
        self.frame(Frame::close(Channel::Stdin)).await
    }

    /// End the session early (an extension of the v5 framing: a `Close`
    /// frame naming the status channel): the peer stops the command, then
    /// sends its status as usual, so the status tells it is gone. A peer that
    /// does not know this ignores it.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.frame(Frame::close(Channel::Status)).await
    }

    /// A new terminal size (with a tty).
    pub async fn resize(&self, size: TermSize) -> Result<(), ClientError> {
        self.frame(Frame::resize(size)).await
    }
}

/// What comes out of an exec or attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The last event: how it ended.
    Exit(ExitStatus),
}

/// The receiving half.
pub struct ExecOutput {
    stream: SplitStream<Ws>,
    done: bool,
    writer: JoinHandle<()>,
}

impl Drop for ExecOutput {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// All of an exec's output (see [`ExecOutput::collect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub status: ExitStatus,
    /// More output came than was kept.
    pub truncated: bool,
}

impl ExecOutput {
    /// The next event; `None` after [`ExecEvent::Exit`]. A stream that ends
    /// without an exit status is an error.
    pub async fn next(&mut self) -> Option<Result<ExecEvent, ClientError>> {
        if self.done {
            return None;
        }
        loop {
            let msg = match self.stream.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(ClientError::Unreachable(format!(
                        "the exec stream broke: {e}"
                    ))));
                }
                None => {
                    self.done = true;
                    return Some(Err(ClientError::Unreachable(
                        "the exec stream closed without an exit status".into(),
                    )));
                }
            };
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(c) => {
                    self.done = true;
                    let why = c.map(|c| c.reason.to_string()).unwrap_or_default();
                    return Some(Err(ClientError::Unreachable(format!(
                        "the exec stream closed without an exit status{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ))));
                }
                _ => continue,
            };
            let frame = match Frame::decode(&data) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!("ignoring an exec message: {e}");
                    continue;
                }
            };
            match frame.channel {
                Channel::Stdout => return Some(Ok(ExecEvent::Stdout(frame.data))),
                Channel::Stderr => return Some(Ok(ExecEvent::Stderr(frame.data))),
                Channel::Status => {
                    self.done = true;
                    return Some(
                        ExitStatus::from_json(&frame.data)
                            .map(ExecEvent::Exit)
                            .map_err(|e| ClientError::Decode(e.to_string())),
                    );
                }
                _ => continue,
            }
        }
    }

    /// Read to the end, keeping at most `max_bytes` of stdout and of stderr
    /// each (the rest is read and dropped).
    pub async fn collect(mut self, max_bytes: usize) -> Result<ExecOutcome, ClientError> {
        let (mut out, mut err) = (BytesMut::new(), BytesMut::new());
        let mut truncated = false;
        let mut keep = |buf: &mut BytesMut, b: &[u8]| {
            let room = max_bytes.saturating_sub(buf.len());
            truncated |= b.len() > room;
            buf.extend_from_slice(&b[..b.len().min(room)]);
        };
        while let Some(ev) = self.next().await {
            match ev? {
                ExecEvent::Stdout(b) => keep(&mut out, &b),
                ExecEvent::Stderr(b) => keep(&mut err, &b),
                ExecEvent::Exit(status) => {
                    return Ok(ExecOutcome {
                        stdout: out.freeze(),
                        stderr: err.freeze(),
                        status,
                        truncated,
                    });
                }
            }
        }
        Err(ClientError::Unreachable(
            "the exec stream closed without an exit status".into(),
        ))
    }
}

/// One forwarded TCP connection: the bytes of the pod's port, both ways.
/// Shutting down the write side closes the whole stream (WebSocket has no
/// half-close).
pub struct PortForwardStream {
    ws: Ws,
    pending: Bytes,
    eof: bool,
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(t))) => self.pending = Bytes::from(t.as_str().to_owned()),
                Some(Ok(Message::Close(c))) => {
                    self.eof = true;
                    if let Some(c) = c
                        && c.code == CloseCode::from(CLOSE_INTERNAL_ERROR)
                    {
                        return Poll::Ready(Err(io::Error::other(format!(
                            "port-forward failed: {}",
                            c.reason
                        ))));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.eof = true;
                    use tokio_tungstenite::tungstenite::Error as E;
                    if matches!(e, E::ConnectionClosed | E::AlreadyClosed) {
                        continue;
                    }
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e)));
                }
                None => self.eof = true,
            }
        }
    }
}

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(
                tokio_tungstenite::tungstenite::Error::ConnectionClosed
                | tokio_tungstenite::tungstenite::Error::AlreadyClosed,
            ) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_io(e))),
        }
    }
}
