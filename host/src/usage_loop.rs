//! The usage loop: when a CRI stats call wants fresher figures (see
//! [`crate::usage::UsageCache::fresh`]), one `/stats` call for every running
//! remote pod fills [`crate::usage::UsageCache`]. It does nothing while nobody
//! asks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::Runtime;
use crate::usage::{self, Refreshed};

/// How long a server without the `stats` extension is not asked again.
const UNSUPPORTED_RECHECK: Duration = Duration::from_secs(10);
/// The longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Before a CRI stats call reads the cache: figures at most `StatusInterval`
/// old (see [`crate::usage::UsageCache::fresh`]).
pub async fn fresh(rt: &Runtime) {
    let wait = usage::FRESH_WAIT.min(rt.cfg.cri.request_timeout);
    rt.usage.fresh(rt.cfg.status_interval, wait).await
}

/// Refresh the cache each time a refresh is wanted (after a failure, not
/// before its backoff has passed: doubling from `StatusInterval` to 30 s).
pub async fn run(rt: Arc<Runtime>) {
    let interval = rt.cfg.status_interval;
    let mut backoff = interval;
    loop {
        rt.usage.wanted().await;
        let pods = rt.polled.get(&rt.store);
        let at = Instant::now();
        let outcome = if pods.is_empty() {
            rt.usage.replace(HashMap::new());
            Refreshed::filled(at)
        } else {
            let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.stats(pods)).await;
            match res {
                Ok(Ok(Some(list))) => {
                    usage::apply(&rt.usage, &rt.store, &list);
                    backoff = interval;
                    Refreshed::filled(at)
                }
                Ok(Ok(None)) => {
                    // no extension: usage unknown
                    rt.usage.replace(HashMap::new());
                    Refreshed::failed(UNSUPPORTED_RECHECK)
                }
                Ok(Err(e)) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::debug!(error = %e, retry_in = ?backoff, "stats failed");
                    Refreshed::failed(backoff)
                }
                Err(_) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::debug!(retry_in = ?backoff, "stats timed out");
                    Refreshed::failed(backoff)
                }
            }
        };
        let retry_at = outcome.retry_at;
        rt.usage.refreshed(outcome);
        if let Some(t) = retry_at {
            tokio::time::sleep_until(t.into()).await;
        }
    }
}
