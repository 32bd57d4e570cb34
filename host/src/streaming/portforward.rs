//! `portforward.k8s.io` over SPDY, as kubelet serves it: for every forwarded
//! connection the client opens an `error` and a `data` stream with the same
//! `requestID` and `port` headers (old clients send no `requestID`: the data
//! stream is then paired with the error stream two ids before it). Bytes of the
//! data stream go to the port and back; a failure is written as text on the
//! error stream; both are half-closed when the port's side has ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::StreamBackend;
use super::spdy::{Conn, Stream};

pub const PROTOCOL: &str = "portforward.k8s.io";
/// How long the second stream of a pair may take (kubelet's stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<Instant>,
}

fn request_id(st: &Stream) -> String {
    if let Some(id) = st.header("requestid") {
        return id.to_string();
    }
    match st.header("streamtype") {
        Some("data") => st.id.saturating_sub(2).to_string(),
        _ => st.id.to_string(),
    }
}

/// Serve port-forwarding for the pod `sandbox_id` on an upgraded SPDY connection
/// until the client closes it (or it is idle for `idle_timeout`).
pub async fn serve_spdy(
    mut conn: Conn,
    sandbox_id: String,
    backend: Arc<dyn StreamBackend>,
    idle_timeout: Duration,
) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let st = tokio::select! {
            st = conn.accept() => st,
            _ = tick.tick() => {
                let now = Instant::now();
                let stale: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.since.is_some_and(|t| now - t > PAIR_TIMEOUT))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    if let Some(p) = pending.remove(&k) {
                        fail(p.error, p.data, "timed out waiting for the other stream of the pair").await;
                    }
                }
                if tasks.is_empty() && conn.idle_for() >= idle_timeout {
                    tracing::info!("port-forward session closed after {idle_timeout:?} idle");
                    break;
                }
                while tasks.try_join_next().is_some() {}
                continue;
            }
        };
        let Some(st) = st else { break };
        let id = request_id(&st);
        let p = pending.entry(id.clone()).or_default();
        p.since.get_or_insert_with(Instant::now);
        match st.header("streamtype") {
            Some("error") if p.error.is_none() => p.error = Some(st),
            Some("data") if p.data.is_none() => p.data = Some(st),
            other => {
                let msg = format!("unexpected stream (type {other:?}) for request {id}");
                tracing::debug!("{msg}");
                st.tx.reset().await;
                continue;
            }
        }
        if p.error.is_some() && p.data.is_some() {
            let p = pending.remove(&id).expect("pair");
            let (error, data) = (p.error.expect("error"), p.data.expect("data"));
            let backend = backend.clone();
            let sandbox = sandbox_id.clone();
            tasks.spawn(async move { forward(backend.as_ref(), &sandbox, error, data).await });
        }
    }
    tasks.abort_all();
    conn.close().await;
}

async fn fail(error: Option<Stream>, data: Option<Stream>, msg: &str) {
    if let Some(e) = error {
        let _ = e.tx.write(Bytes::from(msg.to_string())).await;
        e.tx.close().await;
    }
    if let Some(d) = data {
        d.tx.reset().await;
    }
}

async fn forward(backend: &dyn StreamBackend, sandbox: &str, error: Stream, data: Stream) {
    let port = match data.header("port").map(|p| p.parse::<u16>()) {
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            let msg = format!(
                "invalid port {:?}: a port is 1-65535",
                data.header("port").unwrap_or("")
            );
            return fail(Some(error), Some(data), &msg).await;
        }
        None => return fail(Some(error), Some(data), "the port header is missing").await,
    };
    let remote = match backend.port_forward(sandbox, port).await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox}: {e}");
            return fail(Some(error), Some(data), &msg).await;
        }
    };
    let (mut rr, mut rw) = tokio::io::split(remote);
    let Stream { mut rx, tx, .. } = data;
    // client -> port; its FIN (or reset) half-closes the port connection
    let up = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            // a message-based stream (the interLink exec extension's) sends on flush
            if rw.write_all(&b).await.is_err() || rw.flush().await.is_err() {
                return;
            }
        }
        let _ = rw.shutdown().await;
    });
    // port -> client
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rr.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, port, "port-forward: reading the port failed");
                break;
            }
        }
    }
    tx.close().await;
    error.tx.close().await;
    // the client half-closes or resets its side when it has seen our end
    let _ = tokio::time::timeout(Duration::from_secs(30), up).await;
}
