//! CPU and memory usage of the running containers (the cache; `usage_loop`
//! fills it), from the interLink
//! extension `stats` (see [`interlink::extensions`]): one `/stats` call per
//! `StatusInterval` for every running remote pod fills an in-memory cache;
//! CRI stats calls answer from it and never wait on the network. When the API
//! server does not have the extension (an upstream server, a plugin that
//! cannot measure), nothing is cached and usage is left unset, not zero.

use std::collections::HashMap;
use std::sync::RwLock;

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

/// Container id → usage.
#[derive(Default)]
pub struct UsageCache {
    by_container: RwLock<HashMap<String, Usage>>,
}

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
