//! The downward API: a pod's own fields as env values (`fieldRef`) and as files
//! of downwardAPI volumes, in Kubernetes' forms:
//!
//! | field path                               | value                                   |
//! |------------------------------------------|-----------------------------------------|
//! | `metadata.name`, `.namespace`, `.uid`    | the pod's                               |
//! | `metadata.labels['k']`, `.annotations['k']` | that entry (empty when absent)       |
//! | `metadata.labels`, `metadata.annotations` | every entry as `k="v"` lines, sorted (volumes only) |
//! | `spec.nodeName`, `spec.serviceAccountName` | the pod's (node: else the [`Placement`]'s) |
//! | `status.podIP(s)`, `status.hostIP(s)`    | the pod status's, else the [`Placement`]'s |
//!
//! What the pod itself says wins (it is what the cluster shows for the pod);
//! the backend's [`Placement`] fills what a pod being created does not know yet.
//!
//! Only the subscript form `['k']` names a key, as Kubernetes' own parser
//! (`labels["k"]` is refused, as the API server refuses it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::{Placement, PodError};

/// Where a field is used: whole label/annotation maps are volume files only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Env,
    Volume,
}

/// The value of the downward-API field `path` of `pod`.
pub fn field(pod: &Pod, placement: &Placement, path: &str, used: Use) -> Result<String, PodError> {
    let unsupported = || {
        PodError::Invalid(format!(
            "fieldRef {path:?} is not supported{}",
            if used == Use::Env {
                " in env (supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP, status.hostIPs)"
            } else {
                ""
            }
        ))
    };
    let m = &pod.metadata;
    if let Some((map, key)) = subscript(path) {
        let map = match map {
            "metadata.labels" => &m.labels,
            "metadata.annotations" => &m.annotations,
            _ => return Err(unsupported()),
        };
        return Ok(map
            .as_ref()
            .and_then(|x| x.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let or_empty = |v: Option<&String>| v.cloned().unwrap_or_default();
    Ok(match path {
        "metadata.name" => or_empty(m.name.as_ref()),
        "metadata.namespace" => or_empty(m.namespace.as_ref()),
        "metadata.uid" => or_empty(m.uid.as_ref()),
        "metadata.labels" if used == Use::Volume => format_map(m.labels.as_ref()),
        "metadata.annotations" if used == Use::Volume => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| placement.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => or_empty(spec.and_then(|s| s.service_account_name.as_ref())),
        "status.podIP" | "status.podIPs" => {
            let all: Vec<String> = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|i| i.ip.clone())
                .filter(|i| !i.is_empty())
                .collect();
            let listed = (path == "status.podIPs" && !all.is_empty()).then(|| all.join(","));
            listed
                .or_else(|| nonempty(status.and_then(|s| s.pod_ip.as_ref())))
                .or_else(|| placement.pod_ip.clone())
                .unwrap_or_default()
        }
        "status.hostIP" | "status.hostIPs" => nonempty(status.and_then(|s| s.host_ip.as_ref()))
            .or_else(|| placement.host_ip.clone())
            .unwrap_or_default(),
        _ => return Err(unsupported()),
    })
}

fn nonempty(v: Option<&String>) -> Option<String> {
    v.filter(|i| !i.is_empty()).cloned()
}

/// `metadata.labels['k']` as (`metadata.labels`, `k`), as Kubernetes'
/// `SplitMaybeSubscriptedPath`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    path.strip_suffix("']")?.split_once("['")
}

/// A label or annotation map as the kubelet writes it: `key="value"` lines in
/// key order, values quoted as Go's `%q`, no newline after the last.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted as Go's `strconv.Quote` does.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "web", "tier": "a\"b"},
                "annotations": {"note": "x\ny", "k8s.io/x": "1"}},
            "spec": {"nodeName": "vnode", "serviceAccountName": "sa", "containers": []},
            "status": {"podIP": "10.0.0.7", "hostIP": "192.168.1.2"}
        }))
        .unwrap()
    }

    #[test]
    fn kubernetes_field_paths() {
        let p = pod();
        let none = Placement::default();
        let f = |path: &str| field(&p, &none, path, Use::Env).unwrap();
        assert_eq!(f("metadata.name"), "p");
        assert_eq!(f("metadata.namespace"), "ns");
        assert_eq!(f("metadata.uid"), "u-1");
        assert_eq!(f("metadata.labels['app']"), "web");
        assert_eq!(f("metadata.labels['absent']"), "");
        assert_eq!(f("metadata.annotations['k8s.io/x']"), "1");
        assert_eq!(f("spec.nodeName"), "vnode");
        assert_eq!(f("spec.serviceAccountName"), "sa");
        assert_eq!(f("status.podIP"), "10.0.0.7");
        assert_eq!(f("status.podIPs"), "10.0.0.7");
        assert_eq!(f("status.hostIP"), "192.168.1.2");
    }

    #[test]
    fn only_kubernetes_forms_are_accepted() {
        let p = pod();
        let none = Placement::default();
        for bad in [
            "metadata.labels[\"app\"]",
            "metadata.labels[app]",
            "metadata.labels['app'",
            "spec.containers",
            "metadata.generateName['x']",
        ] {
            let e = field(&p, &none, bad, Use::Env).unwrap_err().to_string();
            assert!(e.contains("not supported"), "{bad}: {e}");
        }
        // whole maps are for volume files only
        assert!(field(&p, &none, "metadata.labels", Use::Env).is_err());
    }

    #[test]
    fn the_placement_fills_what_the_pod_does_not_say() {
        let here = Placement {
            pod_ip: Some("172.17.0.3".into()),
            host_ip: Some("10.1.1.1".into()),
            node_name: Some("other".into()),
            ..Default::default()
        };
        let p = pod();
        let f = |path: &str| field(&p, &here, path, Use::Env).unwrap();
        assert_eq!(f("status.podIP"), "10.0.0.7", "what the cluster shows wins");
        assert_eq!(f("status.hostIP"), "192.168.1.2");
        assert_eq!(f("spec.nodeName"), "vnode");
        let mut bare = pod();
        bare.spec.as_mut().unwrap().node_name = None;
        bare.status = None;
        let f = |path: &str| field(&bare, &here, path, Use::Env).unwrap();
        assert_eq!(f("spec.nodeName"), "other");
        assert_eq!(f("status.podIP"), "172.17.0.3");
        assert_eq!(f("status.podIPs"), "172.17.0.3");
        assert_eq!(f("status.hostIP"), "10.1.1.1");
        let none = Placement::default();
        assert_eq!(field(&bare, &none, "status.podIP", Use::Env).unwrap(), "");
        let mut dual = pod();
        dual.status = Some(
            serde_json::from_value(json!({"podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]}))
            .unwrap(),
        );
        assert_eq!(
            field(&dual, &none, "status.podIPs", Use::Env).unwrap(),
            "10.0.0.7,fd00::7"
        );
        assert_eq!(
            field(&dual, &none, "status.podIP", Use::Env).unwrap(),
            "10.0.0.7"
        );
    }

    #[test]
    fn maps_as_the_kubelet_writes_them() {
        let p = pod();
        let none = Placement::default();
        assert_eq!(
            field(&p, &none, "metadata.labels", Use::Volume).unwrap(),
            "app=\"web\"\ntier=\"a\\\"b\""
        );
        assert_eq!(
            field(&p, &none, "metadata.annotations", Use::Volume).unwrap(),
            "k8s.io/x=\"1\"\nnote=\"x\\ny\""
        );
        assert_eq!(format_map(None), "");
    }
}
