//! A container's environment as the kubelet computes it: `envFrom` sources in
//! order (each key with the source's `prefix`), then `env` entries in order; a
//! later definition replaces an earlier one in place. `env` values are expanded
//! with `$(VAR)` against what is defined before them ([`expand`]); `valueFrom`
//! reads ConfigMap and Secret keys, the downward API ([`super::downward`]) and
//! resource fields ([`super::resources`]).
//!
//! A missing ConfigMap, Secret or key is an error unless the reference is
//! `optional`, then the variable (or the whole `envFrom` source) is left out.
//! `envFrom` keys that are not valid variable names are skipped, as the kubelet
//! skips them. Values are text: bytes that are not UTF-8 are replaced (U+FFFD).

use k8s_openapi::api::core::v1::Container;

use super::downward::{self, Use};
use super::{ObjectKind, PodError, PodView, resources};

/// An ordered environment: `NAME=value` pairs in definition order, where a
/// later definition replaces an earlier one in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }

    /// `s` with `$(VAR)` references to this environment expanded ([`expand`]).
    pub fn expand(&self, s: &str) -> String {
        expand(s, |n| self.get(n))
    }
}

/// A name the kubelet accepts from `envFrom`: printable ASCII without `=`
/// (Kubernetes' relaxed environment variable names).
pub fn is_env_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Add `c`'s `envFrom` and `env` to `env` (which may already hold variables of
/// the backend's own, visible to `$(VAR)` and replaceable by the pod's).
/// `map` is applied to each `env` value once resolved (a backend that rewrites
/// paths in values does it there; the identity otherwise).
pub fn resolve_into(
    view: PodView<'_>,
    c: &Container,
    env: &mut Env,
    map: &dyn Fn(String) -> String,
) -> Result<(), PodError> {
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (ObjectKind::ConfigMap, &r.name, r.optional == Some(true))
        } else if let Some(r) = &from.secret_ref {
            (ObjectKind::Secret, &r.name, r.optional == Some(true))
        } else {
            continue;
        };
        match view.objects.get(kind, name) {
            Some(data) => {
                for (k, v) in data {
                    let n = format!("{prefix}{k}");
                    if is_env_name(&n) {
                        env.set(&n, text(v));
                    }
                }
            }
            None if optional => {}
            None => {
                return Err(PodError::NotSent {
                    context: "envFrom".into(),
                    kind,
                    name: name.clone(),
                });
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => env.expand(e.value.as_deref().unwrap_or("")),
            Some(src) => {
                let key_ref = if let Some(r) = &src.config_map_key_ref {
                    Some((ObjectKind::ConfigMap, &r.name, &r.key, r.optional))
                } else {
                    src.secret_key_ref
                        .as_ref()
                        .map(|r| (ObjectKind::Secret, &r.name, &r.key, r.optional))
                };
                if let Some((kind, name, key, optional)) = key_ref {
                    match view.objects.get(kind, name).and_then(|d| d.get(key)) {
                        Some(v) => text(v),
                        None if optional == Some(true) => continue,
                        None => {
                            return Err(PodError::KeyNotSent {
                                context: format!("env {:?}", e.name),
                                kind,
                                name: name.clone(),
                                key: key.clone(),
                            });
                        }
                    }
                } else if let Some(f) = &src.field_ref {
                    downward::field(view.pod, view.placement, &f.field_path, Use::Env)
                        .map_err(|err| PodError::Invalid(format!("env {:?}: {err}", e.name)))?
                } else if let Some(r) = &src.resource_field_ref {
                    resources::field_value(c, r, view.placement)
                        .map_err(|err| PodError::Invalid(format!("env {:?}: {err}", e.name)))?
                } else {
                    return Err(PodError::Invalid(format!(
                        "env {:?}: this valueFrom is not supported",
                        e.name
                    )));
                }
            }
        };
        env.set(&e.name, map(value));
    }
    Ok(())
}

/// `c`'s environment on its own ([`resolve_into`] an empty [`Env`]).
pub fn resolve(view: PodView<'_>, c: &Container) -> Result<Env, PodError> {
    let mut env = Env::new();
    resolve_into(view, c, &mut env, &|v| v)?;
    Ok(env)
}

/// Kubernetes' `$(VAR)` expansion (its `third_party/forked/golang/expansion`):
/// a reference to a defined variable is replaced by its value, one to an
/// undefined variable is left as written, `$$` is a literal `$`, and a `$`
/// before anything else (or an unclosed `$(`) stays as it is.
pub fn expand<'a>(s: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match lookup(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
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
    use super::super::{Placement, PodObjects};
    use super::*;
    use interlink::RetrievedPodData;
    use serde_json::json;

    #[test]
    fn expansion_as_kubernetes() {
        let mut env = Env::new();
        env.set("A", "1".into());
        env.set("EMPTY", String::new());
        let x = |s: &str| env.expand(s);
        assert_eq!(x("x$(A)y"), "x1y");
        assert_eq!(x("$(B)"), "$(B)");
        assert_eq!(x("$$(A)"), "$(A)");
        assert_eq!(x("$$$$"), "$$");
        assert_eq!(x("$$$(A)"), "$1");
        assert_eq!(x("$(A"), "$(A");
        assert_eq!(x("$A $"), "$A $");
        assert_eq!(x("é$(A)é"), "é1é");
        assert_eq!(x("é$(A)"), "é1");
        assert_eq!(x("[$(EMPTY)]"), "[]");
        assert_eq!(x("$()"), "$()");
        assert_eq!(x("$(A)$(A)"), "11");
        assert_eq!(x("x$(A)y$(B)z$$(A)$"), "x1y$(B)z$(A)$");
    }

    fn request() -> RetrievedPodData {
        serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u",
                     "labels": {"app": "web"}, "annotations": {"team": "blue"}},
              "spec": {"nodeName": "vnode", "serviceAccountName": "sa", "containers": [{"name": "c",
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                "envFrom": [
                  {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                  {"secretRef": {"name": "absent", "optional": true}},
                  {"secretRef": {"name": "s"}}
                ],
                "env": [
                  {"name": "PLAIN", "value": "v"},
                  {"name": "CM_a", "value": "overridden"},
                  {"name": "B", "value": "$(PLAIN)-b-$(LATER)-$$(PLAIN)"},
                  {"name": "LATER", "value": "l"},
                  {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
                  {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                  {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                  {"name": "OPTKEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey", "optional": true}}},
                  {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                  {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                  {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                  {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                  {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}},
                  {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                  {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                  {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                  {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                  {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}}
                ]}]}},
            "container": [{"name": "c",
                "configMaps": [{"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2", "bad=name": "x"}}],
                "secrets": [{"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg==", "TOKEN": "dA=="}}]}]
        }))
        .unwrap()
    }

    #[test]
    fn resolves_every_source_in_kubernetes_order() {
        let d = request();
        let objects = PodObjects::from_request(&d);
        let placement = Placement {
            pod_ip: Some("10.0.0.9".into()),
            ..Default::default()
        };
        let view = PodView {
            pod: &d.pod,
            objects: &objects,
            placement: &placement,
        };
        let c = &d.pod.spec.as_ref().unwrap().containers[0];
        let env = resolve(view, c).unwrap();
        let get = |k: &str| env.get(k);
        assert_eq!(get("CM_a"), Some("overridden"));
        assert_eq!(get("CM_b"), Some("2"));
        assert_eq!(
            get("CM_bad=name"),
            None,
            "an invalid envFrom key is skipped"
        );
        assert_eq!(get("TOKEN"), Some("t"));
        assert_eq!(get("PLAIN"), Some("v"));
        assert_eq!(get("B"), Some("v-b-$(LATER)-$(PLAIN)"));
        assert_eq!(get("K"), Some("1"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("OPTKEY"), None);
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("NS"), Some("ns"));
        assert_eq!(get("UID"), Some("u"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("TEAM"), Some("blue"));
        assert_eq!(get("NODE"), Some("vnode"));
        assert_eq!(get("SA"), Some("sa"));
        assert_eq!(get("IP"), Some("10.0.0.9"));
        assert_eq!(get("CPU"), Some("500"));
        assert_eq!(get("MEM"), Some("128"), "an unset request is the limit");
        // envFrom first (in source order), then env in order
        let names: Vec<&str> = env.vars().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..5], ["CM_a", "CM_b", "TOKEN", "pw", "PLAIN"]);
    }

    #[test]
    fn missing_references_name_what_is_missing() {
        let d = request();
        let placement = Placement::default();
        let c = &d.pod.spec.as_ref().unwrap().containers[0];
        let empty = PodObjects::default();
        let view = PodView {
            pod: &d.pod,
            objects: &empty,
            placement: &placement,
        };
        let e = resolve(view, c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "envFrom: ConfigMap \"cm\" was not sent with the pod"
        );
        assert_eq!(
            e.with_field_names(),
            "envFrom: configMap \"cm\" was not sent with the pod"
        );
        let mut c2 = c.clone();
        c2.env_from = None;
        let e = resolve(view, &c2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "env \"K\": key \"a\" of ConfigMap \"cm\" was not sent with the pod"
        );
        let mut c3 = c2.clone();
        c3.env =
            Some(vec![serde_json::from_value(json!(
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels[\"app\"]"}}}
        ))
        .unwrap()]);
        let e = resolve(view, &c3).unwrap_err().to_string();
        assert!(
            e.starts_with("env \"X\": fieldRef") && e.contains("not supported"),
            "{e}"
        );
    }

    #[test]
    fn backend_variables_come_first_and_can_be_replaced() {
        let d = request();
        let objects = PodObjects::from_request(&d);
        let placement = Placement::default();
        let view = PodView {
            pod: &d.pod,
            objects: &objects,
            placement: &placement,
        };
        let c: Container = serde_json::from_value(json!({"name": "c", "env": [
            {"name": "GREETING", "value": "hi $(HOME)"},
            {"name": "HOME", "value": "/elsewhere"}
        ]}))
        .unwrap();
        let mut env = Env::new();
        env.set("HOME", "/work".into());
        resolve_into(view, &c, &mut env, &|v| v.to_uppercase()).unwrap();
        assert_eq!(
            env.into_vars(),
            vec![
                ("HOME".to_string(), "/ELSEWHERE".to_string()),
                ("GREETING".to_string(), "HI /WORK".to_string())
            ]
        );
    }
}
