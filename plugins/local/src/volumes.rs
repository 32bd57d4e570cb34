//! A pod's volumes as directories under `<pod dir>/volumes/<volume name>/`:
//! ConfigMap, Secret, projected and downward-API volumes are written there as
//! files (keys become file names, `items` choose and rename keys, modes as
//! given, default 0644), `emptyDir` is an empty directory, `hostPath` is the
//! host path itself. Other volume kinds are refused.
//!
//! There is no mount namespace: a container sees these directories at their
//! host paths, and [`crate::launch`] maps each `mountPath` onto them.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use crate::objects::{Objects, field_value};

const DEFAULT_MODE: u32 = 0o644;

/// Write every volume of `pod`; answer volume name → host directory.
pub fn prepare(
    pod_dir: &Path,
    pod: &Pod,
    objs: &Objects,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let root = pod_dir.join("volumes");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path =
            prepare_one(&root, v, pod, objs).map_err(|e| format!("volume {:?}: {e}", v.name))?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn mkdir(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))
}

fn prepare_one(root: &Path, v: &Volume, pod: &Pod, objs: &Objects) -> Result<PathBuf, String> {
    let dir = root.join(&v.name);
    if let Some(hp) = &v.host_path {
        let p = PathBuf::from(&hp.path);
        match hp.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => mkdir(&p)?,
            "Directory" if !p.is_dir() => {
                return Err(format!("hostPath {} is not a directory", p.display()));
            }
            "File" if !p.is_file() => {
                return Err(format!("hostPath {} is not a file", p.display()));
            }
            _ => {}
        }
        return Ok(p);
    }
    mkdir(&dir)?;
    if v.empty_dir.is_some() {
        return Ok(dir);
    }
    if let Some(cm) = &v.config_map {
        write_object(
            &dir,
            objs.config_map(&cm.name),
            cm.items.as_deref(),
            cm.default_mode,
            cm.optional,
            &format!("configMap {:?}", cm.name),
        )?;
        return Ok(dir);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        write_object(
            &dir,
            objs.secret(&name),
            s.items.as_deref(),
            s.default_mode,
            s.optional,
            &format!("secret {name:?}"),
        )?;
        return Ok(dir);
    }
    if let Some(d) = &v.downward_api {
        write_downward(&dir, pod, d.items.as_deref(), d.default_mode)?;
        return Ok(dir);
    }
    if let Some(p) = &v.projected {
        // interLink sends a projected volume already rendered as a map named
        // after the volume (file path -> content); otherwise assemble it here.
        if let Some(data) = objs.projected.get(&v.name) {
            write_items(&dir, data, None, p.default_mode, "projected volume")?;
            return Ok(dir);
        }
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                write_object(
                    &dir,
                    objs.config_map(&cm.name),
                    cm.items.as_deref(),
                    p.default_mode,
                    cm.optional,
                    &format!("configMap {:?}", cm.name),
                )?;
            }
            if let Some(s) = &src.secret {
                write_object(
                    &dir,
                    objs.secret(&s.name),
                    s.items.as_deref(),
                    p.default_mode,
                    s.optional,
                    &format!("secret {:?}", s.name),
                )?;
            }
            if let Some(d) = &src.downward_api {
                write_downward(&dir, pod, d.items.as_deref(), p.default_mode)?;
            }
            if let Some(t) = &src.service_account_token {
                tracing::warn!(
                    volume = %v.name,
                    path = %t.path,
                    "no service-account token was sent for this projected volume; the file is left out"
                );
            }
        }
        return Ok(dir);
    }
    Err("this volume kind is not supported by the local plugin (supported: configMap, secret, projected, downwardAPI, emptyDir, hostPath)".into())
}

/// Write a configMap's or secret's keys (`what` names it, e.g. `secret "db"`);
/// one that was not sent is an error unless it is optional.
fn write_object(
    dir: &Path,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    what: &str,
) -> Result<(), String> {
    match data {
        Some(data) => write_items(dir, data, items, default_mode, what),
        None if optional == Some(true) => Ok(()),
        None => Err(format!("{what} was not sent with the pod")),
    }
}

/// Write downward-API files: each the value of the pod field it names.
fn write_downward(
    dir: &Path,
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<(), String> {
    for f in items.into_iter().flatten() {
        let value = downward_file(pod, f)?;
        write_file(
            dir,
            &f.path,
            value.as_bytes(),
            mode(f.mode.or(default_mode)),
        )?;
    }
    Ok(())
}

fn downward_file(pod: &Pod, f: &DownwardAPIVolumeFile) -> Result<String, String> {
    match &f.field_ref {
        Some(r) => field_value(pod, &r.field_path)
            .ok_or_else(|| format!("downward API field {:?} is not supported", r.field_path)),
        None => Ok(String::new()),
    }
}

fn mode(m: Option<i32>) -> u32 {
    m.map(|m| (m as u32) & 0o777).unwrap_or(DEFAULT_MODE)
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(value) = data.get(&it.key) else {
                    return Err(format!("{what} has no key {:?}", it.key));
                };
                write_file(dir, &it.path, value, mode(it.mode.or(default_mode)))?;
            }
        }
        _ => {
            for (k, value) in data {
                write_file(dir, k, value, mode(default_mode))?;
            }
        }
    }
    Ok(())
}

fn write_file(dir: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    if !interlink_plugin_kit::validate::relative_path(rel) {
        return Err(format!(
            "file name {rel:?} must be a relative path without '..'"
        ));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    // the umask may have narrowed the mode given at creation
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(())
}
