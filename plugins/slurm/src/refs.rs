//! The ConfigMaps, Secrets and projected maps a pod's request carries, by name.

use std::collections::BTreeMap;

use interlink::RetrievedPodData;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

/// Key/value data as files: ConfigMap `data` + `binaryData`, Secret `data` + `stringData`.
pub type Data = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Default, Clone)]
pub struct Refs {
    pub config_maps: BTreeMap<String, Data>,
    pub secrets: BTreeMap<String, Data>,
    pub projected: BTreeMap<String, Data>,
}

fn cm_data(cm: &ConfigMap) -> Data {
    let mut d: Data = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        d.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        d.insert(k.clone(), v.0.clone());
    }
    d
}

fn secret_data(s: &Secret) -> Data {
    let mut d: Data = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        d.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        d.insert(k.clone(), v.clone().into_bytes());
    }
    d
}

impl Refs {
    pub fn from_request(data: &RetrievedPodData) -> Refs {
        let mut r = Refs::default();
        for c in &data.containers {
            for cm in &c.config_maps {
                if let Some(n) = &cm.metadata.name {
                    r.config_maps.insert(n.clone(), cm_data(cm));
                }
            }
            for s in &c.secrets {
                if let Some(n) = &s.metadata.name {
                    r.secrets.insert(n.clone(), secret_data(s));
                }
            }
            for p in &c.projected_volume_maps {
                if let Some(n) = &p.metadata.name {
                    r.projected.insert(n.clone(), cm_data(p));
                }
            }
        }
        r
    }
}
