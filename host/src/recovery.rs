//! After a restart (or an API server that came back): created remote pods are
//! registered again with the API server (`/updateCache`) and log following
//! resumes. Batches recovered in `Sending` or `Deleting` are the dispatcher's
//! (it asks `/status` before sending again: never created twice).

use std::sync::Arc;
use std::time::Duration;

use crate::convert;
use crate::remote::RemoteError;
use crate::runtime::Runtime;
use crate::store::Phase;

/// Resume log following and re-register the created remote pods.
pub async fn recover(rt: Arc<Runtime>) {
    let follow: Vec<String> = {
        let st = rt.store.read();
        st.containers
            .values()
            .filter(|c| {
                c.log_file.is_some()
                    && !c.log_done
                    && c.remote_uid.as_ref().is_some_and(|u| {
                        st.remotes.get(u).is_some_and(|r| r.phase == Phase::Created)
                    })
            })
            .map(|c| c.id.clone())
            .collect()
    };
    for id in follow {
        crate::logs::ensure_follower(&rt, &id);
    }
    reregister(rt).await;
}

/// `/updateCache` for every created remote pod (a restarted API server has
/// forgotten them).
pub async fn reregister(rt: Arc<Runtime>) {
    let pods: Vec<_> = {
        let st = rt.store.read();
        st.remotes
            .values()
            .filter(|r| r.phase == Phase::Created)
            .map(|r| {
                convert::minimal_pod(
                    r,
                    r.containers
                        .iter()
                        .filter_map(|id| st.containers.get(id))
                        .map(|c| c.name())
                        .collect(),
                )
            })
            .collect()
    };
    if !pods.is_empty() {
        tracing::info!(
            pods = pods.len(),
            "re-registering remote pods with the API server"
        );
    }
    for pod in pods {
        let mut backoff = Duration::from_millis(500);
        for _ in 0..10 {
            let res = tokio::time::timeout(
                rt.cfg.cri.request_timeout,
                rt.remote.update_cache(pod.clone()),
            )
            .await;
            let ok = matches!(res, Ok(Ok(())));
            rt.metrics.remote("update_cache", ok);
            if ok || matches!(res, Ok(Err(RemoteError::Refused(_)))) {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
