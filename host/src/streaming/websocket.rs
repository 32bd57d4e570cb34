//! The WebSocket transports, as kubelet's streaming server speaks them:
//! - exec/attach over `v5.channel.k8s.io` (and `v4.channel.k8s.io`): binary
//!   messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr,
//!   3 error, 4 resize); v5 adds 255 = close (`[255, 0]` is stdin's EOF). The
//!   server first sends an empty message on the lowest channel it writes, and
//!   ends with the `metav1.Status` on channel 3 and a close frame.
//! - port-forward tunnelled as `SPDY/3.1+portforward.k8s.io` (what
//!   `crictl port-forward --transport websocket` and kubectl 1.30+ send): the
//!   binary messages carry the bytes of a SPDY connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::backend::{BackendError, ExecIo, StreamBackend, TermSize};
use super::remotecommand::{Options, Session, idle_expired, run_to_exit, status_json};
use super::spdy::Conn;

pub const V5: &str = super::remotecommand::V5;
pub const V4: &str = super::remotecommand::V4;
/// Exec/attach subprotocols served over WebSocket, best first.
pub const EXEC_PROTOCOLS: &[&str] = &[V5, V4];
/// Port-forward as SPDY tunnelled in WebSocket binary messages.
pub const PORTFORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        })
    }
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    Message::Binary(b.freeze())
}

/// Serve one exec/attach session on an accepted WebSocket.
pub async fn serve_exec(
    ws: WebSocket,
    protocol: String,
    opts: Options,
    session: Session,
    backend: Arc<dyn StreamBackend>,
    idle_timeout: Duration,
) {
    let v5 = protocol == V5;
    let activity = Activity::new();
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let act = activity.clone();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() {
                return;
            }
            act.touch();
            if close {
                return;
            }
        }
    });
    // tell the client the session is up
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.send(framed(first, &[])).await;

    let (stdin_tx, stdin_rx) = if opts.stdin {
        let (t, r) = mpsc::channel::<Bytes>(16);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let (resize_tx, resize_rx) = if opts.tty {
        let (t, r) = mpsc::channel::<TermSize>(4);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let mut pumps = Vec::new();
    let mut output = |channel: u8| {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let out = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if out.send(framed(channel, &b)).await.is_err() {
                    while rx.recv().await.is_some() {}
                    return;
                }
            }
        }));
        tx
    };
    let stdout = opts.stdout.then(|| output(STDOUT));
    let stderr = (opts.stderr && !opts.tty).then(|| output(STDERR));
    let io = ExecIo {
        stdin: stdin_rx,
        stdout,
        stderr,
        resize: resize_rx,
    };

    let act = activity.clone();
    let reader = async move {
        let mut stdin_tx = stdin_tx;
        while let Some(Ok(m)) = source.next().await {
            act.touch();
            let b = match m {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match b.first() {
                Some(&STDIN) => {
                    if let Some(t) = &stdin_tx
                        && b.len() > 1
                    {
                        let _ = t.send(b.slice(1..)).await;
                    }
                }
                Some(&RESIZE) => {
                    if let (Some(t), Ok(size)) =
                        (&resize_tx, serde_json::from_slice::<TermSize>(&b[1..]))
                    {
                        let _ = t.send(size).await;
                    }
                }
                Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    };
    let idle = idle_expired(|| activity.idle_for(), idle_timeout);
    let run = run_to_exit(&session, backend.as_ref(), opts.tty, io, pumps);
    tokio::pin!(reader);
    let outcome = tokio::select! {
        r = run => Some(r),
        _ = &mut reader => None,
        _ = idle => Some(Err(BackendError::Failed(format!("session idle for {idle_timeout:?}")))),
    };
    match outcome {
        Some(r) => {
            let _ = out_tx.send(framed(ERROR, &status_json(&r))).await;
            let _ = out_tx
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
        }
        None => tracing::debug!("exec session: the client went away"),
    }
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Serve port-forwarding tunnelled over an accepted WebSocket.
pub async fn serve_portforward_tunnel(
    ws: WebSocket,
    sandbox_id: String,
    backend: Arc<dyn StreamBackend>,
    idle_timeout: Duration,
) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let conn = Conn::new(ours);
    let (mut r, mut w) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    let inbound = async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) if w.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = w.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    };
    let session = super::portforward::serve_spdy(conn, sandbox_id, backend, idle_timeout);
    let pipe = async move {
        tokio::join!(inbound, outbound);
    };
    tokio::join!(session, pipe);
}
