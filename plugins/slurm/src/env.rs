//! A container's environment for the job script: the kit's pod model resolves
//! it as Kubernetes does ([`interlink_plugin_kit::pod::env`]); here names are
//! held to what a shell can `export`.

use interlink_plugin_kit::pod::{self, PodView};
use k8s_openapi::api::core::v1::Container;

/// A valid shell variable name (what the job script can export).
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolve `env` and `envFrom` in Kubernetes order (envFrom first, env
/// overrides, `$(VAR)` expanded). An `env` name the script cannot export is an
/// error; such `envFrom` keys are skipped (as the kubelet skips invalid ones).
pub fn resolve(view: PodView<'_>, c: &Container) -> Result<Vec<(String, String)>, String> {
    let ctx = |e: String| format!("container {:?}: {e}", c.name);
    if let Some(e) = c.env.iter().flatten().find(|e| !valid_name(&e.name)) {
        return Err(ctx(format!(
            "env name {:?} is not a valid variable name",
            e.name
        )));
    }
    let env = pod::env::resolve(view, c).map_err(|e| ctx(e.to_string()))?;
    Ok(env
        .into_vars()
        .into_iter()
        .filter(|(k, _)| valid_name(k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink::RetrievedPodData;
    use interlink_plugin_kit::pod::{Placement, PodObjects};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn resolve_with(
        pod: &Pod,
        c: &Container,
        objects: &PodObjects,
    ) -> Result<Vec<(String, String)>, String> {
        let placement = Placement::default();
        resolve(
            PodView {
                pod,
                objects,
                placement: &placement,
            },
            c,
        )
    }

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
        let objects = PodObjects::from_request(&d);
        let env = resolve_with(
            &d.pod,
            &d.pod.spec.as_ref().unwrap().containers[0],
            &objects,
        )
        .unwrap();
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
        let e = resolve_with(
            &d.pod,
            &d.pod.spec.as_ref().unwrap().containers[0],
            &PodObjects::default(),
        )
        .unwrap_err();
        assert!(e.contains("gone") && e.contains("\"c\""), "{e}");
    }
}
