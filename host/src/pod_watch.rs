//! One watch of this node's pods in the Kubernetes API (`spec.nodeName` =
//! `NodeName`), through the kubeconfig of `Kubeconfig`, kept in
//! [`crate::pod_specs::PodSpecs`]. Each change wakes the dispatcher: a pod's
//! spec may complete a batch that waits for it. A broken watch is restarted
//! with backoff; meanwhile the batch window applies.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

use crate::runtime::Runtime;

/// Why the Kubernetes API cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("pod watch: {0}")]
    Watch(String),
}

/// The node whose pods are watched: `NodeName`, else the host name.
pub fn node_name(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

async fn client(path: &Path) -> Result<kube::Client, WatchError> {
    let err = |m: String| WatchError::Kubeconfig {
        path: path.display().to_string(),
        message: m,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

/// Watch until the process ends (nothing without `Kubeconfig`).
pub async fn run(rt: Arc<Runtime>) {
    let Some(path) = rt.cfg.kubeconfig.clone() else {
        return;
    };
    let node = node_name(rt.cfg.node_name.as_deref());
    let mut backoff = Duration::from_millis(500);
    loop {
        match watch(&rt, &path, &node).await {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "watching this node's pods failed; the batch window applies meanwhile");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn watch(rt: &Runtime, path: &Path, node: &str) -> Result<(), WatchError> {
    let client = client(path).await?;
    let api: kube::Api<Pod> = kube::Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = std::pin::pin!(watcher(api, cfg));
    let mut listed = false;
    while let Some(ev) = events
        .try_next()
        .await
        .map_err(|e| WatchError::Watch(e.to_string()))?
    {
        match ev {
            watcher::Event::Init => rt.pod_specs.clear(),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => rt.pod_specs.put(p),
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    rt.pod_specs.remove(uid);
                }
            }
            watcher::Event::InitDone => {
                if !listed {
                    tracing::info!(
                        node,
                        pods = rt.pod_specs.len(),
                        "watching this node's pods in the Kubernetes API"
                    );
                    listed = true;
                }
            }
        }
        rt.dispatch_wake.notify_one();
    }
    Ok(())
}
