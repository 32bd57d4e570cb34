//! Checks on what the API server sends, done once before a provider sees it.
//!
//! A pod's UID becomes a directory name, a job name or a container label in the
//! plugins, so it is held to a safe alphabet. Names follow Kubernetes' rules
//! (DNS labels and subdomains). Each check answers a message naming the field.

use std::collections::HashSet;

use interlink::{LogStruct, PodRef, RetrievedPodData};
use k8s_openapi::api::core::v1::{Container, Pod};

pub use interlink::validate::MAX_UID_LEN;

/// `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, at most 63 characters.
pub fn dns_label(s: &str) -> bool {
    interlink::validate::is_dns_label(s)
}

/// Dot-separated DNS labels, at most 253 characters.
pub fn dns_subdomain(s: &str) -> bool {
    interlink::validate::is_dns_subdomain(s)
}

/// A pod UID safe to use as a file name: `[A-Za-z0-9._-]`, not starting with a dot.
pub fn uid(s: &str) -> bool {
    interlink::validate::is_safe_uid(s)
}

/// A relative path inside a volume (a ConfigMap item's `path`, a `subPath`):
/// not absolute, no `..` component, not empty.
pub fn relative_path(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && s.split('/').all(|c| c != ".." && !c.contains('\0'))
}

/// The paths of a container that reach command lines and job scripts: every
/// `mountPath` and `workingDir` absolute, every `subPath` relative, none with a
/// `..` component, a `,` or `:` (separators of apptainer/singularity `--bind`
/// and podman/docker `-v`), a quote, a backslash or a control character. See
/// [`interlink::validate::path_problem`].
pub fn container_paths(kind: &str, c: &Container) -> Result<(), String> {
    interlink::validate::check_container_paths(kind, c)
}

/// A pod UID as the plugins use it (a directory, job or container name): set,
/// and [`uid`]. The one check every plugin makes of a UID it is given.
pub fn pod_uid(u: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err("metadata.uid is required".into());
    }
    if !uid(u) {
        return Err(format!(
            "metadata.uid {u:?} is not a valid UID (letters, digits, '-', '_', '.', at most {MAX_UID_LEN})"
        ));
    }
    Ok(())
}

fn check_uid(pod: &Pod, what: &str) -> Result<(), String> {
    pod_uid(interlink::pod_uid(pod)).map_err(|e| format!("{what}: {e}"))
}

fn check_names(pod: &Pod, what: &str, name_required: bool) -> Result<(), String> {
    names(
        interlink::pod_name(pod),
        interlink::pod_namespace(pod),
        what,
        name_required,
    )
}

fn names(name: &str, ns: &str, what: &str, name_required: bool) -> Result<(), String> {
    if name.is_empty() {
        if name_required {
            return Err(format!("{what}: metadata.name is required"));
        }
    } else if !dns_subdomain(name) {
        return Err(format!(
            "{what}: metadata.name {name:?} is not a valid DNS subdomain"
        ));
    }
    if !ns.is_empty() && !dns_label(ns) {
        return Err(format!(
            "{what}: metadata.namespace {ns:?} is not a valid DNS label"
        ));
    }
    Ok(())
}

/// A pod named in `/delete`: a valid UID, valid names where given.
pub fn pod_ref(pod: &Pod) -> Result<(), String> {
    named(
        interlink::pod_uid(pod),
        interlink::pod_name(pod),
        interlink::pod_namespace(pod),
    )
}

/// A pod named in `/status`, `/stats` or `/status/watch`: as [`pod_ref`].
pub fn named_pod(pod: &PodRef) -> Result<(), String> {
    named(&pod.uid, &pod.name, &pod.namespace)
}

fn named(uid: &str, name: &str, ns: &str) -> Result<(), String> {
    pod_uid(uid).map_err(|e| format!("pod: {e}"))?;
    names(name, ns, "pod", false)
}

/// The body of `/create`: a pod that can be run.
pub fn create_request(data: &RetrievedPodData) -> Result<(), String> {
    let pod = &data.pod;
    check_uid(pod, "pod")?;
    check_names(pod, "pod", true)?;
    let Some(spec) = pod.spec.as_ref() else {
        return Err("pod: spec is required".into());
    };
    if spec.containers.is_empty() {
        return Err("pod: spec.containers must list at least one container".into());
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        return Err(format!(
            "pod: spec.terminationGracePeriodSeconds must not be negative (got {g})"
        ));
    }
    let mut volumes = HashSet::new();
    for v in spec.volumes.iter().flatten() {
        if !dns_label(&v.name) {
            return Err(format!(
                "volume {:?}: name is not a valid DNS label",
                v.name
            ));
        }
        if !volumes.insert(v.name.as_str()) {
            return Err(format!("volume {:?}: name is used twice", v.name));
        }
        for (p, what) in v
            .config_map
            .iter()
            .flat_map(|c| c.items.iter().flatten())
            .chain(v.secret.iter().flat_map(|s| s.items.iter().flatten()))
            .map(|i| (i.path.as_str(), "item path"))
        {
            if !relative_path(p) {
                return Err(format!(
                    "volume {:?}: {what} {p:?} must be relative without '..'",
                    v.name
                ));
            }
        }
    }
    let mut names = HashSet::new();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("init container", c));
    for (kind, c) in init.chain(spec.containers.iter().map(|c| ("container", c))) {
        if !dns_label(&c.name) {
            return Err(format!(
                "{kind} {:?}: name is not a valid DNS label",
                c.name
            ));
        }
        if !names.insert(c.name.as_str()) {
            return Err(format!(
                "{kind} {:?}: name is used twice in the pod",
                c.name
            ));
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            return Err(format!("{kind} {:?}: image is required", c.name));
        }
        for e in c.env.iter().flatten() {
            if e.name.is_empty() || e.name.contains('=') || e.name.contains('\0') {
                return Err(format!(
                    "{kind} {:?}: env name {:?} is invalid",
                    c.name, e.name
                ));
            }
        }
        let mut mount_paths = HashSet::new();
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains(m.name.as_str()) {
                return Err(format!(
                    "{kind} {:?}: volumeMount names volume {:?}, which the pod does not define",
                    c.name, m.name
                ));
            }
            if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
                return Err(format!(
                    "{kind} {:?}: mountPath {:?} is used twice",
                    c.name, m.mount_path
                ));
            }
        }
        container_paths(kind, c)?;
    }
    for rc in &data.containers {
        if !names.contains(rc.name.as_str()) {
            return Err(format!(
                "container data names {:?}, which is not a container of the pod",
                rc.name
            ));
        }
    }
    Ok(())
}

/// The body of `/getLogs`.
pub fn log_request(req: &LogStruct) -> Result<(), String> {
    if req.pod_uid.is_empty() {
        return Err("PodUID is required".into());
    }
    if !uid(&req.pod_uid) {
        return Err(format!("PodUID {:?} is not a valid UID", req.pod_uid));
    }
    if !dns_label(&req.container_name) {
        return Err(format!(
            "ContainerName {:?} is not a valid DNS label",
            req.container_name
        ));
    }
    if !req.namespace.is_empty() && !dns_label(&req.namespace) {
        return Err(format!(
            "Namespace {:?} is not a valid DNS label",
            req.namespace
        ));
    }
    if !req.pod_name.is_empty() && !dns_subdomain(&req.pod_name) {
        return Err(format!(
            "PodName {:?} is not a valid DNS subdomain",
            req.pod_name
        ));
    }
    let o = &req.opts;
    for (v, what) in [
        (o.tail, "Tail"),
        (o.limit_bytes, "Bytes"),
        (o.since_seconds, "SinceSeconds"),
    ] {
        if v < 0 {
            return Err(format!("Opts.{what} must not be negative (got {v})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns_label("a-b0"));
        assert!(!dns_label("-a"));
        assert!(!dns_label("A"));
        assert!(!dns_label(&"a".repeat(64)));
        assert!(dns_subdomain("a.b-c.d"));
        assert!(!dns_subdomain("a..b"));
        assert!(uid("0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11"));
        assert!(!uid("../etc"));
        assert!(!uid("a/b"));
        assert!(!uid(""));
        assert!(relative_path("a/b.txt"));
        assert!(!relative_path("/a"));
        assert!(!relative_path("a/../../b"));
    }

    fn data(v: serde_json::Value) -> RetrievedPodData {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_checks() {
        let ok = data(
            json!({"pod": {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "volumeMounts": [{"name": "v", "mountPath": "/etc/x"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]}}}),
        );
        create_request(&ok).unwrap();

        let dup = data(json!({"pod": {"metadata": {"name": "p", "uid": "u1"},
            "spec": {"initContainers": [{"name": "c", "image": "i"}], "containers": [{"name": "c", "image": "i"}]}}}));
        assert!(create_request(&dup).unwrap_err().contains("used twice"));

        let bad_mount = data(json!({"pod": {"metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}}}));
        assert!(create_request(&bad_mount).unwrap_err().contains("\"nope\""));

        let no_uid = data(
            json!({"pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
        );
        assert!(create_request(&no_uid).unwrap_err().contains("uid"));

        let bad_vol = data(json!({"pod": {"metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "Bad.Name", "emptyDir": {}}]}}}));
        assert!(
            create_request(&bad_vol)
                .unwrap_err()
                .contains("volume \"Bad.Name\": name is not a valid DNS label")
        );

        let bad_name = data(
            json!({"pod": {"metadata": {"name": "P_Q", "uid": "u"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
        );
        assert!(
            create_request(&bad_name)
                .unwrap_err()
                .contains("metadata.name")
        );
    }

    /// A pod with one container "main" mounting volume "v" at `mount`, with
    /// `sub_path` and `working_dir` when given.
    fn pod_with(
        mount: &str,
        sub_path: Option<&str>,
        working_dir: Option<&str>,
    ) -> RetrievedPodData {
        let mut m = json!({"name": "v", "mountPath": mount});
        if let Some(sp) = sub_path {
            m["subPath"] = json!(sp);
        }
        let mut c = json!({"name": "main", "image": "busybox", "volumeMounts": [m]});
        if let Some(wd) = working_dir {
            c["workingDir"] = json!(wd);
        }
        data(
            json!({"pod": {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [c], "volumes": [{"name": "v", "emptyDir": {}}]}}}),
        )
    }

    #[test]
    fn paths_that_would_change_a_command_line_are_refused() {
        create_request(&pod_with("/data", Some("sub/dir"), Some("/data/w"))).unwrap();
        let cases = [
            // an extra apptainer bind: --bind <dir>:/x,/etc:/hostetc
            (
                pod_with("/x,/etc:/hostetc", None, None),
                "container \"main\": volumeMounts[0].mountPath \"/x,/etc:/hostetc\" must not contain a comma",
            ),
            // podman -v <dir>:/x:/etc would read as options
            (
                pod_with("/x:rw", None, None),
                "mountPath \"/x:rw\" must not contain a colon",
            ),
            (
                pod_with("/x\n#SBATCH --uid=0", None, None),
                "control character",
            ),
            (pod_with("/x\ty", None, None), "control character"),
            (pod_with("/x'y", None, None), "quote"),
            (pod_with("/x\"y", None, None), "quote"),
            (pod_with("/x\\y", None, None), "backslash"),
            (pod_with("/a/../../etc", None, None), "'..'"),
            (pod_with("rel", None, None), "must be an absolute path"),
            (
                pod_with("/d", Some("a,/etc:/e"), None),
                "volumeMounts[0].subPath \"a,/etc:/e\" must not contain a comma",
            ),
            (
                pod_with("/d", Some("../../etc"), None),
                "subPath \"../../etc\" must not have a '..' component",
            ),
            (
                pod_with("/d", Some("/etc"), None),
                "subPath \"/etc\" must be a relative path",
            ),
            (pod_with("/d", Some("a:b"), None), "colon"),
            (
                pod_with("/d", None, Some("/../../../../tmp/x")),
                "container \"main\": workingDir \"/../../../../tmp/x\" must not have a '..' component",
            ),
            (
                pod_with("/d", None, Some("/w,x")),
                "workingDir \"/w,x\" must not contain a comma",
            ),
            (pod_with("/d", None, Some("/w\nx")), "control character"),
            (
                pod_with("/d", None, Some("w")),
                "workingDir \"w\" must be an absolute path",
            ),
        ];
        for (pod, want) in cases {
            let err = create_request(&pod).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        // init containers are held to the same rules, and named as such
        let init = data(json!({"pod": {"metadata": {"name": "p", "uid": "u1"},
            "spec": {"initContainers": [{"name": "setup", "image": "i", "workingDir": "/a:b"}],
                     "containers": [{"name": "c", "image": "i"}]}}}));
        assert!(
            create_request(&init)
                .unwrap_err()
                .starts_with("init container \"setup\": workingDir")
        );
    }
}
