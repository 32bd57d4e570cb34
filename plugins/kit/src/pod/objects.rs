//! The ConfigMaps, Secrets and projected-volume maps sent with a pod, by name,
//! as key → bytes: a ConfigMap's `data` and `binaryData`, a Secret's `data` and
//! `stringData` (as the API server merges them).

use std::collections::BTreeMap;

use interlink::RetrievedPodData;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

/// An object's keys and values.
pub type Data = BTreeMap<String, Vec<u8>>;

/// Which kind of object a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    /// The field that names it in a pod spec (`configMap`, `secret`).
    pub fn field_name(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configMap",
            ObjectKind::Secret => "secret",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::ConfigMap => "ConfigMap",
            ObjectKind::Secret => "Secret",
        })
    }
}

/// Every object sent with one pod, by name (objects without a name cannot be
/// referenced and are left out).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodObjects {
    pub config_maps: BTreeMap<String, Data>,
    pub secrets: BTreeMap<String, Data>,
    /// Projected volumes as interLink sends them: already rendered, as a
    /// ConfigMap named after the volume whose keys are the file paths.
    pub projected: BTreeMap<String, Data>,
}

/// A ConfigMap's keys: `data` then `binaryData`.
pub fn config_map_data(cm: &ConfigMap) -> Data {
    let mut d = Data::new();
    for (k, v) in cm.data.iter().flatten() {
        d.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        d.insert(k.clone(), v.0.clone());
    }
    d
}

/// A Secret's keys: `data` then `stringData` (which wins, as in the API server).
pub fn secret_data(s: &Secret) -> Data {
    let mut d = Data::new();
    for (k, v) in s.data.iter().flatten() {
        d.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        d.insert(k.clone(), v.clone().into_bytes());
    }
    d
}

impl PodObjects {
    /// Index what a create request carries (every container's objects).
    pub fn from_request(data: &RetrievedPodData) -> PodObjects {
        let mut o = PodObjects::default();
        for c in &data.containers {
            for cm in &c.config_maps {
                if let Some(n) = &cm.metadata.name {
                    o.config_maps.insert(n.clone(), config_map_data(cm));
                }
            }
            for s in &c.secrets {
                if let Some(n) = &s.metadata.name {
                    o.secrets.insert(n.clone(), secret_data(s));
                }
            }
            for p in &c.projected_volume_maps {
                if let Some(n) = &p.metadata.name {
                    o.projected.insert(n.clone(), config_map_data(p));
                }
            }
        }
        o
    }

    /// The object of `kind` named `name`, if it was sent.
    pub fn get(&self, kind: ObjectKind, name: &str) -> Option<&Data> {
        match kind {
            ObjectKind::ConfigMap => self.config_maps.get(name),
            ObjectKind::Secret => self.secrets.get(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indexes_every_container_s_objects() {
        let d: RetrievedPodData = serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p"}},
            "container": [
                {"name": "a",
                 "configMaps": [{"metadata": {"name": "cm"}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}}],
                 "secrets": [{"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}, "stringData": {"x": "y"}}]},
                {"name": "b",
                 "configMaps": [{"metadata": {}, "data": {"nameless": "1"}}],
                 "projectedvolumemaps": [{"metadata": {"name": "kube-api-access-1"}, "data": {"token": "t"}}]}
            ]
        }))
        .unwrap();
        let o = PodObjects::from_request(&d);
        let cm = o.get(ObjectKind::ConfigMap, "cm").unwrap();
        assert_eq!(cm["k"], b"v");
        assert_eq!(cm["b"], vec![0u8, 1]);
        let s = o.get(ObjectKind::Secret, "s").unwrap();
        assert_eq!(
            (s["pw"].as_slice(), s["x"].as_slice()),
            (&b"hunter2"[..], &b"y"[..])
        );
        assert_eq!(
            o.config_maps.len(),
            1,
            "a nameless object cannot be referenced"
        );
        assert_eq!(o.projected["kube-api-access-1"]["token"], b"t");
        assert!(o.get(ObjectKind::Secret, "cm").is_none());
    }
}
