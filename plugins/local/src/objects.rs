//! The ConfigMaps, Secrets and projected maps sent with a pod, looked up by
//! name, and the pod fields that the downward API exposes.

use std::collections::BTreeMap;

use interlink::RetrievedPodData;
use k8s_openapi::api::core::v1::Pod;

/// Every object sent with one pod, by name.
#[derive(Debug, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Projected volumes rendered as ConfigMaps, named after the volume.
    pub projected: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Objects {
    pub fn from_data(data: &RetrievedPodData) -> Objects {
        let mut o = Objects::default();
        for c in &data.containers {
            for cm in &c.config_maps {
                o.config_maps.insert(cm_name(cm), cm_entries(cm));
            }
            for cm in &c.projected_volume_maps {
                o.projected.insert(cm_name(cm), cm_entries(cm));
            }
            for s in &c.secrets {
                let mut m: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (k, v) in s.data.iter().flatten() {
                    m.insert(k.clone(), v.0.clone());
                }
                for (k, v) in s.string_data.iter().flatten() {
                    m.insert(k.clone(), v.clone().into_bytes());
                }
                o.secrets
                    .insert(s.metadata.name.clone().unwrap_or_default(), m);
            }
        }
        o
    }

    pub fn config_map(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.config_maps.get(name)
    }

    pub fn secret(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secrets.get(name)
    }
}

fn cm_name(cm: &k8s_openapi::api::core::v1::ConfigMap) -> String {
    cm.metadata.name.clone().unwrap_or_default()
}

fn cm_entries(cm: &k8s_openapi::api::core::v1::ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        m.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        m.insert(k.clone(), v.0.clone());
    }
    m
}

fn map_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// The value of a downward-API field path (`metadata.name`,
/// `metadata.labels['app']`, `status.podIP`, ...). `None` when unsupported.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let md = &pod.metadata;
    let key_of = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(k) = key_of("metadata.labels['") {
        return Some(
            md.labels
                .as_ref()
                .and_then(|l| l.get(&k))
                .cloned()
                .unwrap_or_default(),
        );
    }
    if let Some(k) = key_of("metadata.annotations['") {
        return Some(
            md.annotations
                .as_ref()
                .and_then(|a| a.get(&k))
                .cloned()
                .unwrap_or_default(),
        );
    }
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(md.labels.as_ref()),
        "metadata.annotations" => map_lines(md.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        }),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        // the processes share the host's network
        "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
        "status.podIPs" | "status.hostIPs" => "127.0.0.1".to_string(),
        _ => return None,
    })
}
