//! Building the plugin's `RetrievedPodData` from a `PodCreateRequests`: per
//! container, the ConfigMaps, Secrets and projected maps its volume mounts and
//! env reference.
//!
//! As upstream's API server: a referenced object missing from the request is
//! logged and skipped, not refused (the plugin decides what a pod lacking it
//! means). Upstream's virtual kubelet renders a projected volume (the
//! service-account token, `kube-root-ca.crt`, the downward API) into one map in
//! `projectedvolumesmaps` and does not send its ConfigMap/Secret sources apart.
//! `emptyDirs` is left empty (`null` on the wire), as upstream now does: the
//! plugin lays emptyDirs out itself.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};

use crate::types::{PodCreateRequests, RetrievedContainer, RetrievedPodData};

/// Collects one container's references, each object once.
struct Refs<'a> {
    req: &'a PodCreateRequests,
    container: &'a str,
    out: RetrievedContainer,
    seen_cm: HashSet<String>,
    seen_secret: HashSet<String>,
    seen_projected: HashSet<String>,
}

fn find_cm<'a>(list: &'a [ConfigMap], name: &str) -> Option<&'a ConfigMap> {
    list.iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

fn find_secret<'a>(list: &'a [Secret], name: &str) -> Option<&'a Secret> {
    list.iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

impl<'a> Refs<'a> {
    fn config_map(&mut self, name: &str, optional: Option<bool>, via: &str) -> Result<(), String> {
        if self.seen_cm.contains(name) {
            return Ok(());
        }
        match find_cm(&self.req.configmaps, name) {
            Some(cm) => {
                self.seen_cm.insert(name.to_string());
                self.out.config_maps.push(cm.clone());
                Ok(())
            }
            None if optional == Some(true) => Ok(()),
            None => {
                tracing::warn!(
                    container = %self.container,
                    "ConfigMap {name:?} ({via}) is not in the request's configmaps; going on without it"
                );
                Ok(())
            }
        }
    }

    fn secret(&mut self, name: &str, optional: Option<bool>, via: &str) -> Result<(), String> {
        if self.seen_secret.contains(name) {
            return Ok(());
        }
        match find_secret(&self.req.secrets, name) {
            Some(s) => {
                self.seen_secret.insert(name.to_string());
                self.out.secrets.push(s.clone());
                Ok(())
            }
            None if optional == Some(true) => Ok(()),
            None => {
                tracing::warn!(
                    container = %self.container,
                    "Secret {name:?} ({via}) is not in the request's secrets; going on without it"
                );
                Ok(())
            }
        }
    }

    fn volume(&mut self, v: &Volume) -> Result<(), String> {
        let via = format!("volume {:?}", v.name);
        if let Some(cm) = &v.config_map {
            self.config_map(&cm.name, cm.optional, &via)?;
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or("");
            if name.is_empty() {
                return Err(format!("{via}: secret.secretName is required"));
            }
            self.secret(name, s.optional, &via)?;
        }
        if let Some(p) = &v.projected {
            // the client renders each projected volume as a ConfigMap named after it;
            // its sources are then in that map already
            if let Some(m) = find_cm(&self.req.projected_volumes_maps, &v.name) {
                if self.seen_projected.insert(v.name.clone()) {
                    self.out.projected_volume_maps.push(m.clone());
                }
                return Ok(());
            }
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    self.config_map(&cm.name, cm.optional, &via)?;
                }
                if let Some(s) = &src.secret {
                    self.secret(&s.name, s.optional, &via)?;
                }
            }
        }
        Ok(())
    }

    fn env(&mut self, c: &Container) -> Result<(), String> {
        for e in c.env.iter().flatten() {
            let Some(from) = &e.value_from else { continue };
            let via = format!("env {:?}", e.name);
            if let Some(r) = &from.config_map_key_ref {
                self.config_map(&r.name, r.optional, &via)?;
            }
            if let Some(r) = &from.secret_key_ref {
                self.secret(&r.name, r.optional, &via)?;
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                self.config_map(&r.name, r.optional, "envFrom")?;
            }
            if let Some(r) = &e.secret_ref {
                self.secret(&r.name, r.optional, "envFrom")?;
            }
        }
        Ok(())
    }
}

fn container_data(
    req: &PodCreateRequests,
    pod: &Pod,
    c: &Container,
) -> Result<RetrievedContainer, String> {
    let mut refs = Refs {
        req,
        container: &c.name,
        out: RetrievedContainer {
            name: c.name.clone(),
            ..Default::default()
        },
        seen_cm: HashSet::new(),
        seen_secret: HashSet::new(),
        seen_projected: HashSet::new(),
    };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = volumes.and_then(|vs| vs.iter().find(|v| v.name == m.name)) else {
            return Err(format!(
                "container {:?}: volumeMount {:?} names no volume of the pod",
                c.name, m.name
            ));
        };
        refs.volume(v)?;
    }
    refs.env(c)?;
    Ok(refs.out)
}

/// The plugin's view of a pod to create. Errors name a volumeMount without
/// its volume. `job_config` is sent as `jobConfig`; `None` sends upstream's
/// zero `ScriptBuildConfig`, as Go always writes one.
pub fn build(
    req: &PodCreateRequests,
    job_config: Option<&serde_json::Value>,
) -> Result<RetrievedPodData, String> {
    let pod = &req.pod;
    let spec = pod.spec.as_ref().ok_or("spec is required")?;
    let mut containers = Vec::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        containers.push(container_data(req, pod, c)?);
    }
    Ok(RetrievedPodData {
        pod: pod.clone(),
        containers,
        job_config: Some(job_config.cloned().unwrap_or_else(zero_script_build_config)),
        job_script: String::new(),
    })
}

/// Go's zero `ScriptBuildConfig`, as upstream's API server sends it when none
/// is configured.
pub fn zero_script_build_config() -> serde_json::Value {
    serde_json::json!({
        "SingularityHubProxy": {"server": "", "master_token": "", "cache_validity_seconds": 0},
        "ApptainerOptions": {"executable": "", "fakeroot": false, "containall": false,
            "fuseMode": "", "noInit": false, "noHome": false, "noPrivs": false,
            "nvidiaSupport": false, "cleanenv": false, "unsquash": false},
        "Volumes": {"scratch_area": "", "apptainer_cachedir": "", "image_dir": "",
            "additional_directories_in_path": null, "fuse_sleep_seconds": 0}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> PodCreateRequests {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn per_container_references() {
        let r = req(json!({
            "pod": {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}, "spec": {
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "creds", "secret": {"secretName": "db"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "opt", "configMap": {"name": "absent", "optional": true}}
                ],
                "initContainers": [{"name": "init", "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}],
                "containers": [{"name": "main",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/c"}, {"name": "scratch", "mountPath": "/s"},
                                     {"name": "kube-api-access-x", "mountPath": "/var/run/secrets"},
                                     {"name": "opt", "mountPath": "/o"}],
                    "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "x"}}}],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}]}]
            }},
            "configmaps": [{"metadata": {"name": "app-config"}, "data": {"x": "1"}},
                           {"metadata": {"name": "env-cm"}, "data": {"Y": "2"}},
                           {"metadata": {"name": "unused"}}],
            "secrets": [{"metadata": {"name": "db"}, "stringData": {"pw": "s"}}],
            "projectedvolumesmaps": [{"metadata": {"name": "kube-api-access-x"}, "data": {"token": "t"}}]
        }));
        let d = build(&r, None).unwrap();
        assert_eq!(d.containers.len(), 2);
        let init = &d.containers[0];
        assert_eq!(init.name, "init");
        assert!(init.empty_dirs.is_empty());
        assert!(init.config_maps.is_empty() && init.secrets.is_empty());
        assert_eq!(d.job_config, Some(zero_script_build_config()));
        let main = &d.containers[1];
        let names: Vec<_> = main
            .config_maps
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["app-config", "env-cm"]);
        assert_eq!(main.secrets.len(), 1);
        assert_eq!(main.projected_volume_maps.len(), 1);
        assert!(main.empty_dirs.is_empty());
    }

    #[test]
    fn missing_references_are_skipped_as_upstream_does() {
        // a projected volume rendered into projectedvolumesmaps needs none of its sources
        // apart; a missing env ConfigMap is left for the plugin to judge
        let r = req(json!({
            "pod": {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}, "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt"}}]}}],
                "containers": [{"name": "main",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/c"},
                                     {"name": "kube-api-access-x", "mountPath": "/var/run/secrets"}],
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other-cm", "key": "k"}}}]}]}},
            "projectedvolumesmaps": [{"metadata": {"name": "kube-api-access-x"},
                "data": {"token": "t", "ca.crt": "pem"}}]
        }));
        let d = build(&r, None).unwrap();
        assert!(d.containers[0].config_maps.is_empty());
        assert_eq!(d.containers[0].projected_volume_maps.len(), 1);
        // a volumeMount naming no volume of the pod is still an error
        let r = req(json!({
            "pod": {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}, "spec": {
                "containers": [{"name": "main", "volumeMounts": [{"name": "nope", "mountPath": "/c"}]}]}}
        }));
        assert!(build(&r, None).unwrap_err().contains("\"nope\""));
    }
}
