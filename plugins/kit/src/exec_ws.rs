//! The plugin side of the exec extension (see [`interlink::exec`]): the kit
//! speaks the WebSocket and the `v5.channel.k8s.io` framing, a provider sees
//! only backend-neutral channels ([`ExecIo`]) or a byte stream ([`PortStream`]).
//!
//! A provider answers `exec`/`attach` in two steps: the call itself checks
//! the pod and container (its errors are HTTP answers: 404, 400, 501), and
//! returns an [`ExecRun`] that the kit runs once the WebSocket is open. The
//! exit code it returns is sent on the status channel just before the close;
//! an error becomes a `Failure` status with its message.
//!
//! Ending a session early: a client that closes the status channel (a
//! `Close` frame naming channel 3, as the host does at an `ExecSync` timeout)
//! asks for the command to stop; [`ExecIo::cancel`] fires, the run has
//! [`CANCEL_GRACE`] to stop what it started (then it is dropped), and the
//! status follows as usual, so the client knows the command is gone when it
//! reads it. A client that goes away without that is handled the same way,
//! without the status.
//!
//! `port_forward` answers a connected stream (a target that refuses is an
//! error before the upgrade); the kit then copies bytes both ways; a close on
//! either side ends both; a failure after the upgrade closes with code 1011
//! and the reason.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use interlink::exec::{CLOSE_INTERNAL_ERROR, Channel, ExitStatus, Frame, TermSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::PluginError;

/// The streams of one exec or attach, as a provider sees them.
pub struct ExecIo {
    /// Bytes for stdin. Closed at the end of stdin, at once when the request
    /// asked for no stdin.
    pub stdin: mpsc::Receiver<Bytes>,
    /// Terminal sizes, in the order the client sent them (with a tty).
    pub resize: mpsc::Receiver<TermSize>,
    /// Output; with a tty everything goes here.
    pub stdout: mpsc::Sender<Bytes>,
    pub stderr: mpsc::Sender<Bytes>,
    /// Fires when the client went away or closed the session: stop the
    /// command (and wait for it) and return.
    pub cancel: CancellationToken,
}

/// The exit code of a run, or why it failed.
pub type ExecResult = Result<i32, PluginError>;

/// What a provider's `exec`/`attach` answers: the run, started by the kit
/// with the session's streams once the client's WebSocket is open.
pub type ExecRun =
    Box<dyn FnOnce(ExecIo) -> Pin<Box<dyn Future<Output = ExecResult> + Send>> + Send>;

/// Build an [`ExecRun`] from an async closure.
pub fn exec_run<F, Fut>(f: F) -> ExecRun
where
    F: FnOnce(ExecIo) -> Fut + Send + 'static,
    Fut: Future<Output = ExecResult> + Send + 'static,
{
    Box::new(move |io| Box::pin(f(io)))
}

/// A connected byte stream to a pod's port.
pub trait PortIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortIo for T {}

/// What a provider's `port_forward` answers.
pub type PortStream = Box<dyn PortIo>;

/// Messages buffered per channel between the socket and the provider.
const QUEUE: usize = 16;

/// How long output still in flight is waited for after the run returned.
const DRAIN: Duration = Duration::from_secs(2);

/// How long a cancelled run has to stop what it started.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Answer the upgrade and run `run` on the socket.
pub(crate) fn serve_exec(upgrade: WebSocketUpgrade, stdin: bool, run: ExecRun) -> Response {
    upgrade
        .on_failed_upgrade(|e| tracing::warn!("exec: the WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| exec_session(socket, stdin, run))
}

async fn exec_session(socket: WebSocket, want_stdin: bool, run: ExecRun) {
    let (mut sink, mut stream) = socket.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(QUEUE);
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(QUEUE);
    let (err_tx, mut err_rx) = mpsc::channel::<Bytes>(QUEUE);
    let mut stdin_tx = want_stdin.then_some(stdin_tx);
    let cancel = CancellationToken::new();
    let reader_cancel = cancel.clone();
    // the client's messages: stdin, its end, sizes; ends when the client goes
    let reader = async move {
        while let Some(Ok(m)) = stream.next().await {
            let data = match m {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Ok(frame) = Frame::decode(&data) else {
                continue;
            };
            match frame.channel {
                Channel::Stdin => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(frame.data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                Channel::Close if frame.closed_channel() == Some(Channel::Stdin) => {
                    stdin_tx = None;
                }
                Channel::Close if frame.closed_channel() == Some(Channel::Status) => {
                    tracing::debug!("exec: the client ended the session; stopping the run");
                    reader_cancel.cancel();
                }
                Channel::Resize => match TermSize::from_json(&frame.data) {
                    Ok(size) => {
                        let _ = resize_tx.send(size).await;
                    }
                    Err(e) => tracing::debug!("exec: ignoring a resize: {e}"),
                },
                _ => {}
            }
        }
    };
    tokio::pin!(reader);
    let io = ExecIo {
        stdin: stdin_rx,
        resize: resize_rx,
        stdout: out_tx,
        stderr: err_tx,
        cancel: cancel.clone(),
    };
    let run = run(io);
    let stop = cancel.clone();
    // a cancelled run that does not stop in time is dropped
    let mut running = Box::pin(async move {
        tokio::select! {
            r = run => r,
            _ = async { stop.cancelled().await; tokio::time::sleep(CANCEL_GRACE).await } => {
                Err(PluginError::Unavailable(format!(
                    "the command did not stop within {CANCEL_GRACE:?} of the client's cancel"
                )))
            }
        }
    });
    let send = |ch: Channel, b: Bytes| Message::Binary(Frame::new(ch, b).encode());
    let result = loop {
        tokio::select! {
            Some(b) = out_rx.recv() => {
                if sink.send(send(Channel::Stdout, b)).await.is_err() {
                    return;
                }
            }
            Some(b) = err_rx.recv() => {
                if sink.send(send(Channel::Stderr, b)).await.is_err() {
                    return;
                }
            }
            r = &mut running => break r,
            _ = &mut reader => {
                tracing::debug!("exec: the client went away; stopping the run");
                cancel.cancel();
                // output is no longer wanted: keep the run from blocking on it
                out_rx.close();
                err_rx.close();
                let _ = (&mut running).await;
                drop(running);
                let _ = sink.send(Message::Close(None)).await;
                let _ = sink.close().await;
                return;
            }
        }
    };
    drop(running);
    // output the run produced before it returned, then the status
    let drained = async {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                m = out_rx.recv(), if out_open => match m {
                    Some(b) => if sink.send(send(Channel::Stdout, b)).await.is_err() { return false },
                    None => out_open = false,
                },
                m = err_rx.recv(), if err_open => match m {
                    Some(b) => if sink.send(send(Channel::Stderr, b)).await.is_err() { return false },
                    None => err_open = false,
                },
            }
        }
        true
    };
    if let Ok(false) = tokio::time::timeout(DRAIN, drained).await {
        return;
    }
    let status = match result {
        Ok(code) => ExitStatus::from_code(code),
        Err(e) => ExitStatus::Failure(e.to_string()),
    };
    let _ = sink
        .send(Message::Binary(Frame::status(&status).encode()))
        .await;
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

/// Answer the upgrade and copy bytes between the socket and `target`.
pub(crate) fn serve_port_forward(upgrade: WebSocketUpgrade, target: PortStream) -> Response {
    upgrade
        .on_failed_upgrade(|e| tracing::warn!("port-forward: the WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| port_session(socket, target))
}

async fn port_session(mut socket: WebSocket, target: PortStream) {
    let (mut rd, mut wr) = tokio::io::split(target);
    let mut buf = vec![0u8; 32 * 1024];
    let close = |code: u16, reason: String| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        }))
    };
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if let Err(e) = wr.write_all(&b).await {
                        let _ = socket.send(close(CLOSE_INTERNAL_ERROR, format!("writing to the port: {e}"))).await;
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if wr.write_all(t.as_str().as_bytes()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = wr.shutdown().await;
                    break;
                }
                Some(Ok(_)) => {}
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                Ok(n) => {
                    if socket.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = socket.send(close(CLOSE_INTERNAL_ERROR, format!("reading from the port: {e}"))).await;
                    break;
                }
            },
        }
    }
}
