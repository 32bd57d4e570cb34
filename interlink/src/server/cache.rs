//! The last known state of every pod the server has seen: registered on
//! `/create` and `/updateCache`, refreshed by `/status` answers, dropped on
//! `/delete`. `/getLogs` uses it to tell an unknown pod (404) from a known one.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;

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
    /// The last status the plugin reported.
    pub status: Option<PodStatus>,
}

#[derive(Default)]
pub struct StatusCache {
    pods: RwLock<HashMap<String, CachedPod>>,
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

    /// Record statuses the plugin answered (registering pods not seen yet).
    pub fn record(&self, statuses: &[PodStatus]) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        for st in statuses {
            if st.pod_uid.is_empty() {
                continue;
            }
            let e = pods.entry(st.pod_uid.clone()).or_default();
            if e.name.is_empty() {
                e.name = st.pod_name.clone();
                e.namespace = st.pod_namespace.clone();
            }
            if !st.job_id.is_empty() {
                e.job_id = st.job_id.clone();
            }
            for c in st.init_containers.iter().chain(st.containers.iter()) {
                if !e.containers.contains(&c.name) {
                    e.containers.push(c.name.clone());
                }
            }
            e.status = Some(st.clone());
        }
    }

    pub fn get(&self, uid: &str) -> Option<CachedPod> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    pub fn remove(&self, uid: &str) -> Option<CachedPod> {
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
    }

    pub fn len(&self) -> usize {
        self.pods.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}
