//! A container's environment, with `valueFrom` and `envFrom` resolved from the
//! ConfigMaps and Secrets sent with the pod.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::refs::Refs;
use crate::volumes::field_value;

/// A valid shell variable name (what the job script can export).
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Resolve `env` and `envFrom`, in Kubernetes order (envFrom first, env overrides).
pub fn resolve(pod: &Pod, c: &Container, refs: &Refs) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: String, v: String, out: &mut Vec<(String, String)>| {
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    let ctx = |e: String| format!("container {:?}: {e}", c.name);
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let (data, optional, what) = if let Some(r) = &src.config_map_ref {
            (
                refs.config_maps.get(&r.name),
                r.optional.unwrap_or(false),
                format!("ConfigMap {:?}", r.name),
            )
        } else if let Some(r) = &src.secret_ref {
            (
                refs.secrets.get(&r.name),
                r.optional.unwrap_or(false),
                format!("Secret {:?}", r.name),
            )
        } else {
            continue;
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    let name = format!("{prefix}{k}");
                    if valid_name(&name) {
                        set(name, text(v), &mut out);
                    }
                }
            }
            None if optional => {}
            None => return Err(ctx(format!("envFrom: {what} was not sent with the pod"))),
        }
    }
    for e in c.env.iter().flatten() {
        if !valid_name(&e.name) {
            return Err(ctx(format!(
                "env name {:?} is not a valid variable name",
                e.name
            )));
        }
        let value = if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                match refs.config_maps.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => text(v),
                    None if r.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(ctx(format!(
                            "env {:?}: key {:?} of ConfigMap {:?} not found",
                            e.name, r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match refs.secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => text(v),
                    None if r.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(ctx(format!(
                            "env {:?}: key {:?} of Secret {:?} not found",
                            e.name, r.key, r.name
                        )));
                    }
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path)
                    .map_err(|x| ctx(format!("env {:?}: {x}", e.name)))?
            } else {
                // resourceFieldRef and others: not known on the Slurm side
                String::new()
            }
        } else {
            e.value.clone().unwrap_or_default()
        };
        set(e.name.clone(), value, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink::RetrievedPodData;
    use serde_json::json;

    #[test]
    fn resolves_all_sources() {
        let d: RetrievedPodData = serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
              "spec": {"containers": [{"name": "c",
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                  {"name": "PLAIN", "value": "v"},
                  {"name": "CM_a", "value": "overridden"},
                  {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                  {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                  {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
                ]}]}},
            "container": [{"name": "c",
                "configMaps": [{"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2", "bad-name": "x"}}],
                "secrets": [{"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}}]}]
        }))
        .unwrap();
        let refs = Refs::from_request(&d);
        let env = resolve(&d.pod, &d.pod.spec.as_ref().unwrap().containers[0], &refs).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PLAIN"), Some("v"));
        assert_eq!(get("CM_a"), Some("overridden"));
        assert_eq!(get("CM_b"), Some("2"));
        assert_eq!(get("CM_bad-name"), None);
        assert_eq!(get("FROM_SECRET"), Some("hunter2"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("OPT"), None);
    }

    #[test]
    fn missing_reference_is_an_error() {
        let d: RetrievedPodData = serde_json::from_value(json!({
            "pod": {"spec": {"containers": [{"name": "c",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}]}},
            "container": []
        }))
        .unwrap();
        let e = resolve(
            &d.pod,
            &d.pod.spec.as_ref().unwrap().containers[0],
            &Refs::default(),
        )
        .unwrap_err();
        assert!(e.contains("gone") && e.contains("\"c\""), "{e}");
    }
}
