//! This node's pods as the Kubernetes API has them, by pod UID, when the host
//! has a kubeconfig (`Kubeconfig`; [`crate::pod_watch`] fills it). With a
//! pod's spec the dispatcher knows how many containers to wait for, and the
//! remote pod carries what CRI does not say (probes, ports, security context,
//! service account).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;

#[derive(Default)]
pub struct PodSpecs {
    by_uid: RwLock<HashMap<String, Arc<Pod>>>,
}

impl PodSpecs {
    /// The pod with this (Kubernetes) UID, if it is known.
    pub fn get(&self, uid: &str) -> Option<Arc<Pod>> {
        self.read().get(uid).cloned()
    }

    /// The names of the pod's regular containers, in spec order.
    pub fn containers(&self, uid: &str) -> Option<Vec<String>> {
        let pod = self.get(uid)?;
        Some(
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        )
    }

    /// Record a pod (added or changed). Bookkeeping the host never reads is
    /// dropped to keep the cache small.
    pub fn put(&self, mut pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        pod.metadata.managed_fields = None;
        pod.status = None;
        self.write().insert(uid, Arc::new(pod));
    }

    pub fn remove(&self, uid: &str) {
        self.write().remove(uid);
    }

    /// Start over (a watch restarted with a full list).
    pub fn clear(&self) {
        self.write().clear();
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Pod>>> {
        self.by_uid.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Pod>>> {
        self.by_uid.write().unwrap_or_else(|e| e.into_inner())
    }
}
