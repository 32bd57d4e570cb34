//! A pod's volumes as directories under `<pod dir>/volumes/<volume name>/`:
//! ConfigMap, Secret, projected and downward-API volumes hold the files the
//! kit's pod model plans for them ([`interlink_plugin_kit::pod::volumes`]),
//! `emptyDir` is an empty directory, `hostPath` is the host path itself (its
//! `type` checked or, for `DirectoryOrCreate`, made). Other volume kinds are
//! refused.
//!
//! There is no mount namespace: a container sees these directories at their
//! host paths, and [`crate::launch`] maps each `mountPath` onto them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use interlink_plugin_kit::pod::PodView;
use interlink_plugin_kit::pod::volumes::{self as pod_volumes, Content};

/// Write every volume of the pod; answer volume name → host directory.
pub fn prepare(pod_dir: &Path, view: PodView<'_>) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let root = pod_dir.join("volumes");
    for v in pod_volumes::plan(view).map_err(|e| e.with_field_names())? {
        let dir = root.join(&v.name);
        let path = match v.content {
            Content::HostPath { path, kind } => pod_volumes::host_path(&path, kind.as_deref(), None),
            Content::Files(files) => pod_volumes::write_files(&dir, &files)
                .map(|()| dir)
                .map_err(|e| format!("write {}: {e}", root.join(&v.name).display())),
            Content::EmptyDir => mkdir(&dir).map(|()| dir),
            Content::Unsupported => Err("this volume kind is not supported by the local plugin (supported: configMap, secret, projected, downwardAPI, emptyDir, hostPath)".into()),
        }
        .map_err(|e| format!("volume {:?}: {e}", v.name))?;
        out.insert(v.name, path);
    }
    Ok(out)
}

fn mkdir(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))
}
