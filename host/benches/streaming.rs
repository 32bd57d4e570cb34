//! Benchmark of the streaming server (prints figures):
//! - exec session setup over SPDY/3.1 (`v4.channel.k8s.io`): TCP connect, the
//!   HTTP upgrade, the error/stdout/stderr streams and their replies, up to the
//!   exit status, for a command that ends at once: p50/p99;
//! - the same over WebSocket (`v5.channel.k8s.io`);
//! - `ExecSync`'s own cost over a backend that answers at once: p50/p99.
//!
//! The backend is an instant double (the figures are the host's share of a
//! session; what a real backend adds is its own), named as such below.
//!
//! `cargo bench -p interlink-cri --bench streaming`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use interlink_cri::streaming::backend::{BoxFuture, PortStream};
use interlink_cri::streaming::remotecommand::Options;
use interlink_cri::streaming::spdy::frame::{Frame, HeaderCodec};
use interlink_cri::streaming::{
    BackendError, ExecIo, ExecTarget, Pending, Settings, StreamBackend, Streaming,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Test double: every command prints `ok` and exits 0 at once.
struct InstantDouble;

impl StreamBackend for InstantDouble {
    fn exec(&self, _t: ExecTarget, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>> {
        Box::pin(async move {
            if let Some(out) = io.stdout {
                let _ = out.send(Bytes::from_static(b"ok\n")).await;
            }
            Ok(0)
        })
    }
    fn attach(&self, _c: &str, _t: bool, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>> {
        self.exec(
            ExecTarget {
                container_id: String::new(),
                cmd: vec![],
                tty: false,
                timeout: None,
            },
            io,
        )
    }
    fn port_forward(
        &self,
        _s: &str,
        _p: u16,
    ) -> BoxFuture<'_, Result<Box<dyn PortStream>, BackendError>> {
        Box::pin(async { Err(BackendError::Unimplemented("no ports here".into())) })
    }
}

const OPTS: Options = Options {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

fn pending() -> Pending {
    Pending::Exec {
        target: ExecTarget {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            tty: false,
            timeout: None,
        },
        opts: OPTS,
    }
}

async fn spdy_session(url: &str) {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    let mut codec = HeaderCodec::new();
    let mut out = BytesMut::from(req.as_bytes());
    for (i, t) in ["error", "stdout", "stderr"].iter().enumerate() {
        Frame::SynStream {
            stream_id: 1 + 2 * i as u32,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), vec![t.to_string()])],
        }
        .encode(&mut codec, &mut out)
        .unwrap();
    }
    s.write_all(&out).await.unwrap();
    // read to the end of the session
    let mut buf = vec![0u8; 16384];
    while s.read(&mut buf).await.unwrap_or(0) > 0 {}
}

async fn websocket_session(url: &str) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let _ = ws.close(None).await;
}

fn pct(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s: Arc<Streaming> = Streaming::start(
            Settings {
                address: SocketAddr::from(([127, 0, 0, 1], 0)),
                max_sessions: 64,
                idle_timeout: Duration::from_secs(60),
                token_ttl: Duration::from_secs(60),
            },
            Arc::new(InstantDouble),
            std::future::pending(),
        )
        .await
        .unwrap();
        const N: usize = 500;
        for (name, ws) in [("SPDY/3.1 v4", false), ("WebSocket v5", true)] {
            let mut times = Vec::with_capacity(N);
            for i in 0..N + 50 {
                let url = s.url_for(pending()).unwrap();
                let t0 = Instant::now();
                if ws {
                    websocket_session(&url).await;
                } else {
                    spdy_session(&url).await;
                }
                if i >= 50 {
                    times.push(t0.elapsed());
                }
            }
            let (p50, p99) = pct(times);
            println!(
                "exec session setup to exit status ({name}, {N} sessions): p50 {p50:>8.1?} p99 {p99:>8.1?}"
            );
        }
        let backend = InstantDouble;
        let mut times = Vec::with_capacity(N);
        for _ in 0..N {
            let t0 = Instant::now();
            let r = interlink_cri::cri::exec_sync::run(
                &backend,
                ExecTarget {
                    container_id: "c".into(),
                    cmd: vec!["true".into()],
                    tty: false,
                    timeout: Some(Duration::from_secs(5)),
                },
            )
            .await
            .unwrap();
            assert_eq!(r.stdout, b"ok\n");
            times.push(t0.elapsed());
        }
        let (p50, p99) = pct(times);
        println!(
            "ExecSync, the host's share ({N} calls, instant backend): p50 {p50:>8.1?} p99 {p99:>8.1?}"
        );
    });
}
