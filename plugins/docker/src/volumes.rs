//! A pod's volumes as files on the engine's host: ConfigMap, Secret and projected
//! volumes are written under `<pod dir>/volumes/<volume>/`, emptyDirs are empty
//! directories there, and each container's volumeMounts become bind mounts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use interlink::RetrievedPodData;
use interlink_plugin_kit::subpath::{self, SubPathBind};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Secret, Volume};

/// A volume that cannot be prepared: the pod is rejected with this message.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

/// ConfigMaps, Secrets and projected maps sent with a pod, by name.
#[derive(Debug, Default)]
pub struct PodObjects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub projected: BTreeMap<String, ConfigMap>,
}

impl PodObjects {
    pub fn from_request(data: &RetrievedPodData) -> PodObjects {
        let mut o = PodObjects::default();
        for c in &data.containers {
            for cm in &c.config_maps {
                o.config_maps
                    .insert(cm.metadata.name.clone().unwrap_or_default(), cm.clone());
            }
            for s in &c.secrets {
                o.secrets
                    .insert(s.metadata.name.clone().unwrap_or_default(), s.clone());
            }
            for p in &c.projected_volume_maps {
                o.projected
                    .insert(p.metadata.name.clone().unwrap_or_default(), p.clone());
            }
        }
        o
    }

    /// A ConfigMap's keys and values (`data` and `binaryData`).
    pub fn config_map_entries(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            m.insert(k.clone(), v.clone().into_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            m.insert(k.clone(), v.0.clone());
        }
        m
    }

    /// A Secret's keys and values (`data` and `stringData`).
    pub fn secret_entries(s: &Secret) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for (k, v) in s.data.iter().flatten() {
            m.insert(k.clone(), v.0.clone());
        }
        for (k, v) in s.string_data.iter().flatten() {
            m.insert(k.clone(), v.clone().into_bytes());
        }
        m
    }
}

/// A prepared volume: its host directory and whether mounts are read-only.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Write every volume of the pod under `dir` (`<pod dir>/volumes`).
pub fn prepare(
    volumes: &[Volume],
    objects: &PodObjects,
    dir: &Path,
) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
    let mut out = BTreeMap::new();
    for v in volumes {
        let path = dir.join(safe_name(&v.name, "volume name")?);
        mkdir(&path)?;
        let read_only;
        if let Some(src) = &v.config_map {
            read_only = true;
            match objects.config_maps.get(&src.name) {
                Some(cm) => write_entries(
                    &path,
                    &PodObjects::config_map_entries(cm),
                    src.items.as_deref(),
                    src.default_mode,
                    &format!("ConfigMap {}", src.name),
                )?,
                None if src.optional == Some(true) => {}
                None => {
                    return Err(VolumeError::Invalid(format!(
                        "volume {:?}: ConfigMap {:?} was not sent with the pod",
                        v.name, src.name
                    )));
                }
            }
        } else if let Some(src) = &v.secret {
            read_only = true;
            let name = src.secret_name.clone().unwrap_or_default();
            match objects.secrets.get(&name) {
                Some(s) => write_entries(
                    &path,
                    &PodObjects::secret_entries(s),
                    src.items.as_deref(),
                    src.default_mode,
                    &format!("Secret {name}"),
                )?,
                None if src.optional == Some(true) => {}
                None => {
                    return Err(VolumeError::Invalid(format!(
                        "volume {:?}: Secret {name:?} was not sent with the pod",
                        v.name
                    )));
                }
            }
        } else if let Some(src) = &v.projected {
            read_only = true;
            // upstream sends each projected volume as a ConfigMap named after the volume
            match objects.projected.get(&v.name) {
                Some(cm) => write_entries(
                    &path,
                    &PodObjects::config_map_entries(cm),
                    None,
                    src.default_mode,
                    &format!("projected volume {}", v.name),
                )?,
                None => {
                    tracing::warn!(volume = %v.name, "projected volume sent without its files: mounted empty")
                }
            }
        } else if v.empty_dir.is_some() {
            read_only = false;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).map_err(
                |err| VolumeError::Io {
                    path: path.clone(),
                    err,
                },
            )?;
        } else {
            return Err(VolumeError::Invalid(format!(
                "volume {:?}: only configMap, secret, projected and emptyDir volumes are supported by the docker plugin",
                v.name
            )));
        }
        out.insert(v.name.clone(), HostVolume { path, read_only });
    }
    Ok(out)
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

fn write_entries(
    dir: &Path,
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<(), VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32 & 0o777;
    let files: Vec<(String, String, u32)> = match items {
        Some(items) if !items.is_empty() => {
            let mut v = Vec::new();
            for it in items {
                if !entries.contains_key(&it.key) {
                    return Err(VolumeError::Invalid(format!(
                        "{what} has no key {:?}",
                        it.key
                    )));
                }
                v.push((
                    it.key.clone(),
                    it.path.clone(),
                    it.mode.map(|m| m as u32 & 0o777).unwrap_or(mode),
                ));
            }
            v
        }
        _ => entries
            .keys()
            .map(|k| (k.clone(), k.clone(), mode))
            .collect(),
    };
    for (key, rel, mode) in files {
        let path = dir.join(safe_rel(&rel, &format!("{what} key"))?);
        if let Some(p) = path.parent() {
            mkdir(p)?;
        }
        std::fs::write(&path, &entries[&key]).map_err(|err| VolumeError::Io {
            path: path.clone(),
            err,
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|err| {
            VolumeError::Io {
                path: path.clone(),
                err,
            }
        })?;
    }
    Ok(())
}

fn mkdir(p: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(p).map_err(|err| VolumeError::Io {
        path: p.into(),
        err,
    })
}

/// A single path component (no `/`, not `.`/`..`).
fn safe_name<'a>(s: &'a str, what: &str) -> Result<&'a str, VolumeError> {
    if s.is_empty() || s.contains('/') || s == "." || s == ".." {
        return Err(VolumeError::Invalid(format!(
            "{what} {s:?} is not a valid file name"
        )));
    }
    Ok(s)
}

/// A relative path that stays inside its directory.
fn safe_rel(s: &str, what: &str) -> Result<PathBuf, VolumeError> {
    let p = Path::new(s);
    if s.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(VolumeError::Invalid(format!(
            "{what} {s:?} must be a relative path without '..'"
        )));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_volumes() -> Vec<Volume> {
        serde_json::from_value(json!([
            {"name": "cfg", "configMap": {"name": "cm1", "items": [{"key": "a", "path": "sub/a.txt"}]}},
            {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 0o600}},
            {"name": "kube-api-access-x", "projected": {"sources": []}},
            {"name": "scratch", "emptyDir": {}}
        ]))
        .unwrap()
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
        let vols = prepare(&pod_volumes(), &PodObjects::from_request(&data), d.path()).unwrap();
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
        let e = prepare(&pod_volumes(), &PodObjects::default(), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ConfigMap \"cm1\" was not sent"), "{e}");
        let v: Vec<Volume> =
            serde_json::from_value(json!([{"name": "h", "hostPath": {"path": "/etc"}}])).unwrap();
        let e = prepare(&v, &PodObjects::default(), d.path())
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
        assert!(safe_rel("../x", "p").is_err());
        assert!(safe_rel("/abs", "p").is_err());
    }
}
