//! Input rules of the interLink API: Kubernetes names and pod UIDs. The API
//! server applies them; plugins may reuse them.
//!
//! Every `check_*` function answers a message that names the offending field and
//! value, ready for a 400 `{"error": ...}` body.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;

use crate::types::{LogStruct, pod_name, pod_namespace, pod_uid};

/// Longest accepted pod UID (Kubernetes UIDs are 36-character UUIDs).
pub const MAX_UID_LEN: usize = 128;

/// A DNS label: `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, at most 63 characters
/// (namespaces, container names).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS subdomain: dot-separated DNS labels, at most 253 characters (pod names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A lowercase UUID `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (what upstream demands
/// of `/getLogs`' `PodUID`).
pub fn is_lowercase_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A pod UID safe to use as a file or job name: `[A-Za-z0-9._-]`, not starting
/// with a dot, at most [`MAX_UID_LEN`]. Every UUID passes; so do the UIDs CRI
/// tools make up (`cri-test-uid-...`).
pub fn is_safe_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_UID_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Longest `mountPath`, `subPath` or `workingDir` accepted (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Why a path from a pod spec cannot reach the plugins' command lines and job
/// scripts, if it cannot. Refused: `,` (it separates apptainer/singularity
/// `--bind` entries: `/x,/etc:/hostetc` would add a bind of the host's `/etc`),
/// `:` (it separates `host:container[:options]` in `--bind` and podman/docker
/// `-v`; Kubernetes itself refuses it only on Windows nodes), control characters
/// (a newline ends a job-script line), quotes and backslashes (shell quoting),
/// and `..` components (a path outside the volume or the pod's directory).
pub fn path_problem(s: &str) -> Option<String> {
    if s.len() > MAX_PATH_LEN {
        return Some(format!("is longer than {MAX_PATH_LEN} bytes"));
    }
    for c in s.chars() {
        let why = match c {
            ',' => "a comma (it separates apptainer/singularity --bind entries)",
            ':' => "a colon (it separates the parts of a --bind or -v volume spec)",
            '"' | '\'' => "a quote",
            '\\' => "a backslash",
            c if c.is_control() => "a control character (newline, tab, ...)",
            _ => continue,
        };
        return Some(format!("must not contain {why}"));
    }
    if s.split('/').any(|p| p == "..") {
        return Some("must not have a '..' component".into());
    }
    None
}

/// A container-side path (`mountPath`, `workingDir`): absolute, and free of
/// what [`path_problem`] refuses.
pub fn absolute_path_problem(s: &str) -> Option<String> {
    if !s.starts_with('/') {
        return Some("must be an absolute path (start with '/')".into());
    }
    path_problem(s)
}

/// A path inside a volume (`subPath`): relative, not empty, and free of what
/// [`path_problem`] refuses.
pub fn relative_path_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.starts_with('/') {
        return Some("must be a relative path (not start with '/')".into());
    }
    path_problem(s)
}

/// The paths of one (init) container: every `volumeMounts[].mountPath` and
/// `subPath`, and `workingDir`. Messages name the container and the field.
pub fn check_container_paths(
    kind: &str,
    c: &k8s_openapi::api::core::v1::Container,
) -> Result<(), String> {
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        if let Some(why) = absolute_path_problem(&m.mount_path) {
            return Err(format!(
                "{kind} {:?}: volumeMounts[{i}].mountPath {:?} {why}",
                c.name, m.mount_path
            ));
        }
        if let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty())
            && let Some(why) = relative_path_problem(sp)
        {
            return Err(format!(
                "{kind} {:?}: volumeMounts[{i}].subPath {sp:?} {why}",
                c.name
            ));
        }
    }
    if let Some(wd) = c.working_dir.as_deref().filter(|s| !s.is_empty())
        && let Some(why) = absolute_path_problem(wd)
    {
        return Err(format!("{kind} {:?}: workingDir {wd:?} {why}", c.name));
    }
    Ok(())
}

/// The pod's UID is present and safe.
pub fn check_pod_uid(pod: &Pod) -> Result<(), String> {
    check_uid_value(pod_uid(pod), "metadata.uid")
}

fn check_uid_value(u: &str, field: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err(format!("{field} is required"));
    }
    if !is_safe_uid(u) {
        return Err(format!(
            "{field} {u:?} is not a valid pod UID (letters, digits, '-', '_', '.', at most {MAX_UID_LEN} characters)"
        ));
    }
    Ok(())
}

/// A pod named by `/delete`, `/status`, `/updateCache`: a valid UID, and valid
/// names where they are given.
pub fn check_pod_ref(pod: &Pod) -> Result<(), String> {
    check_pod_ref_fields(pod_uid(pod), pod_name(pod), pod_namespace(pod))
}

/// [`check_pod_ref`] on the metadata fields themselves (empty = not given).
pub fn check_pod_ref_fields(uid: &str, name: &str, ns: &str) -> Result<(), String> {
    check_uid_value(uid, "metadata.uid")?;
    if !name.is_empty() && !is_dns_subdomain(name) {
        return Err(format!(
            "metadata.name {name:?} is not a valid DNS subdomain"
        ));
    }
    if !ns.is_empty() && !is_dns_label(ns) {
        return Err(format!(
            "metadata.namespace {ns:?} is not a valid DNS label"
        ));
    }
    Ok(())
}

/// A pod to create: UID, name and namespace present and valid; at least one
/// container; every (init) container name a DNS label and unique in the pod.
pub fn check_pod_for_create(pod: &Pod) -> Result<(), String> {
    check_pod_uid(pod)?;
    let name = pod_name(pod);
    if name.is_empty() {
        return Err("metadata.name is required".into());
    }
    if !is_dns_subdomain(name) {
        return Err(format!(
            "metadata.name {name:?} is not a valid DNS subdomain"
        ));
    }
    let ns = pod_namespace(pod);
    if ns.is_empty() {
        return Err("metadata.namespace is required".into());
    }
    if !is_dns_label(ns) {
        return Err(format!(
            "metadata.namespace {ns:?} is not a valid DNS label"
        ));
    }
    let Some(spec) = &pod.spec else {
        return Err("spec is required".into());
    };
    if spec.containers.is_empty() {
        return Err("spec.containers must not be empty".into());
    }
    let mut seen = HashSet::new();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("spec.initContainers", c));
    for (field, c) in init.chain(spec.containers.iter().map(|c| ("spec.containers", c))) {
        if !is_dns_label(&c.name) {
            return Err(format!(
                "{field}: container name {:?} is not a valid DNS label",
                c.name
            ));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!(
                "{field}: container name {:?} is used twice",
                c.name
            ));
        }
        check_container_paths(field, c)?;
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !is_dns_label(&v.name) {
            return Err(format!(
                "spec.volumes[{i}]: name {:?} is not a valid DNS label",
                v.name
            ));
        }
    }
    Ok(())
}

/// A `/getLogs` request, with upstream's rules: `Namespace` and `ContainerName`
/// are DNS labels, `PodUID` a lowercase UUID, numbers not negative.
pub fn check_log_request(req: &LogStruct) -> Result<(), String> {
    check_log_names(req)?;
    if !is_lowercase_uuid(&req.pod_uid) {
        return Err(format!("PodUID {:?} is not a lowercase UUID", req.pod_uid));
    }
    Ok(())
}

/// The parts of [`check_log_request`] that do not concern the UID (for servers
/// that also accept the UIDs of pods they created, whatever their form).
pub fn check_log_names(req: &LogStruct) -> Result<(), String> {
    if !is_dns_label(&req.namespace) {
        return Err(format!(
            "Namespace {:?} is not a valid DNS label",
            req.namespace
        ));
    }
    if !is_dns_label(&req.container_name) {
        return Err(format!(
            "ContainerName {:?} is not a valid DNS label",
            req.container_name
        ));
    }
    if !req.pod_name.is_empty() && !is_dns_subdomain(&req.pod_name) {
        return Err(format!(
            "PodName {:?} is not a valid DNS subdomain",
            req.pod_name
        ));
    }
    let o = &req.opts;
    for (field, v) in [
        ("Opts.Tail", o.tail),
        ("Opts.Bytes", o.limit_bytes),
        ("Opts.SinceSeconds", o.since_seconds),
    ] {
        if v < 0 {
            return Err(format!("{field} must not be negative, got {v}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_uuids() {
        for ok in ["a", "default", "kube-system", "a1", "0"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_lowercase_uuid("0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11"));
        for bad in [
            "0C6B9AB4-8D43-4B4E-9A1C-6A2F0E8F2B11",
            "0c6b9ab48d434b4e9a1c6a2f0e8f2b11",
            "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b1g",
            "",
        ] {
            assert!(!is_lowercase_uuid(bad), "{bad}");
        }
        assert!(is_safe_uid("cri-test-uid-1"));
        assert!(!is_safe_uid("../etc"));
        assert!(!is_safe_uid("a/b"));
        assert!(!is_safe_uid(".hidden"));
    }

    #[test]
    fn create_rules() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let good = pod(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [{"name": "main"}], "initContainers": [{"name": "init"}]}}),
        );
        check_pod_for_create(&good).unwrap();
        let cases = [
            (
                json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}}),
                "metadata.uid is required",
            ),
            (
                json!({"metadata": {"name": "p", "namespace": "Default", "uid": "u"}, "spec": {"containers": [{"name": "c"}]}}),
                "metadata.namespace \"Default\"",
            ),
            (
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"containers": []}}),
                "spec.containers must not be empty",
            ),
            (
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"containers": [{"name": "C_1"}]}}),
                "container name \"C_1\"",
            ),
            (
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "c"}]}}),
                "used twice",
            ),
            (
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "a/b"}, "spec": {"containers": [{"name": "c"}]}}),
                "not a valid pod UID",
            ),
        ];
        for (doc, want) in cases {
            let err = check_pod_for_create(&pod(doc)).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn path_rules() {
        for ok in ["/", "/etc/cfg", "/data/a..b/.x", "/a/./b", "/with space/é"] {
            assert_eq!(absolute_path_problem(ok), None, "{ok}");
        }
        for (bad, want) in [
            ("/x,/etc:/hostetc", "comma"),
            ("/x:/etc", "colon"),
            ("/x\n#SBATCH --uid=0", "control character"),
            ("/x\ty", "control character"),
            ("/x\u{7f}", "control character"),
            ("/x\"y", "quote"),
            ("/x'y", "quote"),
            ("/x\\y", "backslash"),
            ("/../../tmp/x", "'..'"),
            ("/a/..", "'..'"),
            ("relative", "absolute"),
            ("", "absolute"),
        ] {
            let why = absolute_path_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(why.contains(want), "{bad:?}: {why}");
        }
        assert!(absolute_path_problem(&format!("/{}", "a".repeat(MAX_PATH_LEN))).is_some());
        assert_eq!(relative_path_problem("a/b.txt"), None);
        for bad in ["/a", "a/../../b", "..", "a,b", "a:b", "a\nb", ""] {
            assert!(relative_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn create_refuses_unsafe_paths_and_volume_names() {
        let pod = |c: serde_json::Value, vols: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"},
                "spec": {"containers": [c], "volumes": vols}}),
            )
            .unwrap()
        };
        let v = json!([{"name": "v", "emptyDir": {}}]);
        check_pod_for_create(&pod(
            json!({"name": "c", "workingDir": "/w", "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "s/t"}]}),
            v.clone(),
        ))
        .unwrap();
        for (c, want) in [
            (
                json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/x,/etc:/hostetc"}]}),
                "spec.containers \"c\": volumeMounts[0].mountPath \"/x,/etc:/hostetc\" must not contain a comma",
            ),
            (
                json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "../up"}]}),
                "volumeMounts[0].subPath \"../up\"",
            ),
            (
                json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "/abs"}]}),
                "must be a relative path",
            ),
            (
                json!({"name": "c", "workingDir": "/../../../../tmp/x"}),
                "workingDir \"/../../../../tmp/x\" must not have a '..' component",
            ),
            (
                json!({"name": "c", "workingDir": "w"}),
                "must be an absolute path",
            ),
        ] {
            let err = check_pod_for_create(&pod(c, v.clone())).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
        let err = check_pod_for_create(&pod(
            json!({"name": "c"}),
            json!([{"name": "V_1", "emptyDir": {}}]),
        ))
        .unwrap_err();
        assert!(err.contains("spec.volumes[0]: name \"V_1\""), "{err}");
    }

    #[test]
    fn log_rules() {
        let mut req = LogStruct {
            namespace: "default".into(),
            pod_uid: "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11".into(),
            pod_name: "p".into(),
            container_name: "main".into(),
            ..Default::default()
        };
        check_log_request(&req).unwrap();
        req.opts.tail = -1;
        assert!(check_log_request(&req).unwrap_err().contains("Opts.Tail"));
        req.opts.tail = 0;
        req.pod_uid = "NOT-A-UUID".into();
        assert!(check_log_request(&req).unwrap_err().contains("PodUID"));
        assert!(check_log_names(&req).is_ok());
        req.container_name = "Main".into();
        assert!(check_log_names(&req).unwrap_err().contains("ContainerName"));
    }
}
