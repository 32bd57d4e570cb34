//! A pod's volumes as files on the engine's host: the kit's pod model says what
//! each volume holds ([`interlink_plugin_kit::pod::volumes`]); here ConfigMap,
//! Secret, projected and downwardAPI volumes are written under
//! `<pod dir>/volumes/<volume>/`, emptyDirs are empty directories there, and
//! each container's volumeMounts become bind mounts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use interlink_plugin_kit::pod::PodView;
use interlink_plugin_kit::pod::volumes::{self as pod_volumes, Content};
use interlink_plugin_kit::subpath::{self, SubPathBind};
use k8s_openapi::api::core::v1::Container;

/// A volume that cannot be prepared: the pod is rejected with this message.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

/// A prepared volume: its host directory and whether mounts are read-only.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Write every volume of the pod under `dir` (`<pod dir>/volumes`). Nothing is
/// written when a volume cannot be provided.
/// A `hostPath` is bound as it is (its real path) when it lies under one of
/// `allowed_host_paths` (the site's `docker.allowed_host_paths`), else refused.
pub fn prepare(
    view: PodView<'_>,
    dir: &Path,
    allowed_host_paths: &[PathBuf],
) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
    let planned = pod_volumes::plan(view).map_err(|e| VolumeError::Invalid(e.to_string()))?;
    let refused = |v: &pod_volumes::PlannedVolume| match &v.content {
        Content::Unsupported => true,
        Content::HostPath { .. } => allowed_host_paths.is_empty(),
        _ => false,
    };
    if let Some(v) = planned.iter().find(|v| refused(v)) {
        return Err(VolumeError::Invalid(format!(
            "volume {:?}: only configMap, secret, projected, downwardAPI and emptyDir volumes are supported by the docker plugin (hostPath too, under the directories the site lists in docker.allowed_host_paths)",
            v.name
        )));
    }
    let mut out = BTreeMap::new();
    for v in planned {
        let path = dir.join(&v.name);
        let io = |err| VolumeError::Io {
            path: path.clone(),
            err,
        };
        if let Content::HostPath { path, kind } = &v.content {
            let real = pod_volumes::host_path(path, kind.as_deref(), Some(allowed_host_paths))
                .map_err(|m| VolumeError::Invalid(format!("volume {:?}: {m}", v.name)))?;
            out.insert(
                v.name,
                HostVolume {
                    path: real,
                    read_only: false,
                },
            );
            continue;
        }
        let read_only = match &v.content {
            Content::Files(files) => {
                pod_volumes::write_files(&path, files).map_err(io)?;
                true
            }
            _ => {
                // emptyDir: written by the containers, whatever user they run as
                mkdir(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(io)?;
                false
            }
        };
        out.insert(v.name, HostVolume { path, read_only });
    }
    Ok(out)
}

/// Write a pod's `resolv.conf` (see `pod::dns`) in its directory `pod_dir`,
/// readable by any user a container runs as; its path, to bind.
pub fn write_resolv_conf(pod_dir: &Path, text: &str) -> Result<PathBuf, VolumeError> {
    let path = pod_dir.join("resolv.conf");
    std::fs::create_dir_all(pod_dir)
        .and_then(|()| std::fs::write(&path, text))
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
        .map_err(|err| VolumeError::Io {
            path: path.clone(),
            err,
        })?;
    Ok(path)
}

/// One container's volumeMounts as `host:container[:ro]` binds, plus the subPath
/// binds to make just before it starts. A subPath is never given to the engine
/// as a path under its volume (a container could have swapped a directory there
/// for a link): the engine binds `<subpath_dir>/<n>`, a mount point of the
/// plugin's own onto which [`subpath::prepare`] binds the subPath opened safely.
pub fn binds(
    c: &Container,
    volumes: &BTreeMap<String, HostVolume>,
    subpath_dir: &Path,
) -> Result<(Vec<String>, Vec<SubPathBind>), VolumeError> {
    let mut out = Vec::new();
    let mut subpaths = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes.get(&m.name).ok_or_else(|| {
            VolumeError::Invalid(format!(
                "container {:?}: volumeMount {:?} names no volume of the pod",
                c.name, m.name
            ))
        })?;
        if !m.mount_path.starts_with('/') {
            return Err(VolumeError::Invalid(format!(
                "container {:?}: mountPath {:?} is not absolute",
                c.name, m.mount_path
            )));
        }
        let mut host = v.path.clone();
        if let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let invalid = |e: subpath::SubPathError| {
                VolumeError::Invalid(format!(
                    "container {:?}: volumeMount {:?}: {e}",
                    c.name, m.name
                ))
            };
            subpath::components(sp).map_err(invalid)?;
            if v.read_only {
                // written by the plugin and never by a container: a missing
                // subPath is an error now rather than when the container starts
                subpath::open_beneath(&v.path, sp, false).map_err(invalid)?;
            }
            let target = subpath_dir.join(subpaths.len().to_string());
            // the engine wants the source to exist when the container is created
            mkdir(&target)?;
            subpaths.push(SubPathBind {
                root: v.path.clone(),
                sub_path: sp.to_string(),
                target: target.clone(),
                create: !v.read_only,
            });
            host = target;
        }
        let ro = v.read_only || m.read_only == Some(true);
        out.push(format!(
            "{}:{}{}",
            host.display(),
            m.mount_path,
            if ro { ":ro" } else { "" }
        ));
    }
    Ok((out, subpaths))
}

fn mkdir(p: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(p).map_err(|err| VolumeError::Io {
        path: p.into(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink::RetrievedPodData;
    use interlink_plugin_kit::pod::{Placement, PodObjects};
    use serde_json::json;

    fn prepare_with(
        volumes: serde_json::Value,
        data: &RetrievedPodData,
        dir: &Path,
    ) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
        prepare_allowing(volumes, data, dir, &[])
    }

    fn prepare_allowing(
        volumes: serde_json::Value,
        data: &RetrievedPodData,
        dir: &Path,
        allowed: &[PathBuf],
    ) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
        let mut pod = data.pod.clone();
        pod.spec =
            Some(serde_json::from_value(json!({"volumes": volumes, "containers": []})).unwrap());
        let objects = PodObjects::from_request(data);
        prepare(
            PodView {
                pod: &pod,
                objects: &objects,
                placement: &Placement::default(),
            },
            dir,
            allowed,
        )
    }

    /// hostPath volumes: refused unless the site allows their directory;
    /// bound at their real path; a link out of an allowed directory, `..`, or
    /// a path elsewhere refused with the reason.
    #[test]
    fn host_paths_only_under_the_allowed_directories() {
        let d = tempfile::tempdir().unwrap();
        let allowed = d.path().join("shared");
        std::fs::create_dir_all(allowed.join("data")).unwrap();
        std::os::unix::fs::symlink(allowed.join("data"), allowed.join("alias")).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
        let real = std::fs::canonicalize(allowed.join("data")).unwrap();
        let vol = |p: &Path| json!([{"name": "h", "hostPath": {"path": p, "type": "Directory"}}]);
        let work = d.path().join("work");
        let ok = |p: &Path| {
            prepare_allowing(vol(p), &no_objects(), &work, std::slice::from_ref(&allowed))
        };
        for p in [allowed.join("data"), allowed.join("alias")] {
            let v = ok(&p).unwrap();
            assert_eq!(v["h"].path, real, "{}", p.display());
            assert!(!v["h"].read_only);
        }
        for (p, why) in [
            (allowed.join("escape"), "leads to /etc"),
            (PathBuf::from("/etc"), "not under a directory"),
            (allowed.join("data/../../x"), "without '..'"),
            (allowed.join("missing"), "not a directory"),
        ] {
            let e = ok(&p).unwrap_err().to_string();
            assert!(e.contains(why), "{}: {e}", p.display());
        }
        // DirectoryOrCreate through a link that leads out makes nothing there
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("out")).unwrap();
        let create = json!([{"name": "h", "hostPath": {"path": allowed.join("out/new"), "type": "DirectoryOrCreate"}}]);
        let e = prepare_allowing(create, &no_objects(), &work, std::slice::from_ref(&allowed))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leads to"), "{e}");
        assert!(
            !outside.join("new").exists(),
            "created outside the allowed directory"
        );
        // none allowed: refused, naming the key that would allow it
        let e = prepare_with(vol(&allowed.join("data")), &no_objects(), &work)
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker.allowed_host_paths"), "{e}");
    }

    fn no_objects() -> RetrievedPodData {
        serde_json::from_value(json!({"pod": {"metadata": {"name": "p", "uid": "u"}}})).unwrap()
    }

    fn pod_volumes() -> serde_json::Value {
        json!([
            {"name": "cfg", "configMap": {"name": "cm1", "items": [{"key": "a", "path": "sub/a.txt"}]}},
            {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 0o600}},
            {"name": "kube-api-access-x", "projected": {"sources": []}},
            {"name": "scratch", "emptyDir": {}}
        ])
    }

    #[test]
    fn writes_files_and_binds() {
        let d = tempfile::tempdir().unwrap();
        let data: RetrievedPodData = serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p", "uid": "u"}},
            "container": [{"name": "c",
                "configMaps": [{"metadata": {"name": "cm1"}, "data": {"a": "A", "b": "B"}}],
                "secrets": [{"metadata": {"name": "s1"}, "data": {"tok": "c2VjcmV0"}}],
                "projectedvolumemaps": [{"metadata": {"name": "kube-api-access-x"}, "data": {"token": "T"}}],
                "emptyDirs": []}]
        }))
        .unwrap();
        let vols = prepare_with(pod_volumes(), &data, d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cfg/sub/a.txt")).unwrap(),
            "A"
        );
        assert!(!d.path().join("cfg/b").exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("sec/tok")).unwrap(),
            "secret"
        );
        let mode = std::fs::metadata(d.path().join("sec/tok"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(d.path().join("kube-api-access-x/token")).unwrap(),
            "T"
        );
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "scratch", "mountPath": "/data", "subPath": "x"}
        ]}))
        .unwrap();
        let sp_dir = d.path().join("subpaths/c");
        let (b, sp) = binds(&c, &vols, &sp_dir).unwrap();
        assert_eq!(
            b[0],
            format!("{}:/etc/cfg:ro", d.path().join("cfg").display())
        );
        // the engine gets the plugin's own mount point, never a path in the volume
        assert_eq!(b[1], format!("{}:/data", sp_dir.join("0").display()));
        assert!(sp_dir.join("0").is_dir());
        assert_eq!(
            sp,
            vec![SubPathBind {
                root: d.path().join("scratch"),
                sub_path: "x".into(),
                target: sp_dir.join("0"),
                create: true,
            }]
        );
        // the subPath itself is made when the container starts, not now
        assert!(!d.path().join("scratch/x").exists());
        // a read-only volume's subPath must exist (and be no link) already
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/a", "subPath": "sub/nope"}]}))
        .unwrap();
        let e = binds(&c, &vols, &sp_dir).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "scratch", "mountPath": "/x", "subPath": "../../etc"}]}))
        .unwrap();
        let e = binds(&c, &vols, &sp_dir).unwrap_err().to_string();
        assert!(e.contains("not a relative path inside the volume"), "{e}");
    }

    #[test]
    fn missing_objects_and_bad_paths_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        let e = prepare_with(pod_volumes(), &no_objects(), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ConfigMap \"cm1\" was not sent"), "{e}");
        let v = json!([{"name": "h", "hostPath": {"path": "/etc"}}]);
        let e = prepare_with(v, &no_objects(), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("only configMap"), "{e}");
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "nope", "mountPath": "/x"}]}))
        .unwrap();
        assert!(
            binds(&c, &BTreeMap::new(), d.path())
                .unwrap_err()
                .to_string()
                .contains("names no volume")
        );
        assert!(pod_volumes::relative_path("../x").is_none());
        assert!(pod_volumes::relative_path("/abs").is_none());
    }
}
