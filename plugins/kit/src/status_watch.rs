//! `POST /status/watch` (extension `statusWatch`, see
//! [`interlink::extensions::STATUS_WATCH`]) served from a provider's feed of
//! status changes ([`Provider::status_changes`]): the current status of the
//! pods asked (every pod for `[]`), then each change of one of them, one JSON
//! `PodStatus` per line, an empty line as a keep-alive when nothing happened
//! for [`WATCH_KEEPALIVE`]. A watcher that falls behind the feed gets the
//! current statuses again (nothing is lost, some may repeat).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use interlink::extensions::WATCH_KEEPALIVE;
use interlink::{PodRef, PodStatus};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::{PluginError, Provider};

/// The statuses of `pods` (all of the provider's for none).
async fn current<P: Provider>(p: &P, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
    if pods.is_empty() {
        p.status_all().await
    } else {
        p.status(pods).await
    }
}

fn line(s: &PodStatus) -> std::io::Result<Bytes> {
    let mut v = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    v.push(b'\n');
    Ok(Bytes::from(v))
}

struct Watch<P> {
    provider: Arc<P>,
    pods: Arc<Vec<PodRef>>,
    /// The UIDs watched; `None`: every pod.
    only: Option<HashSet<String>>,
    rx: broadcast::Receiver<PodStatus>,
    queue: VecDeque<PodStatus>,
    cancel: CancellationToken,
}

/// Open a watch: subscribe first, then read the current statuses, so no
/// change between the two is missed. Errors before anything is sent are the
/// provider's (unsupported: 501).
pub async fn open<P: Provider>(
    provider: Arc<P>,
    pods: Arc<Vec<PodRef>>,
    cancel: CancellationToken,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, PluginError> {
    let Some(rx) = provider.status_changes() else {
        return Err(PluginError::Unsupported(format!(
            "this plugin has no {:?} extension",
            interlink::extensions::STATUS_WATCH
        )));
    };
    let first = current(provider.as_ref(), &pods).await?;
    let only = (!pods.is_empty()).then(|| pods.iter().map(|p| p.uid.clone()).collect());
    let w = Watch {
        provider,
        pods,
        only,
        rx,
        queue: first.into(),
        cancel,
    };
    Ok(futures::stream::unfold(Some(w), |w| async move {
        let mut w = w?;
        loop {
            if let Some(s) = w.queue.pop_front() {
                return Some((line(&s), Some(w)));
            }
            let next = tokio::select! {
                _ = w.cancel.cancelled() => return None,
                _ = tokio::time::sleep(WATCH_KEEPALIVE) => {
                    return Some((Ok(Bytes::from_static(b"\n")), Some(w)));
                }
                r = w.rx.recv() => r,
            };
            match next {
                Ok(s) => {
                    if w.only.as_ref().is_none_or(|o| o.contains(&s.pod_uid)) {
                        return Some((line(&s), Some(w)));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(
                        missed = n,
                        "status watcher fell behind: sending every status again"
                    );
                    match current(w.provider.as_ref(), &w.pods).await {
                        Ok(all) => w.queue.extend(all),
                        Err(e) => {
                            // end the stream: the client reconnects and starts over
                            return Some((Err(std::io::Error::other(e.to_string())), None));
                        }
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
}
