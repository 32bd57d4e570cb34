//! A **test double** of the Kubernetes API for what the host reads from it:
//! `GET /api/v1/pods` as a list and as a watch (`watch=true`), with the real
//! JSON of `PodList` and watch events, filtered by `fieldSelector=spec.nodeName=`.
//! CI has no kube-apiserver; the host's pod watch was checked against a real
//! one by hand (see README).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

#[derive(Default)]
struct Inner {
    pods: Mutex<Vec<Pod>>,
    requests: Mutex<Vec<String>>,
    version: Mutex<u64>,
}

/// The running double.
pub struct KubeApi {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    events: broadcast::Sender<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

impl KubeApi {
    pub async fn start() -> std::io::Result<KubeApi> {
        let inner = Arc::new(Inner::default());
        let (events, _) = broadcast::channel(64);
        let app = axum::Router::new()
            .route("/api/v1/pods", axum::routing::get(pods))
            .with_state((inner.clone(), events.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(KubeApi {
            addr,
            inner,
            events,
            stop: Some(stop),
        })
    }

    /// Add a pod (listed from now on, and sent to open watches as ADDED).
    pub fn add(&self, mut pod: Pod) {
        let mut v = self.inner.version.lock().unwrap();
        *v += 1;
        pod.metadata.resource_version = Some(v.to_string());
        let ev = serde_json::json!({"type": "ADDED", "object": pod}).to_string();
        self.inner.pods.lock().unwrap().push(pod);
        let _ = self.events.send(ev);
    }

    /// The query strings of the requests seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// A kubeconfig for this API (plain HTTP, no credentials) written to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: http://{}\nusers:\n- name: double\n  user: {{}}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: double\ncurrent-context: double\n",
                self.addr
            ),
        )
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn pods(
    State((inner, events)): State<(Arc<Inner>, broadcast::Sender<String>)>,
    Query(q): Query<Vec<(String, String)>>,
) -> axum::response::Response {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    inner.requests.lock().unwrap().push(
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    let node =
        get("fieldSelector").and_then(|f| f.strip_prefix("spec.nodeName=").map(str::to_string));
    let matches = move |p: &Pod| node.as_deref().is_none_or(|n| node_of(p) == n);
    if get("watch").as_deref() == Some("true") || get("watch").as_deref() == Some("1") {
        let mut rx = events.subscribe();
        let body = async_stream(move |tx| async move {
            while let Ok(ev) = rx.recv().await {
                let pod: serde_json::Value = serde_json::from_str(&ev).unwrap();
                let p: Pod = serde_json::from_value(pod["object"].clone()).unwrap();
                if matches(&p) && tx.send(Bytes::from(ev + "\n")).await.is_err() {
                    break;
                }
            }
        });
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(body),
        )
            .into_response();
    }
    let items: Vec<Pod> = inner
        .pods
        .lock()
        .unwrap()
        .iter()
        .filter(|p| matches(p))
        .cloned()
        .collect();
    let version = inner.version.lock().unwrap().to_string();
    axum::Json(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": version},
        "items": items,
    }))
    .into_response()
}

/// A body stream fed by a task.
fn async_stream<F, Fut>(
    f: F,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
}
