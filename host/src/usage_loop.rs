//! The usage loop: one `/stats` call per `StatusInterval` for every running
//! remote pod fills [`crate::usage::UsageCache`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Runtime;
use crate::usage;

/// Refresh the cache every `StatusInterval` (backing off to 30 s while the
/// server fails).
pub async fn run(rt: Arc<Runtime>) {
    let interval = rt.cfg.status_interval;
    let mut delay = interval;
    loop {
        tokio::time::sleep(delay).await;
        let pods = rt.polled.get(&rt.store);
        if pods.is_empty() {
            rt.usage.replace(HashMap::new());
            delay = interval;
            continue;
        }
        let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.stats(pods)).await;
        match res {
            Ok(Ok(Some(list))) => {
                usage::apply(&rt.usage, &rt.store, &list);
                delay = interval;
            }
            Ok(Ok(None)) => {
                // no extension: usage unknown
                rt.usage.replace(HashMap::new());
                delay = interval.max(Duration::from_secs(10));
            }
            Ok(Err(e)) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                tracing::debug!(error = %e, retry_in = ?delay, "stats failed");
            }
            Err(_) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                tracing::debug!(retry_in = ?delay, "stats timed out");
            }
        }
    }
}
