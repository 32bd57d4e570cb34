//! The host's streaming server (CRI `Exec`, `Attach`, `PortForward`, `ExecSync`)
//! over real TCP with the protocols kubelet and crictl speak: SPDY/3.1 with
//! `v4.channel.k8s.io` and `portforward.k8s.io` (through an independent test
//! client, `spdy_client`), WebSocket `v5.channel.k8s.io` and port-forward
//! tunnelled in WebSocket (tokio-tungstenite).
//!
//! The protocol tests run the streaming server alone on `LocalProcessDouble`, a
//! test double of the streaming backend that runs the command as a local
//! process (and connects to ports on 127.0.0.1), so every stream and failure can
//! be driven; `cri_exec_sync_exec_and_port_forward_through_...` runs the real
//! binaries (host, API server, local plugin) through interLink's exec extension.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use interlink_cri::streaming::backend::{BoxFuture, PortStream};
use interlink_cri::streaming::remotecommand::Options;
use interlink_cri::streaming::{
    BackendError, ExecIo, ExecTarget, Pending, Settings, StreamBackend, Streaming,
};
use interlink_test_harness::cri::*;
use interlink_test_harness::spdy_client::{self, Collected, Got, SpdyClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const T: Duration = Duration::from_secs(20);

/// Test double of the streaming backend (the interLink exec extension cannot
/// run here yet): exec runs `cmd` as a local process with piped streams; with a
/// tty it echoes stdin and reports each resize as `size WxH`; attach echoes
/// stdin; port-forward connects to the port on 127.0.0.1 through a buffer that
/// sends only on flush. Counts live sessions.
#[derive(Default)]
struct LocalProcessDouble {
    live: Arc<AtomicUsize>,
}

struct LiveGuard(Arc<AtomicUsize>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn echo_tty(io: ExecIo) -> Result<i32, BackendError> {
    let out = io.stdout.expect("stdout");
    let mut stdin = io.stdin;
    let mut resize = io.resize;
    loop {
        tokio::select! {
            b = async { match &mut stdin { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                match b {
                    // ^D ends it, as a shell's terminal would (after the
                    // resizes already sent, which travel on another stream)
                    Some(b) if b.contains(&4) => {
                        if let Some(r) = &mut resize {
                            while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(200), r.recv()).await {
                                let _ = out.send(Bytes::from(format!("size {}x{}\n", s.width, s.height))).await;
                            }
                        }
                        return Ok(0);
                    }
                    Some(b) => { let _ = out.send(b).await; }
                    None => return Ok(0),
                }
            }
            r = async { match &mut resize { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                match r {
                    Some(s) => { let _ = out.send(Bytes::from(format!("size {}x{}\n", s.width, s.height))).await; }
                    None => resize = None,
                }
            }
        }
    }
}

impl StreamBackend for LocalProcessDouble {
    fn exec(&self, t: ExecTarget, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>> {
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        Box::pin(async move {
            let _guard = guard;
            if t.tty {
                return echo_tty(io).await;
            }
            let mut child = tokio::process::Command::new(&t.cmd[0])
                .args(&t.cmd[1..])
                .stdin(if io.stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| BackendError::Failed(format!("{:?}: {e}", t.cmd[0])))?;
            let mut cin = child.stdin.take();
            let mut cout = child.stdout.take().expect("stdout");
            let mut cerr = child.stderr.take().expect("stderr");
            let stdin = async move {
                if let (Some(mut rx), Some(w)) = (io.stdin, cin.as_mut()) {
                    while let Some(b) = rx.recv().await {
                        if w.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                }
                drop(cin);
            };
            async fn pump(
                mut r: impl tokio::io::AsyncRead + Unpin,
                tx: Option<mpsc::Sender<Bytes>>,
            ) {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(Bytes::copy_from_slice(&buf[..n])).await;
                    }
                }
            }
            tokio::spawn(stdin);
            let (_, _, st) = tokio::join!(
                pump(&mut cout, io.stdout),
                pump(&mut cerr, io.stderr),
                child.wait()
            );
            st.map(|s| s.code().unwrap_or(128))
                .map_err(|e| BackendError::Failed(e.to_string()))
        })
    }

    fn attach(&self, _c: &str, _tty: bool, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>> {
        Box::pin(echo_tty(io))
    }

    fn port_forward(
        &self,
        _s: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn PortStream>, BackendError>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| BackendError::Failed(format!("connect to port {port}: {e}")))?;
            // buffered like a message-based stream (the exec extension's
            // WebSocket): bytes leave only when the server flushes
            Ok(Box::new(tokio::io::BufWriter::new(s)) as Box<dyn PortStream>)
        })
    }
}

async fn server(max_sessions: usize, token_ttl: Duration) -> (Arc<Streaming>, Arc<AtomicUsize>) {
    server_idle(max_sessions, token_ttl, Duration::from_secs(60)).await
}

async fn server_idle(
    max_sessions: usize,
    token_ttl: Duration,
    idle_timeout: Duration,
) -> (Arc<Streaming>, Arc<AtomicUsize>) {
    let double = LocalProcessDouble::default();
    let live = double.live.clone();
    let s = Streaming::start(
        Settings {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_sessions,
            idle_timeout,
            token_ttl,
        },
        Arc::new(double),
        std::future::pending(),
    )
    .await
    .expect("streaming server");
    (s, live)
}

fn exec(s: &Streaming, cmd: &[&str], opts: Options) -> String {
    s.url_for(Pending::Exec {
        target: ExecTarget {
            container_id: "c1".into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: opts.tty,
            timeout: None,
        },
        opts,
    })
    .expect("url")
}

const PLAIN: Options = Options {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

async fn spdy(url: &str, protocols: &[&str]) -> SpdyClient {
    spdy_client::connect(url, protocols)
        .await
        .expect("connect")
        .unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
}

fn status(c: &Collected, error_id: u32) -> serde_json::Value {
    serde_json::from_str(&c.text(error_id))
        .unwrap_or_else(|e| panic!("error stream {:?}: {e}", c.text(error_id)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_delivers_stdout_stderr_and_the_exit_code() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let url = exec(&s, &["sh", "-c", "echo out; echo err >&2; exit 3"], PLAIN);
    let mut c = spdy(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"]).await;
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let [e, o, r] = c.open_typed(&["error", "stdout", "stderr"]).await.unwrap()[..] else {
        unreachable!()
    };
    let got = c.drain(T).await.unwrap();
    assert_eq!(got.replies, vec![e, o, r], "each stream is accepted");
    assert_eq!(got.text(o), "out\n");
    assert_eq!(got.text(r), "err\n");
    let st = status(&got, e);
    assert_eq!(st["status"], "Failure");
    assert_eq!(st["reason"], "NonZeroExitCode");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");
    for id in [e, o, r] {
        assert!(got.fin.contains(&id), "stream {id} half-closed: {got:?}");
    }
    assert!(got.goaway);

    // success: a Status Success; v3 gets nothing on its error stream
    let url = exec(&s, &["true"], PLAIN);
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let [e, _, _] = c.open_typed(&["error", "stdout", "stderr"]).await.unwrap()[..] else {
        unreachable!()
    };
    assert_eq!(status(&c.drain(T).await.unwrap(), e)["status"], "Success");
    let url = exec(&s, &["sh", "-c", "exit 4"], PLAIN);
    let mut c = spdy(&url, &["v3.channel.k8s.io"]).await;
    assert_eq!(c.protocol, "v3.channel.k8s.io");
    let [e, _, _] = c.open_typed(&["error", "stdout", "stderr"]).await.unwrap()[..] else {
        unreachable!()
    };
    assert_eq!(
        c.drain(T).await.unwrap().text(e),
        "command terminated with non-zero exit code: 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_passes_stdin_and_its_eof() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let url = exec(
        &s,
        &["sh", "-c", "tr a-z A-Z; echo done"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let [e, i, o, _] = c
        .open_typed(&["error", "stdin", "stdout", "stderr"])
        .await
        .unwrap()[..]
    else {
        unreachable!()
    };
    c.ping(1).await.unwrap();
    c.send(i, b"hello ", false).await.unwrap();
    c.send(i, b"spdy\n", true).await.unwrap();
    let mut got = Collected::default();
    let mut pong = false;
    tokio::time::timeout(T, async {
        while let Some(f) = c.next().await.unwrap() {
            pong |= f == Got::Ping(1);
            got.absorb(f);
        }
    })
    .await
    .unwrap();
    assert!(pong, "the server echoes the client's ping");
    assert_eq!(got.text(o), "HELLO SPDY\ndone\n");
    assert_eq!(status(&got, e)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_with_a_tty_carries_resizes() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let tty = Options {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let url = exec(&s, &["sh"], tty);
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let [e, i, o, r] = c
        .open_typed(&["error", "stdin", "stdout", "resize"])
        .await
        .unwrap()[..]
    else {
        unreachable!()
    };
    c.send(r, b"{\"Width\":100,\"Height\":50}\n", false)
        .await
        .unwrap();
    let mut got = Collected::default();
    c.until(&mut got, T, |got| got.text(o).contains("size 100x50"))
        .await
        .expect("resize reported");
    c.send(r, b"{\"Width\":120,\"Height\":40}\n", false)
        .await
        .unwrap();
    c.send(i, b"typed", false).await.unwrap();
    c.until(&mut got, T, |got| got.text(o).contains("typed"))
        .await
        .expect("stdin echoed");
    c.send(i, b"", true).await.unwrap();
    let rest = c.drain(T).await.unwrap();
    got.data.entry(o).or_default().extend(rest.text(o).bytes());
    assert_eq!(got.text(o), "size 100x50\nsize 120x40\ntyped");
    assert_eq!(status(&rest, e)["status"], "Success");
}

async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let reply = format!("echo:{}", String::from_utf8_lossy(&buf[..n]));
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_port_forward_carries_bytes_both_ways_and_reports_errors() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let (port, echo) = echo_server().await;
    let url = s
        .url_for(Pending::PortForward {
            sandbox_id: "p1".into(),
        })
        .unwrap();
    let mut c = spdy(&url, &["portforward.k8s.io"]).await;
    assert_eq!(c.protocol, "portforward.k8s.io");
    let p = port.to_string();
    let (e, d) = c.open_forward(&p, Some("0")).await.unwrap();
    c.send(d, b"ping", false).await.unwrap();
    let mut got = Collected::default();
    c.until(&mut got, T, |got| got.text(d) == "echo:ping")
        .await
        .expect("bytes came back");
    // a second forwarded connection on the same session, without requestID
    // (old clients): paired by stream ids
    let (e2, _d2) = c.open_forward("1", None).await.unwrap();
    c.until(&mut got, T, |got| got.fin.contains(&e2))
        .await
        .expect("error stream of the refused port closed");
    assert!(
        got.text(e2).contains("error forwarding port 1"),
        "{:?}",
        got.text(e2)
    );
    // the client half-closes; the port's side ends; both streams end
    c.send(d, b"", true).await.unwrap();
    c.until(&mut got, T, |got| {
        got.fin.contains(&d) && got.fin.contains(&e)
    })
    .await
    .expect("data and error streams closed");
    assert_eq!(got.text(e), "", "no error for the working port");
    echo.abort();
}

async fn http_status(url: &str) -> spdy_client::Refused {
    match spdy_client::connect(url, &["v4.channel.k8s.io"])
        .await
        .unwrap()
    {
        Ok(_) => panic!("{url} was accepted"),
        Err(r) => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_single_use_expire_and_unknown_ones_are_404() {
    let (s, _) = server(8, Duration::from_millis(300)).await;
    let url = exec(&s, &["true"], PLAIN);
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    c.open_typed(&["error", "stdout", "stderr"]).await.unwrap();
    c.drain(T).await.unwrap();
    let again = http_status(&url).await;
    assert_eq!(again.status, 404, "{again:?}");
    assert!(again.body.contains("single-use"), "{}", again.body);

    let stale = exec(&s, &["true"], PLAIN);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(http_status(&stale).await.status, 404);

    let addr = s.local_addr();
    assert_eq!(
        http_status(&format!("http://{addr}/exec/not-a-token"))
            .await
            .status,
        404
    );
    // a token is good only for its kind
    let pf = s
        .url_for(Pending::PortForward {
            sandbox_id: "p".into(),
        })
        .unwrap();
    let as_exec = pf.replace("/portforward/", "/exec/");
    assert_eq!(http_status(&as_exec).await.status, 404);
    // an unsupported protocol is refused with the ones the server takes
    let url = exec(&s, &["true"], PLAIN);
    let r = spdy_client::connect(&url, &["v1.channel.k8s.io"])
        .await
        .unwrap()
        .err()
        .expect("refused");
    assert_eq!(r.status, 403);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{}",
        r.head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_at_once_are_bounded_and_a_vanished_client_ends_its_session() {
    let (s, live) = server(1, Duration::from_secs(60)).await;
    let held = exec(
        &s,
        &["cat"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    let mut c = spdy(&held, &["v4.channel.k8s.io"]).await;
    c.open_typed(&["error", "stdin", "stdout", "stderr"])
        .await
        .unwrap();
    interlink_test_harness::wait_until(T, "the session runs", || live.load(Ordering::SeqCst) == 1)
        .unwrap();
    let second = exec(&s, &["true"], PLAIN);
    let r = http_status(&second).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("too many"), "{}", r.body);

    // the client vanishes mid-session: the backend's session ends too
    drop(c);
    let l = live.clone();
    tokio::time::timeout(T, async move {
        while l.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the session ended after its client went away");
    // and the slot is free again
    retry_after_slot(&s).await;
}

async fn retry_after_slot(s: &Streaming) {
    for _ in 0..100 {
        let url = exec(s, &["true"], PLAIN);
        if let Ok(mut c) = spdy_client::connect(&url, &["v4.channel.k8s.io"])
            .await
            .unwrap()
        {
            let [e, _, _] = c.open_typed(&["error", "stdout", "stderr"]).await.unwrap()[..] else {
                unreachable!()
            };
            assert_eq!(status(&c.drain(T).await.unwrap(), e)["status"], "Success");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session slot was never freed");
}

fn ws_request(
    url: &str,
    protocol: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_v5_exec_carries_stdin_eof_output_and_exit_code() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let url = exec(
        &s,
        &["sh", "-c", "cat; echo bad >&2; exit 5"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_request(&url, "v5.channel.k8s.io"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    ws.send(Message::Binary(Bytes::from_static(b"\x00via websocket\n")))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let (mut out, mut err, mut st) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    tokio::time::timeout(T, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                first.get_or_insert(b.to_vec());
                match b.first() {
                    Some(1) => out.extend_from_slice(&b[1..]),
                    Some(2) => err.extend_from_slice(&b[1..]),
                    Some(3) => st.extend_from_slice(&b[1..]),
                    _ => {}
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        first.unwrap(),
        vec![1],
        "an empty stdout message opens the session"
    );
    assert_eq!(String::from_utf8_lossy(&out), "via websocket\n");
    assert_eq!(String::from_utf8_lossy(&err), "bad\n");
    let st: serde_json::Value = serde_json::from_slice(&st).unwrap();
    assert_eq!(st["details"]["causes"][0]["message"], "5");

    // resize over channel 4 with a tty
    let url = exec(
        &s,
        &["sh"],
        Options {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        },
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&url, "v5.channel.k8s.io"))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(
        b"\x04{\"Width\":90,\"Height\":30}",
    )))
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&out).contains("size 90x30") {
            if let Some(Ok(Message::Binary(b))) = ws.next().await
                && b.first() == Some(&1)
            {
                out.extend_from_slice(&b[1..]);
            }
        }
    })
    .await
    .expect("resize reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnelled_port_forward_carries_bytes() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let (port, echo) = echo_server().await;
    let url = s
        .url_for(Pending::PortForward {
            sandbox_id: "p1".into(),
        })
        .unwrap();
    let (ws, resp) =
        tokio_tungstenite::connect_async(ws_request(&url, "SPDY/3.1+portforward.k8s.io"))
            .await
            .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    // run the SPDY client over the tunnel: bridge a local TCP pair to the socket
    let (mut sink, mut source) = ws.split();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bridge_addr = l.local_addr().unwrap();
    let bridge = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        let (mut r, mut w) = sock.into_split();
        let up = async move {
            let mut buf = vec![0u8; 16384];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0
                    || sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        };
        let down = async move {
            while let Some(Ok(m)) = source.next().await {
                if let Message::Binary(b) = m
                    && w.write_all(&b).await.is_err()
                {
                    break;
                }
            }
        };
        tokio::join!(up, down);
    });
    let mut c = spdy_client::over_tcp(&bridge_addr.to_string())
        .await
        .unwrap();
    let p = port.to_string();
    let (_, d) = c.open_forward(&p, Some("0")).await.unwrap();
    c.send(d, b"tunnel", false).await.unwrap();
    let mut got = Collected::default();
    c.until(&mut got, T, |got| got.text(d) == "echo:tunnel")
        .await
        .expect("bytes came back through the tunnel");
    bridge.abort();
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_and_an_idle_session_end_with_a_failure_status() {
    let (s, live) = server_idle(8, Duration::from_secs(60), Duration::from_secs(1)).await;
    // the backend cannot run it: Failure with its message, streams closed
    let url = exec(&s, &["/nonexistent/program"], PLAIN);
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let [e, o, _] = c.open_typed(&["error", "stdout", "stderr"]).await.unwrap()[..] else {
        unreachable!()
    };
    let got = c.drain(T).await.unwrap();
    let st = status(&got, e);
    assert_eq!(st["status"], "Failure");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/program"),
        "{st}"
    );
    assert!(got.fin.contains(&o));

    // nothing moves either way for the idle timeout: the session is closed
    let url = exec(
        &s,
        &["cat"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let [e, _, _, _] = c
        .open_typed(&["error", "stdin", "stdout", "stderr"])
        .await
        .unwrap()[..]
    else {
        unreachable!()
    };
    let got = c.drain(T).await.unwrap();
    let st = status(&got, e);
    assert!(st["message"].as_str().unwrap().contains("idle"), "{st}");
    let l = live.clone();
    tokio::time::timeout(T, async move {
        while l.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the backend's session ended with it");
}

// ---- the CRI side on the real binaries: host, API server, local plugin ----

/// Processes on this machine running exactly `argv`, zombies left out.
fn running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_exec_sync_exec_and_port_forward_through_the_interlink_exec_extension()
-> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let unknown = rt
        .exec(cri::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let sb = env.pod("streaming");
    let pod = run_pod(&mut rt, &sb).await?;
    let created = create(&mut rt, &pod, &sb, sh("idle", "sleep 30")).await?;
    let not_running = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: created.clone(),
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(not_running.code(), tonic::Code::FailedPrecondition);
    assert!(
        not_running.message().contains("not running"),
        "{not_running:?}"
    );
    let attach_nr = rt
        .attach(cri::AttachRequest {
            container_id: created.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(attach_nr.code(), tonic::Code::FailedPrecondition);
    start(&mut rt, &created).await?;
    wait_state(&mut rt, &created, RUNNING, T).await?;

    // through the real chain: the API server's and the local plugin's exec
    // extension, right after StartContainer as critest and kubelet call it:
    // the host waits for the remote pod (its batch window) and for the
    // plugin's container to run (409 until then), the caller does not retry
    let sync = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: created.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo via-interlink; echo e >&2; exit 4".into(),
            ],
            timeout: 10,
        })
        .await?
        .into_inner();
    assert_eq!(sync.stdout, b"via-interlink\n");
    assert_eq!(sync.stderr, b"e\n");
    assert_eq!(sync.exit_code, 4);
    let slow = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: created.clone(),
            cmd: vec!["sleep".into(), "7731".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(slow.code(), tonic::Code::DeadlineExceeded, "{slow:?}");
    // as critest checks: the command is stopped before the answer comes
    assert_eq!(running(&["sleep", "7731"]), Vec::<u32>::new());

    // Exec over SPDY, by a container ID prefix
    let url = rt
        .exec(cri::ExecRequest {
            container_id: created[..12].to_string(),
            cmd: vec!["sh".into(), "-c".into(), "cat; echo err >&2; exit 6".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut c = spdy(&url, &["v4.channel.k8s.io"]).await;
    let ids = c
        .open_typed(&["error", "stdin", "stdout", "stderr"])
        .await?;
    c.send(ids[1], b"through interLink\n", true).await?;
    let got = c.drain(T).await?;
    assert_eq!(got.text(ids[2]), "through interLink\n");
    assert_eq!(got.text(ids[3]), "err\n");
    assert_eq!(status(&got, ids[0])["details"]["causes"][0]["message"], "6");

    // port-forward to a port on the local plugin's machine
    let (port, echo) = echo_server().await;
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![port as i32],
        })
        .await?
        .into_inner()
        .url;
    let mut c = spdy(&url, &["portforward.k8s.io"]).await;
    let (_, d) = c.open_forward(&port.to_string(), Some("0")).await?;
    c.send(d, b"hi", false).await?;
    let mut got = Collected::default();
    c.until(&mut got, T, |got| got.text(d) == "echo:hi")
        .await
        .expect("the port answered through interLink");
    echo.abort();

    let pf = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(pf.code(), tonic::Code::NotFound);
    let pf = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(pf.code(), tonic::Code::InvalidArgument);
    // the containers' shims outlive the plugin: stop them
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    Ok(())
}

// ---- real crictl through the CRI socket, with the backend doubled ----

fn crictl() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var_os("CRICTL").map(std::path::PathBuf::from),
        Some("/tmp/cri-tools-bin/crictl".into()),
        Some("/usr/local/bin/crictl".into()),
        Some("/usr/bin/crictl".into()),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// The real plugin and API server processes with the host in this process: the
/// real CRI server and streaming server, sessions on [`LocalProcessDouble`].
async fn host_with_double(env: &mut CriEnv) -> anyhow::Result<tokio::sync::watch::Sender<bool>> {
    use interlink_cri::remote::{InterlinkRemote, Remote};
    env.kill_host();
    let cfg = interlink_cri::config::Config::load(&env.host_config)?;
    let client = interlink::client::Client::new(interlink::client::ClientConfig {
        address: format!("unix://{}", env.api_socket.display()),
        port: None,
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    })?;
    let remote: Arc<dyn Remote> = Arc::new(InterlinkRemote { client });
    let store = interlink_cri::store::Store::open(&cfg.data_root_folder.join("state"))?;
    let socket = cfg.socket_path();
    let listener = interlink_cri::server::bind(&socket)?;
    let rt = interlink_cri::runtime::Runtime::new(
        cfg,
        store,
        Arc::new(interlink_cri::hooks::NoHooks),
        remote,
    );
    interlink_cri::background::start(&rt);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let _ = rt.streaming.set(s);
    tokio::spawn(async move {
        let _ = interlink_cri::server::serve(rt, listener, async move {
            let _ = stop_rx.wait_for(|v| *v).await;
        })
        .await;
    });
    Ok(stop_tx)
}

async fn run_crictl(
    bin: &std::path::Path,
    sock: &std::path::Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--runtime-endpoint")
        .arg(format!("unix://{}", sock.display()))
        .arg("--timeout")
        .arg("20s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("crictl");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(input).await.unwrap();
        drop(w);
    }
    tokio::time::timeout(T, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("crictl {args:?} did not finish"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_crictl_exec_attach_and_port_forward_over_spdy_and_websocket() -> anyhow::Result<()> {
    // crictl is a real client built outside the repository (DEVELOPERS.md):
    // CI cannot install it, so its absence skips even where backends are
    // required; the replayed-bytes tests above cover what it sends.
    let Some(crictl) = crictl() else {
        eprintln!("SKIP: no crictl (set CRICTL)");
        return Ok(());
    };
    let mut env = CriEnv::start("")?;
    let stop = host_with_double(&mut env).await?;
    let sock = env.socket.clone();
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("crictl-streams");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, sh("main", "sleep 60")).await?;
    start(&mut rt, &id).await?;
    wait_state(&mut rt, &id, RUNNING, T).await?;
    // kubelet's checks of the stream flags
    let bad = rt
        .exec(cri::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into()],
            tty: true,
            stderr: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let none = rt
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), tonic::Code::InvalidArgument, "{none:?}");
    assert!(none.message().contains("one of stdin, stdout, or stderr"));

    for transport in ["spdy", "websocket"] {
        let out = run_crictl(
            &crictl,
            &sock,
            &[
                "exec",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "echo to-stdout; echo to-stderr >&2; exit 7",
            ],
            None,
        )
        .await;
        // crictl exits 1 and names the command's exit code
        assert!(!out.status.success(), "{transport}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("command terminated with exit code 7"),
            "{transport}: {out:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "to-stdout\n",
            "{transport}"
        );
        assert!(err.contains("to-stderr"), "{transport}: {out:?}");
        let out = run_crictl(
            &crictl,
            &sock,
            &[
                "exec",
                "-i",
                "--transport",
                transport,
                &id,
                "tr",
                "a-z",
                "A-Z",
            ],
            Some(b"stdin through crictl\n"),
        )
        .await;
        assert!(out.status.success(), "{transport}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "STDIN THROUGH CRICTL\n",
            "{transport}"
        );
    }
    // ExecSync through crictl exec --sync
    let out = run_crictl(
        &crictl,
        &sock,
        &["exec", "--sync", &id, "sh", "-c", "echo synced"],
        None,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // crictl prints stdout, then stderr, each followed by a newline
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "synced\n\n\n",
        "{out:?}"
    );
    let out = run_crictl(
        &crictl,
        &sock,
        &["exec", "--sync", &id, "sh", "-c", "echo failed >&2; exit 2"],
        None,
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exited with 2: failed"),
        "{out:?}"
    );
    let out = run_crictl(
        &crictl,
        &sock,
        &["exec", "--sync", "--timeout", "1", &id, "sleep", "10"],
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DeadlineExceeded"),
        "{out:?}"
    );

    // exec -it in a real terminal (script's pty): raw mode, a resize, ^D ends it
    let cmdline = format!(
        "stty cols 111 rows 33; {} --runtime-endpoint unix://{} exec -it {id} sh",
        crictl.display(),
        sock.display()
    );
    let mut script = tokio::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut w = script.stdin.take().unwrap();
    let mut r = script.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&seen).contains("size 111x33") {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no resize through the tty: {}",
            String::from_utf8_lossy(&seen)
        )
    });
    w.write_all(b"typed-in-tty").await?;
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&seen).contains("typed-in-tty") {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no echo through the tty: {}",
            String::from_utf8_lossy(&seen)
        )
    });
    w.write_all(&[4]).await?;
    let st = tokio::time::timeout(T, script.wait()).await??;
    assert!(st.success(), "{st:?}: {}", String::from_utf8_lossy(&seen));

    // attach: the double echoes stdin
    let out = run_crictl(&crictl, &sock, &["attach", "-i", &id], Some(b"attached\n")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "attached\n");

    // port-forward, both transports
    let (port, echo) = echo_server().await;
    for transport in ["spdy", "websocket"] {
        let local = interlink_test_harness::free_port();
        let mut pf = tokio::process::Command::new(&crictl)
            .arg("--runtime-endpoint")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "port-forward",
                "--transport",
                transport,
                &pod,
                &format!("{local}:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut conn = None;
        for _ in 0..100 {
            if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
                conn = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut conn = conn.expect("crictl port-forward listens");
        conn.write_all(b"forwarded").await?;
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(T, conn.read(&mut buf)).await??;
        assert_eq!(&buf[..n], b"echo:forwarded", "{transport}");
        drop(conn);
        let _ = pf.kill().await;
    }
    echo.abort();
    // the containers' shims outlive the plugin: stop them
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    let _ = stop.send(true);
    Ok(())
}

// ---- crictl's captured bytes (tests/vectors/crictl), replayed ----

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(
        interlink_test_harness::repo_root()
            .join("tests/vectors/crictl")
            .join(name),
    )
    .expect("vector")
}

/// Send a captured request with its token swapped for `url`'s; answer the
/// connection and the bytes read past the response head (status 101 checked).
async fn replay(url: &str, captured: &[u8]) -> (tokio::net::TcpStream, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap());
    let token = path.rsplit('/').next().unwrap();
    let mut bytes = captured.to_vec();
    let kind_at = bytes
        .windows(path.len() - token.len())
        .position(|w| w == &path.as_bytes()[..path.len() - token.len()])
        .expect("the captured request line names the same kind");
    let start = kind_at + path.len() - token.len();
    assert_eq!(token.len(), 32);
    bytes.splice(start..start + 32, token.bytes());
    let mut sock = tokio::net::TcpStream::connect(hostport).await.unwrap();
    sock.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(T, sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (sock, got[end..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_bytes_replayed_spdy_exec_stdin_and_tty() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let url = exec(
        &s,
        &["tr", "a-z", "A-Z"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    let (sock, ahead) = replay(&url, &vector("spdy-exec-stdin.bin")).await;
    let got = spdy_client::on_stream(sock, ahead)
        .unwrap()
        .drain(T)
        .await
        .unwrap();
    // streams as crictl opened them: 1 error, 3 stdin, 5 stdout, 7 stderr
    assert_eq!(got.replies, vec![1, 3, 5, 7]);
    assert_eq!(got.text(5), "STDIN THROUGH CRICTL\n");
    assert_eq!(status(&got, 1)["status"], "Success");

    let url = exec(
        &s,
        &["sh"],
        Options {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        },
    );
    let (sock, ahead) = replay(&url, &vector("spdy-exec-tty-resize.bin")).await;
    let got = spdy_client::on_stream(sock, ahead)
        .unwrap()
        .drain(T)
        .await
        .unwrap();
    assert_eq!(got.replies, vec![1, 3, 5, 7]);
    // stdin and resize are separate streams: their order is not defined
    let out = got.text(5);
    assert!(
        out.contains("size 111x33\n") && out.contains("typed-in-tty"),
        "{out:?}"
    );
    assert_eq!(status(&got, 1)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_bytes_replayed_spdy_port_forward() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    // the captured streams name port 33577
    let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:33577").await else {
        eprintln!("SKIP: port 33577 is taken here");
        return;
    };
    let echo = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).await.unwrap();
        c.write_all(&[b"echo:", &buf[..n]].concat()).await.unwrap();
        // hold the connection until the client goes
        let _ = c.read(&mut buf).await;
    });
    let url = s
        .url_for(Pending::PortForward {
            sandbox_id: "p1".into(),
        })
        .unwrap();
    let (sock, ahead) = replay(&url, &vector("spdy-portforward.bin")).await;
    let mut c = spdy_client::on_stream(sock, ahead).unwrap();
    let mut got = Collected::default();
    c.until(&mut got, T, |got| got.text(3) == "echo:forwarded")
        .await
        .expect("the port answered through crictl's streams");
    assert_eq!(got.replies, vec![1, 3]);
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_bytes_replayed_websocket_exec_stdin() {
    let (s, _) = server(8, Duration::from_secs(60)).await;
    let url = exec(
        &s,
        &["tr", "a-z", "A-Z"],
        Options {
            stdin: true,
            ..PLAIN
        },
    );
    // crictl sent its close frame (the last 8 bytes: FIN+close, masked, code
    // 1000) only after it had the status: a replay that sent it up front would
    // end the session before the command's output
    let mut v = vector("websocket-exec-stdin.bin");
    let close = v.len() - 8;
    assert_eq!(
        &v[close..close + 2],
        &[0x88, 0x82],
        "the capture ends with a close"
    );
    v.truncate(close);
    let (mut sock, mut buf) = replay(&url, &v).await;
    // the server's frames: unmasked, short binary messages, then a close
    let mut channels: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    let mut closed = false;
    tokio::time::timeout(T, async {
        loop {
            while buf.len() >= 2 {
                let op = buf[0] & 0x0f;
                let (len, hl) = match buf[1] & 0x7f {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    126 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < hl + len {
                    break;
                }
                let payload: Vec<u8> = buf[hl..hl + len].to_vec();
                buf.drain(..hl + len);
                match op {
                    2 if !payload.is_empty() => channels
                        .entry(payload[0])
                        .or_default()
                        .extend_from_slice(&payload[1..]),
                    8 => closed = true,
                    _ => {}
                }
            }
            if closed {
                return;
            }
            let mut tmp = [0u8; 4096];
            let n = sock.read(&mut tmp).await.unwrap();
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    })
    .await
    .expect("the session ended");
    assert!(closed, "a close frame ends the session");
    assert_eq!(
        String::from_utf8_lossy(&channels[&1]),
        "STDIN THROUGH CRICTL\n"
    );
    let st: serde_json::Value = serde_json::from_slice(&channels[&3]).unwrap();
    assert_eq!(st["status"], "Success");
}
