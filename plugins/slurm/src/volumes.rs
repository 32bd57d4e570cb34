//! A pod's volumes as files under its directory, and where each container sees them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use interlink_plugin_kit::pod::PodView;
use interlink_plugin_kit::pod::volumes::{self as pod_volumes, Content, VolumeFile};
use k8s_openapi::api::core::v1::Pod;

/// One file to write, its path relative to the pod directory
/// (`volumes/<volume>/<file>`).
pub type PlannedFile = VolumeFile;

/// A volume as a container sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    /// Where the volume is on the node.
    pub host: PathBuf,
    /// The container's mount path.
    pub path: String,
    pub read_only: bool,
    /// The mount's `subPath` inside the volume. A container runtime never gets
    /// `host/sub_path` as a path: the job opens it beneath `host` without following
    /// links just before the container starts (see `script.rs`, `kit::subpath`).
    pub sub_path: Option<String>,
    /// Missing directories of the subPath may be made (a writable emptyDir).
    pub create: bool,
}

impl Mount {
    /// The mounted directory or file as a path (for runtime `none`, where the
    /// command runs on the node with no isolation to protect).
    pub fn source(&self) -> PathBuf {
        match &self.sub_path {
            Some(sp) => self.host.join(sp),
            None => self.host.clone(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub files: Vec<PlannedFile>,
    /// Directories to create (emptyDirs, and every volume's own directory).
    pub dirs: Vec<PathBuf>,
    /// Mounts by container name (init and regular).
    pub mounts: BTreeMap<String, Vec<Mount>>,
}

/// A hostPath volume's path, absolute and lexically normalised (`.`, `..` and
/// repeated `/` resolved), so what is checked is what is bound.
pub fn normal_host_path(volume: &str, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() || path.chars().any(|c| c.is_control()) {
        return Err(format!(
            "volume {volume:?}: hostPath {path:?} must be an absolute path"
        ));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Refuse every hostPath volume outside the admin's `allowed_host_paths` (none by
/// default). Paths are compared normalised, and, when they exist on this host,
/// with their symlinks resolved too.
pub fn check_host_paths(pod: &Pod, allowed: &[PathBuf]) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let prefixes: Vec<PathBuf> = allowed
        .iter()
        .filter_map(|a| normal_host_path("", &a.to_string_lossy()).ok())
        .collect();
    // an allowed directory may itself be a symlink: its target is allowed too
    let real_prefixes: Vec<PathBuf> = prefixes
        .iter()
        .filter_map(|a| std::fs::canonicalize(a).ok())
        .collect();
    let under = |p: &Path| {
        prefixes
            .iter()
            .chain(&real_prefixes)
            .any(|a| p.starts_with(a))
    };
    for v in spec.volumes.iter().flatten() {
        let Some(hp) = &v.host_path else { continue };
        let path = normal_host_path(&v.name, &hp.path)?;
        let real = std::fs::canonicalize(&path).ok();
        if !under(&path) || real.as_deref().is_some_and(|r| !under(r)) {
            return Err(format!(
                "volume {:?}: hostPath {:?}{} is not allowed: the site admin lists the host directories pods may mount in allowed_host_paths ({})",
                v.name,
                hp.path,
                match &real {
                    Some(r) if r != &path => format!(" (resolves to {})", r.display()),
                    _ if path.as_os_str() != hp.path.as_str() =>
                        format!(" (is {})", path.display()),
                    _ => String::new(),
                },
                if prefixes.is_empty() {
                    "none".to_string()
                } else {
                    prefixes
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// Plan every volume of the pod: files to write (as the kit's pod model fills
/// them) and mounts per container.
pub fn plan(view: PodView<'_>, pod_dir: &Path) -> Result<VolumePlan, String> {
    let mut plan = VolumePlan::default();
    let Some(spec) = &view.pod.spec else {
        return Ok(plan);
    };
    // each volume's directory on the node, and whether containers write it
    let mut hosts: BTreeMap<String, Result<(PathBuf, bool), String>> = BTreeMap::new();
    for v in pod_volumes::plan(view).map_err(|e| e.to_string())? {
        let rel = PathBuf::from("volumes").join(&v.name);
        let host = match v.content {
            // bound as normalised, the form check_host_paths allowed
            Content::HostPath { path, .. } => normal_host_path(&v.name, &path).map(|p| (p, false)),
            Content::Files(files) => {
                plan.files.extend(files.into_iter().map(|f| VolumeFile {
                    path: rel.join(&f.path),
                    ..f
                }));
                plan.dirs.push(rel.clone());
                Ok((pod_dir.join(rel), false))
            }
            Content::EmptyDir => {
                plan.dirs.push(rel.clone());
                Ok((pod_dir.join(rel), true))
            }
            Content::Unsupported => Err(format!(
                "volume {:?}: this kind of volume is not supported by the slurm plugin",
                v.name
            )),
        };
        hosts.insert(v.name, host);
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        let mut mounts = Vec::new();
        for vm in c.volume_mounts.iter().flatten() {
            let (host, writable) = match hosts.get(&vm.name) {
                Some(Ok(h)) => h.clone(),
                Some(Err(e)) => return Err(e.clone()),
                None => {
                    return Err(format!(
                        "container {:?} mounts volume {:?}, which the pod does not define",
                        c.name, vm.name
                    ));
                }
            };
            let sub_path = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sp) => {
                    interlink_plugin_kit::subpath::components(sp).map_err(|e| {
                        format!("container {:?}: volumeMount {:?}: {e}", c.name, vm.name)
                    })?;
                    Some(sp.to_string())
                }
                None => None,
            };
            if !vm.mount_path.starts_with('/') {
                return Err(format!(
                    "container {:?}: mountPath {:?} must be absolute",
                    c.name, vm.mount_path
                ));
            }
            mounts.push(Mount {
                volume: vm.name.clone(),
                host,
                path: vm.mount_path.clone(),
                read_only: vm.read_only.unwrap_or(false),
                create: writable && sub_path.is_some(),
                sub_path,
            });
        }
        plan.mounts.insert(c.name.clone(), mounts);
    }
    Ok(plan)
}

/// Write the planned files and directories under `pod_dir`. Volume directories
/// are 0755 inside the private pod directory (a container running as another
/// user reads them through its bind); each file has its planned mode from the
/// moment it exists.
pub fn write(plan: &VolumePlan, pod_dir: &Path) -> std::io::Result<()> {
    for d in &plan.dirs {
        pod_volumes::write_files(&pod_dir.join(d), &[])?;
    }
    pod_volumes::write_files(pod_dir, &plan.files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink::RetrievedPodData;
    use interlink_plugin_kit::pod::{Placement, PodObjects};
    use serde_json::json;

    fn plan_of(pod: &Pod, pod_dir: &Path, objects: &PodObjects) -> Result<VolumePlan, String> {
        let placement = Placement::default();
        plan(
            PodView {
                pod,
                objects,
                placement: &placement,
            },
            pod_dir,
        )
    }

    fn data() -> RetrievedPodData {
        serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
              "spec": {
                "volumes": [
                  {"name": "cfg", "configMap": {"name": "cm1", "items": [{"key": "a", "path": "sub/a.txt"}]}},
                  {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 256}},
                  {"name": "kube-api-access-1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                  {"name": "scratch", "emptyDir": {}},
                  {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels['app']"}}]}},
                  {"name": "data", "hostPath": {"path": "/srv/data"}},
                  {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}}
                ],
                "containers": [{"name": "main", "image": "busybox", "volumeMounts": [
                  {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true},
                  {"name": "sec", "mountPath": "/etc/sec/key", "subPath": "key"},
                  {"name": "kube-api-access-1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                  {"name": "scratch", "mountPath": "/scratch"},
                  {"name": "info", "mountPath": "/etc/info"},
                  {"name": "data", "mountPath": "/data"}
                ]}]}},
            "container": [{"name": "main",
              "configMaps": [{"metadata": {"name": "cm1"}, "data": {"a": "hello", "b": "unused"}}],
              "secrets": [{"metadata": {"name": "s1"}, "data": {"key": "czNjcjN0"}}],
              "projectedvolumemaps": [{"metadata": {"name": "kube-api-access-1"}, "data": {"token": "tok", "ca.crt": "ca"}}],
              "emptyDirs": []}]
        }))
        .unwrap()
    }

    #[test]
    fn plans_every_kind() {
        let d = data();
        let refs = PodObjects::from_request(&d);
        let p = plan_of(&d.pod, Path::new("/pods/u1"), &refs).unwrap();
        let find = |rel: &str| p.files.iter().find(|f| f.path == Path::new(rel)).cloned();
        assert_eq!(find("volumes/cfg/sub/a.txt").unwrap().contents, b"hello");
        assert!(find("volumes/cfg/b").is_none());
        let s = find("volumes/sec/key").unwrap();
        assert_eq!((s.contents.as_slice(), s.mode), (&b"s3cr3t"[..], 0o400));
        assert_eq!(
            find("volumes/kube-api-access-1/token").unwrap().contents,
            b"tok"
        );
        assert_eq!(find("volumes/info/labels").unwrap().contents, b"x");
        assert!(p.dirs.contains(&PathBuf::from("volumes/scratch")));
        let m = &p.mounts["main"];
        assert_eq!(m[0].host, Path::new("/pods/u1/volumes/cfg"));
        assert!(m[0].read_only);
        assert_eq!(m[1].host, Path::new("/pods/u1/volumes/sec"));
        assert_eq!(m[1].sub_path.as_deref(), Some("key"));
        assert!(!m[1].create, "a Secret volume is not written by containers");
        assert_eq!(m[1].source(), Path::new("/pods/u1/volumes/sec/key"));
        assert_eq!(m[5].host, Path::new("/srv/data"));
    }

    #[test]
    fn clear_errors() {
        let mut d = data();
        let spec = d.pod.spec.as_mut().unwrap();
        spec.containers[0]
            .volume_mounts
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(json!({"name": "pvc", "mountPath": "/pvc"})).unwrap());
        let refs = PodObjects::from_request(&d);
        let e = plan_of(&d.pod, Path::new("/p"), &refs).unwrap_err();
        assert!(e.contains("\"pvc\"") && e.contains("not supported"), "{e}");

        let mut d = data();
        d.containers[0].config_maps.clear();
        let e = plan_of(&d.pod, Path::new("/p"), &PodObjects::from_request(&d)).unwrap_err();
        assert!(e.contains("cm1"), "{e}");

        let mut d = data();
        d.containers[0].config_maps[0]
            .data
            .as_mut()
            .unwrap()
            .insert("../x".into(), "y".into());
        d.pod.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
            .config_map
            .as_mut()
            .unwrap()
            .items = None;
        let e = plan_of(&d.pod, Path::new("/p"), &PodObjects::from_request(&d)).unwrap_err();
        assert!(e.contains("../x"), "{e}");
    }

    #[test]
    fn downward_items_keep_their_own_mode() {
        let d = data();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"volumes": [
                {"name": "proj", "projected": {"defaultMode": 0o640, "sources": [{"downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
                    {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
                ]}}]}},
                {"name": "plain", "downwardAPI": {"defaultMode": 0o600, "items": [
                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o444},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
                ]}}
            ], "containers": [{"name": "main", "image": "busybox"}]}
        }))
        .unwrap();
        let p = plan_of(&pod, Path::new("/p"), &PodObjects::from_request(&d)).unwrap();
        let mode = |rel: &str| {
            let f = p.files.iter().find(|f| f.path == Path::new(rel)).unwrap();
            f.mode
        };
        assert_eq!(mode("volumes/proj/name"), 0o400);
        assert_eq!(mode("volumes/proj/ns"), 0o640);
        assert_eq!(mode("volumes/plain/uid"), 0o444);
        assert_eq!(mode("volumes/plain/name"), 0o600);
    }

    #[test]
    fn writes_files_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = data();
        let dir = tempfile::tempdir().unwrap();
        let p = plan_of(&d.pod, dir.path(), &PodObjects::from_request(&d)).unwrap();
        write(&p, dir.path()).unwrap();
        let key = dir.path().join("volumes/sec/key");
        assert_eq!(std::fs::read(&key).unwrap(), b"s3cr3t");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(dir.path().join("volumes/scratch").is_dir());
    }
}
