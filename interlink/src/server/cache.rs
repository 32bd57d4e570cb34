//! The last known state of every pod the server has seen: registered on
//! `/create` and `/updateCache`, refreshed by `/status` answers, dropped on
//! `/delete`. `/getLogs` uses it to tell an unknown pod (404) from a known one.
//!
//! Statuses are kept as the plugin's JSON (decoded on demand), so a status
//! answer for 10,000 pods is not decoded into Kubernetes objects twice.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::last_body::LastBody;
use crate::types::{PodStatus, pod_name, pod_namespace, pod_uid};

/// One pod as the server knows it.
#[derive(Debug, Clone, Default)]
pub struct CachedPod {
    pub name: String,
    pub namespace: String,
    /// The job id the plugin gave it, when known.
    pub job_id: String,
    /// Names of its (init) containers.
    pub containers: Vec<String>,
    /// The last status the plugin reported, as it sent it.
    pub status_json: Option<Box<RawValue>>,
}

impl CachedPod {
    /// The last status, decoded.
    #[allow(dead_code)] // diagnostics and tests; the cache serves lookups today
    pub fn status(&self) -> Option<PodStatus> {
        self.status_json
            .as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }
}

/// The parts of a `PodStatus` the cache reads, borrowed from the answer where
/// the JSON has no escapes (nothing allocated for a status already known).
#[derive(Deserialize)]
pub struct StatusRef<'a> {
    #[serde(rename = "UID", default, borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(rename = "JID", default, borrow)]
    jid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    containers: Option<Vec<NameRef<'a>>>,
    #[serde(rename = "initContainers", default, borrow)]
    init_containers: Option<Vec<NameRef<'a>>>,
}

#[derive(Deserialize)]
struct NameRef<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
}

pub struct StatusCache {
    pods: RwLock<HashMap<String, CachedPod>>,
    /// Bumped by every change of `pods` (under its write lock).
    changes: AtomicU64,
    /// The last `/status` answer recorded, and `changes` right after.
    last_answer: Arc<LastBody<u64>>,
}

impl Default for StatusCache {
    fn default() -> Self {
        StatusCache {
            pods: RwLock::default(),
            changes: AtomicU64::new(0),
            last_answer: LastBody::new(),
        }
    }
}

fn container_names(pod: &Pod) -> Vec<String> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

impl StatusCache {
    /// Register (or refresh) a pod from its spec.
    pub fn register(&self, pod: &Pod, job_id: Option<&str>) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        self.changes.fetch_add(1, Ordering::Relaxed);
        let e = pods.entry(pod_uid(pod).to_string()).or_default();
        e.name = pod_name(pod).to_string();
        e.namespace = pod_namespace(pod).to_string();
        let names = container_names(pod);
        if !names.is_empty() {
            e.containers = names;
        }
        if let Some(j) = job_id {
            e.job_id = j.to_string();
        }
    }

    /// Record a plugin's whole `/status` answer (a JSON array of statuses;
    /// see [`StatusCache::record`]). The same bytes as the answer recorded
    /// last, with nothing changed in the cache since, are not read again:
    /// recording them would change nothing. Answers how many statuses were
    /// recorded (`None`: the answer was the last one).
    pub fn record_answer(&self, answer: &Bytes) -> Result<Option<usize>, String> {
        if self.last_answer.get(answer) == Some(self.changes.load(Ordering::Relaxed)) {
            return Ok(None);
        }
        let raws: Vec<&RawValue> = serde_json::from_slice(answer)
            .map_err(|e| format!("/status answer is not a list of PodStatus: {e}"))?;
        let (n, changes) = self.record_counted(&raws)?;
        self.last_answer.put(answer.clone(), changes);
        Ok(Some(n))
    }

    /// Record the statuses of a plugin's `/status` answer (registering pods
    /// not seen yet). Answers how many were recorded; an element that is not a
    /// status object is an error naming its index.
    pub fn record(&self, statuses: &[&RawValue]) -> Result<usize, String> {
        self.record_counted(statuses).map(|(n, _)| n)
    }

    /// [`StatusCache::record`], also answering `changes` after it.
    fn record_counted(&self, statuses: &[&RawValue]) -> Result<(usize, u64), String> {
        let parsed: Vec<StatusRef<'_>> = statuses
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                serde_json::from_str::<StatusRef<'_>>(raw.get())
                    .map_err(|e| format!("status [{i}] is not a PodStatus: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        let changes = self.changes.fetch_add(1, Ordering::Relaxed) + 1;
        let mut n = 0;
        for (st, raw) in parsed.into_iter().zip(statuses) {
            let Some(uid) = st.uid.filter(|u| !u.is_empty()) else {
                continue;
            };
            if !pods.contains_key(uid.as_ref()) {
                pods.insert(uid.to_string(), CachedPod::default());
            }
            let Some(e) = pods.get_mut(uid.as_ref()) else {
                continue;
            };
            if e.name.is_empty() {
                e.name = st.name.unwrap_or_default().into_owned();
                e.namespace = st.namespace.unwrap_or_default().into_owned();
            }
            if let Some(j) = st.jid.filter(|j| !j.is_empty())
                && e.job_id != j
            {
                e.job_id = j.into_owned();
            }
            for c in st
                .init_containers
                .into_iter()
                .flatten()
                .chain(st.containers.into_iter().flatten())
            {
                if !e.containers.iter().any(|n| *n == c.name) {
                    e.containers.push(c.name.into_owned());
                }
            }
            // a status that did not change since the last answer is kept as is
            if e.status_json
                .as_ref()
                .is_none_or(|old| old.get() != raw.get())
            {
                e.status_json = Some((*raw).to_owned());
            }
            n += 1;
        }
        Ok((n, changes))
    }

    /// Every status a plugin reported, as it sent it.
    pub fn statuses(&self) -> Vec<Box<RawValue>> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|p| p.status_json.clone())
            .collect()
    }

    pub fn get(&self, uid: &str) -> Option<CachedPod> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    pub fn remove(&self, uid: &str) -> Option<CachedPod> {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        self.changes.fetch_add(1, Ordering::Relaxed);
        pods.remove(uid)
    }

    pub fn len(&self) -> usize {
        self.pods.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_statuses_without_decoding_them_fully() {
        let cache = StatusCache::default();
        let body = r#"[{"name":"p","UID":"u1","namespace":"d","JID":"7",
            "containers":[{"name":"main","image":"x","imageID":"","ready":true,"restartCount":0,
            "state":{"running":{"startedAt":"2026-11-22T07:00:00Z"}}}],"initContainers":null},
            {"name":"q","UID":"","namespace":"d"}]"#;
        let raws: Vec<&RawValue> = serde_json::from_str(body).unwrap();
        assert_eq!(cache.record(&raws).unwrap(), 1);
        let p = cache.get("u1").unwrap();
        assert_eq!((p.name.as_str(), p.job_id.as_str()), ("p", "7"));
        assert_eq!(p.containers, vec!["main"]);
        assert!(
            p.status().unwrap().containers[0]
                .state
                .as_ref()
                .unwrap()
                .running
                .is_some()
        );
        assert_eq!(cache.statuses().len(), 1);
        let bad: Vec<&RawValue> = serde_json::from_str(r#"[{"UID": 5}]"#).unwrap();
        assert!(cache.record(&bad).unwrap_err().contains("status [0]"));
    }

    #[test]
    fn the_same_answer_is_recorded_once_until_the_cache_changes() {
        let cache = StatusCache::default();
        let answer = Bytes::from_static(br#"[{"name":"p","UID":"u1","namespace":"d","JID":"7"}]"#);
        assert_eq!(cache.record_answer(&answer).unwrap(), Some(1));
        assert_eq!(cache.record_answer(&answer).unwrap(), None);
        // a delete in between: the same answer registers the pod again
        cache.remove("u1");
        assert!(cache.get("u1").is_none());
        assert_eq!(cache.record_answer(&answer).unwrap(), Some(1));
        assert_eq!(cache.get("u1").unwrap().job_id, "7");
        assert_eq!(cache.record_answer(&answer).unwrap(), None);
        // another answer is read
        let other = Bytes::from_static(br#"[{"name":"p","UID":"u1","namespace":"d","JID":"8"}]"#);
        assert_eq!(cache.record_answer(&other).unwrap(), Some(1));
        assert_eq!(cache.get("u1").unwrap().job_id, "8");
        assert!(cache.record_answer(&Bytes::from_static(b"{")).is_err());
    }
}
