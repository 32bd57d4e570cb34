//! CPU and memory usage of the running containers (the cache; `usage_loop`
//! fills it), from the interLink extension `stats` (see
//! [`interlink::extensions`]). Usage is read on demand: a CRI stats call asks
//! for a refresh when the cache is older than `StatusInterval` and waits for it
//! a little ([`UsageCache::fresh`]); the usage loop then makes one `/stats` call
//! for every running remote pod. Nobody asking, nothing is read: a node whose
//! stats nobody wants does no work for them. When the API server does not have
//! the extension (an upstream server, a plugin that cannot measure), nothing is
//! cached and usage is left unset, not zero.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use interlink::extensions::PodStats;

use crate::store::{Phase, Store};

/// One container's usage as last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// When the backend read the figures (ns since the epoch).
    pub timestamp: i64,
    /// Cumulative CPU time (ns).
    pub cpu_core_ns: Option<u64>,
    /// CPU rate over the last two readings (nano-cores).
    pub nano_cores: Option<u64>,
    pub working_set_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
}

/// Container id → usage, and the demand that drives the usage loop.
pub struct UsageCache {
    by_container: RwLock<HashMap<String, Usage>>,
    /// A refresh is wanted (stored as a permit when the loop is busy).
    wanted: tokio::sync::Notify,
    /// The outcome of the last refresh; every refresh publishes one.
    refreshed: tokio::sync::watch::Sender<Refreshed>,
}

/// The outcome of the last refresh.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refreshed {
    /// When the cache was last filled from an answer.
    pub at: Option<Instant>,
    /// No new refresh before then (the server failed, or has no `stats`).
    pub retry_at: Option<Instant>,
}

impl Refreshed {
    /// Filled from an answer at `at`.
    pub fn filled(at: Instant) -> Refreshed {
        Refreshed {
            at: Some(at),
            retry_at: None,
        }
    }

    /// Not filled; no new refresh for `wait`.
    pub fn failed(wait: Duration) -> Refreshed {
        Refreshed {
            at: None,
            retry_at: Some(Instant::now() + wait),
        }
    }
}

impl Default for UsageCache {
    fn default() -> Self {
        UsageCache {
            by_container: RwLock::default(),
            wanted: tokio::sync::Notify::new(),
            refreshed: tokio::sync::watch::Sender::new(Refreshed::default()),
        }
    }
}

/// How long a stats call waits for the refresh it asked for, at most.
pub const FRESH_WAIT: Duration = Duration::from_secs(2);

impl UsageCache {
    /// The usage of a container, if the backend reported one.
    pub fn get(&self, container_id: &str) -> Option<Usage> {
        self.read().get(container_id).copied()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Usage>> {
        self.by_container.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn replace(&self, next: HashMap<String, Usage>) {
        *self.by_container.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Make the cache at most `max_age` old before it is read: ask the usage
    /// loop for a refresh and wait for it, at most `wait`. Returns at once
    /// while the last refresh failed and its retry time has not come (the
    /// figures then stay what they were).
    pub async fn fresh(&self, max_age: Duration, wait: Duration) {
        let mut rx = self.refreshed.subscribe();
        let last = *rx.borrow_and_update();
        if last.at.is_some_and(|t| t.elapsed() < max_age)
            || last.retry_at.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        self.wanted.notify_one();
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }

    /// For the usage loop: wait until a refresh is wanted.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// For the usage loop: publish a refresh's outcome (wakes the waiters).
    pub fn refreshed(&self, r: Refreshed) {
        self.refreshed.send_replace(r);
    }
}

/// Put one `/stats` answer in the cache (remote pod UID and remote container
/// name → container id), with the CPU rate from the previous reading.
pub fn apply(cache: &UsageCache, store: &Store, list: &[PodStats]) {
    let by_uid: HashMap<&str, &PodStats> = list.iter().map(|p| (p.pod_uid.as_str(), p)).collect();
    let mut next = HashMap::new();
    {
        let st = store.read();
        let prev = cache.read();
        for r in st.remotes.values() {
            if r.phase != Phase::Created {
                continue;
            }
            let Some(ps) = by_uid.get(r.uid.as_str()) else {
                continue;
            };
            for id in &r.containers {
                let Some(c) = st.containers.get(id) else {
                    continue;
                };
                let remote_name = c.name();
                let Some(cs) = ps.containers.iter().find(|s| s.name == remote_name) else {
                    continue;
                };
                let ts = cs.timestamp.as_nanosecond() as i64;
                let mut u = Usage {
                    timestamp: ts,
                    cpu_core_ns: cs.cpu_usage_core_nano_seconds,
                    nano_cores: None,
                    working_set_bytes: cs.memory_working_set_bytes,
                    usage_bytes: cs.memory_usage_bytes,
                };
                if let (Some(p), Some(now)) = (prev.get(id), u.cpu_core_ns) {
                    u.nano_cores = rate(p, now, ts).or(p.nano_cores.filter(|_| p.timestamp == ts));
                }
                next.insert(id.clone(), u);
            }
        }
    }
    cache.replace(next);
}

fn rate(prev: &Usage, cpu_now: u64, ts_now: i64) -> Option<u64> {
    let dt = ts_now.checked_sub(prev.timestamp).filter(|d| *d > 0)? as u128;
    let dc = cpu_now.checked_sub(prev.cpu_core_ns?)? as u128;
    u64::try_from(dc * 1_000_000_000 / dt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refresher standing in for the usage loop: counts the refreshes.
    fn refresher(
        cache: &std::sync::Arc<UsageCache>,
    ) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, n2) = (cache.clone(), n.clone());
        tokio::spawn(async move {
            loop {
                c.wanted().await;
                n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                c.refreshed(Refreshed::filled(Instant::now()));
            }
        });
        n
    }

    #[tokio::test]
    async fn a_read_refreshes_only_what_is_stale_and_nobody_asking_reads_nothing() {
        use std::sync::atomic::Ordering::SeqCst;
        let cache = std::sync::Arc::new(UsageCache::default());
        let n = refresher(&cache);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(n.load(SeqCst), 0, "nobody asked: no refresh");
        let wait = Duration::from_secs(10);
        cache.fresh(Duration::from_secs(60), wait).await;
        assert_eq!(n.load(SeqCst), 1, "a first read waits for a refresh");
        cache.fresh(Duration::from_secs(60), wait).await;
        assert_eq!(
            n.load(SeqCst),
            1,
            "figures younger than max_age: no refresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.fresh(Duration::from_millis(10), wait).await;
        assert_eq!(n.load(SeqCst), 2, "older than max_age: refreshed again");
    }

    #[tokio::test]
    async fn a_read_does_not_wait_while_the_last_refresh_failed() {
        let cache = UsageCache::default();
        cache.refreshed(Refreshed::failed(Duration::from_secs(600)));
        // nobody refreshes here: a read that waited would take the whole bound
        tokio::time::timeout(
            Duration::from_secs(5),
            cache.fresh(Duration::from_secs(1), Duration::from_secs(60)),
        )
        .await
        .expect("answered from what is cached, at once");
    }

    #[test]
    fn rate_from_two_readings() {
        let p = Usage {
            timestamp: 1_000_000_000,
            cpu_core_ns: Some(500_000_000),
            ..Default::default()
        };
        // half a core over two seconds
        assert_eq!(rate(&p, 1_500_000_000, 3_000_000_000), Some(500_000_000));
        // a counter that went back (process ended) or no time passed: no rate
        assert_eq!(rate(&p, 100, 3_000_000_000), None);
        assert_eq!(rate(&p, 600_000_000, 1_000_000_000), None);
    }
}
