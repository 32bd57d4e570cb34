//! A container's environment as Kubernetes computes it: `envFrom` first, then
//! `env` (values, ConfigMap/Secret keys, pod fields), with `$(VAR)` expansion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::volumes::PodObjects;

/// `NAME=value` pairs in definition order (later definitions win).
pub fn resolve(
    c: &Container,
    pod: &Pod,
    objects: &PodObjects,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = vars.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let entries: BTreeMap<String, Vec<u8>> = if let Some(r) = &from.config_map_ref {
            match objects.config_maps.get(&r.name) {
                Some(cm) => PodObjects::config_map_entries(cm),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(format!(
                        "envFrom: ConfigMap {:?} was not sent with the pod",
                        r.name
                    ));
                }
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secrets.get(&r.name) {
                Some(s) => PodObjects::secret_entries(s),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(format!(
                        "envFrom: Secret {:?} was not sent with the pod",
                        r.name
                    ));
                }
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in entries {
            set(
                &mut vars,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                let v = objects
                    .config_maps
                    .get(&r.name)
                    .and_then(|cm| PodObjects::config_map_entries(cm).remove(&r.key));
                match v {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {:?}: key {:?} of ConfigMap {:?} was not sent with the pod",
                            e.name, r.key, r.name
                        ));
                    }
                }
            } else if let Some(r) = &src.secret_key_ref {
                let v = objects
                    .secrets
                    .get(&r.name)
                    .and_then(|s| PodObjects::secret_entries(s).remove(&r.key));
                match v {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {:?}: key {:?} of Secret {:?} was not sent with the pod",
                            e.name, r.key, r.name
                        ));
                    }
                }
            } else if let Some(f) = &src.field_ref {
                field(pod, &f.field_path).ok_or_else(|| {
                    format!(
                        "env {:?}: fieldRef {:?} is not supported",
                        e.name, f.field_path
                    )
                })?
            } else if let Some(r) = &src.resource_field_ref {
                let res = c.resources.as_ref();
                let (kind, name) = r.resource.split_once('.').unwrap_or(("", ""));
                let map = match kind {
                    "limits" => res.and_then(|r| r.limits.as_ref()),
                    "requests" => res.and_then(|r| r.requests.as_ref()),
                    _ => None,
                };
                map.and_then(|m| m.get(name))
                    .map(|q| q.0.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &vars)
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars)
}

fn field(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.hostIP" => {
            let st = pod.status.as_ref();
            if path == "status.podIP" {
                st.and_then(|s| s.pod_ip.clone())
            } else {
                st.and_then(|s| s.host_ip.clone())
            }
            .unwrap_or_default()
        }
        p => {
            let (map, key) = if let Some(k) = p.strip_prefix("metadata.labels[") {
                (m.labels.as_ref(), k)
            } else if let Some(k) = p.strip_prefix("metadata.annotations[") {
                (m.annotations.as_ref(), k)
            } else {
                return None;
            };
            let key = key
                .strip_suffix(']')?
                .trim_matches(|c| c == '\'' || c == '"');
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
        }
    })
}

/// Kubernetes `$(VAR)` expansion: known variables are replaced, unknown ones are
/// left as written, `$$` is a literal `$`.
pub fn expand(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion() {
        let v = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y$(B)z$$(A)$", &v), "x1y$(B)z$(A)$");
    }

    #[test]
    fn resolves_sources() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u",
            "labels": {"app": "web"}}}),
        )
        .unwrap();
        let mut o = PodObjects::default();
        o.config_maps.insert(
            "cm".into(),
            serde_json::from_value(
                json!({"metadata": {"name": "cm"}, "data": {"k": "v", "X": "x"}}),
            )
            .unwrap(),
        );
        o.secrets.insert(
            "s".into(),
            serde_json::from_value(
                json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}}),
            )
            .unwrap(),
        );
        let c: Container = serde_json::from_value(json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b"},
            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
        ]}))
        .unwrap();
        let env = resolve(&c, &pod, &o).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_k"), Some("v"));
        assert_eq!(get("B"), Some("a-b"));
        assert_eq!(get("K"), Some("v"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("web"));
        let bad: Container = serde_json::from_value(json!({"name": "c",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}))
        .unwrap();
        assert!(
            resolve(&bad, &pod, &o)
                .unwrap_err()
                .contains("Secret \"nope\"")
        );
    }
}
