//! The remotecommand protocols (`v4`/`v3`/`v2.channel.k8s.io`) over SPDY, as
//! kubelet's streaming server serves them to client-go: the client opens one
//! stream per channel, typed by its `streamType` header (`error`, `stdin`,
//! `stdout`, `stderr`, `resize`); the server runs the command once all expected
//! streams are there, half-closes stdout/stderr when the output ends, writes the
//! outcome on the error stream (v4: a `metav1.Status` JSON; v2/v3: the error
//! text, nothing on success) and ends the connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::backend::{BackendError, ExecIo, ExecTarget, StreamBackend, TermSize};
use super::spdy::{Conn, Stream, StreamWriter};

/// v5 over SPDY is v4 (SPDY half-closes stdin itself); client-go offers it first.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
/// What this server speaks over SPDY, best first.
pub const SPDY_PROTOCOLS: &[&str] = &[V5, V4, V3, V2];

/// How long the client may take to open all its streams (kubelet's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks of output buffered between the backend and the connection.
const OUTPUT_BUFFER: usize = 16;

/// Which streams the session has, from the CRI request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What runs: a command, or an attach to the container's main process.
#[derive(Debug, Clone, PartialEq)]
pub enum Session {
    Exec(ExecTarget),
    Attach { container_id: String },
}

impl Session {
    pub async fn run(
        &self,
        backend: &dyn StreamBackend,
        tty: bool,
        io: ExecIo,
    ) -> Result<i32, BackendError> {
        match self {
            Session::Exec(t) => backend.exec(t.clone(), io).await,
            Session::Attach { container_id } => backend.attach(container_id, tty, io).await,
        }
    }
}

/// The v4/v5 error-stream message: a `metav1.Status`.
pub fn status_json(r: &Result<i32, BackendError>) -> Vec<u8> {
    let v = match r {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": e.to_string(),
            "reason": "InternalError",
            "code": 500,
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The v1-v3 error-stream message: the error's text, nothing on success.
pub fn status_text(r: &Result<i32, BackendError>) -> Option<Vec<u8>> {
    match r {
        Ok(0) => None,
        Ok(code) => {
            Some(format!("command terminated with non-zero exit code: {code}").into_bytes())
        }
        Err(e) => Some(e.to_string().into_bytes()),
    }
}

/// Parse the resize stream's JSON objects (one after another) into sizes.
pub fn spawn_resize_reader(mut rx: mpsc::Receiver<Bytes>) -> mpsc::Receiver<TermSize> {
    let (tx, out) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            buf.extend_from_slice(&chunk);
            if buf.len() > 64 * 1024 {
                tracing::debug!("resize stream: oversized message dropped");
                buf.clear();
            }
            let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
            let mut used = 0;
            loop {
                match de.next() {
                    Some(Ok(size)) => {
                        used = de.byte_offset();
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "resize stream: bad message dropped");
                        used = buf.len();
                        break;
                    }
                    None => {
                        used = de.byte_offset();
                        break;
                    }
                }
            }
            buf.drain(..used);
        }
    });
    out
}

/// Resolves once `idle_for()` (time since the last traffic) reaches `timeout`.
pub async fn idle_expired(idle_for: impl Fn() -> Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(timeout.min(Duration::from_secs(30))).await;
        if idle_for() >= timeout {
            return;
        }
    }
}

/// Run `session` on `backend`, then wait for the output `pumps` to drain: all
/// output is delivered before the outcome.
pub async fn run_to_exit(
    session: &Session,
    backend: &dyn StreamBackend,
    tty: bool,
    io: ExecIo,
    pumps: Vec<tokio::task::JoinHandle<()>>,
) -> Result<i32, BackendError> {
    let r = session.run(backend, tty, io).await;
    for h in pumps {
        let _ = h.await;
    }
    r
}

/// Copy what the backend writes to `w`, then half-close `w`.
pub fn spawn_output_pump(w: StreamWriter) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_BUFFER);
    let h = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if w.write(b).await.is_err() {
                // the client is gone: keep draining so the backend never blocks
                while rx.recv().await.is_some() {}
                return;
            }
        }
        w.close().await;
    });
    (tx, h)
}

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
    other: Vec<Stream>,
}

impl Streams {
    fn complete(&self, o: &Options, resize: bool) -> bool {
        self.error.is_some()
            && (!o.stdin || self.stdin.is_some())
            && (!o.stdout || self.stdout.is_some())
            && (!o.stderr || o.tty || self.stderr.is_some())
            && (!resize || self.resize.is_some())
    }
}

/// Serve one exec/attach session on an upgraded SPDY connection.
pub async fn serve_spdy(
    mut conn: Conn,
    protocol: &str,
    opts: Options,
    session: Session,
    backend: Arc<dyn StreamBackend>,
    idle_timeout: Duration,
) {
    let v4 = protocol == V4 || protocol == V5;
    let wants_resize = opts.tty && protocol != V2;
    let mut s = Streams::default();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !s.complete(&opts, wants_resize) {
        let st = tokio::select! {
            st = conn.accept() => st,
            _ = &mut deadline => {
                tracing::debug!("exec session: streams not opened in time");
                break;
            }
        };
        let Some(st) = st else { break };
        let slot = match st.header("streamtype").unwrap_or("") {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            _ => {
                s.other.push(st);
                continue;
            }
        };
        if slot.is_some() {
            s.other.push(st);
        } else {
            *slot = Some(st);
        }
    }
    if !s.complete(&opts, wants_resize) {
        if let Some(e) = &s.error {
            let r = Err(BackendError::Failed(
                "timed out waiting for the client to create streams".into(),
            ));
            let msg = if v4 {
                Some(status_json(&r))
            } else {
                status_text(&r)
            };
            if let Some(m) = msg {
                let _ = e.tx.write(Bytes::from(m)).await;
            }
            e.tx.close().await;
        }
        conn.close().await;
        return;
    }

    let mut writers: Vec<StreamWriter> = Vec::new();
    let mut pumps = Vec::new();
    let stdin = s.stdin.take().map(|st| {
        writers.push(st.tx.clone());
        st.rx
    });
    let stdout = s.stdout.take().map(|st| {
        let (tx, h) = spawn_output_pump(st.tx);
        pumps.push(h);
        tx
    });
    let stderr = if opts.tty {
        None
    } else {
        s.stderr.take().map(|st| {
            let (tx, h) = spawn_output_pump(st.tx);
            pumps.push(h);
            tx
        })
    };
    let resize = s.resize.take().map(|st| {
        writers.push(st.tx.clone());
        spawn_resize_reader(st.rx)
    });
    let error = s.error.take().expect("complete");
    let io = ExecIo {
        stdin,
        stdout,
        stderr,
        resize,
    };

    let mut gone = conn.gone();
    let idle = idle_expired(|| conn.idle_for(), idle_timeout);
    let run = run_to_exit(&session, backend.as_ref(), opts.tty, io, pumps);
    let outcome = tokio::select! {
        r = run => Some(r),
        _ = gone.wait_for(|g| *g) => None,
        _ = idle => {
            tracing::info!("exec session closed after {idle_timeout:?} idle");
            Some(Err(BackendError::Failed(format!("session idle for {idle_timeout:?}"))))
        }
    };
    match outcome {
        Some(r) => {
            if let Err(e) = &r {
                tracing::debug!(error = %e, "exec session failed");
            }
            let msg = if v4 {
                Some(status_json(&r))
            } else {
                status_text(&r)
            };
            if let Some(m) = msg {
                let _ = error.tx.write(Bytes::from(m)).await;
            }
            error.tx.close().await;
            for w in writers.iter().chain(s.other.iter().map(|o| &o.tx)) {
                w.close().await;
            }
        }
        None => tracing::debug!("exec session: the client went away"),
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_what_client_go_decodes() {
        let ok: serde_json::Value = serde_json::from_slice(&status_json(&Ok(0))).unwrap();
        assert_eq!(ok["status"], "Success");
        let f: serde_json::Value = serde_json::from_slice(&status_json(&Ok(3))).unwrap();
        assert_eq!(f["status"], "Failure");
        assert_eq!(f["reason"], "NonZeroExitCode");
        assert_eq!(f["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(f["details"]["causes"][0]["message"], "3");
        let e: serde_json::Value =
            serde_json::from_slice(&status_json(&Err(BackendError::Failed("boom".into()))))
                .unwrap();
        assert_eq!(e["message"], "boom");
        assert_eq!(status_text(&Ok(0)), None);
        assert_eq!(
            status_text(&Ok(2)).unwrap(),
            b"command terminated with non-zero exit code: 2"
        );
    }

    #[tokio::test]
    async fn resize_messages_split_across_chunks_are_parsed() {
        let (tx, rx) = mpsc::channel(8);
        let mut sizes = spawn_resize_reader(rx);
        tx.send(Bytes::from_static(b"{\"Width\":80,\"He"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(
            b"ight\":24}\n{\"Width\":100,\"Height\":50}\n",
        ))
        .await
        .unwrap();
        assert_eq!(
            sizes.recv().await,
            Some(TermSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            sizes.recv().await,
            Some(TermSize {
                width: 100,
                height: 50
            })
        );
        drop(tx);
        assert_eq!(sizes.recv().await, None);
    }
}
