//! What the plugin remembers about each pod, persisted under the data root so a
//! restarted plugin keeps tracking the pods it started.
//!
//! Layout: `<data-root>/pods/<uid>/state.json` (this record) next to
//! `<data-root>/pods/<uid>/volumes/` (files bound into the containers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use interlink_plugin_kit::json_store::{self, StoreError};
use interlink_plugin_kit::subpath::SubPathBind;
use serde::{Deserialize, Serialize};

/// One container of a pod as created in the engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// Engine container id; empty when the pod failed before it was created.
    #[serde(default)]
    pub id: String,
    /// Its subPath mounts, bound just before it starts (see `kit::subpath`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subpaths: Vec<SubPathBind>,
    /// Why it could not be started (e.g. an unsafe subPath): its waiting reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<Failure>,
}

/// Why a pod could not be run (its containers report it as their waiting reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Id of the container holding the pod's namespaces: the pod's job id.
    #[serde(default)]
    pub infra_id: String,
    #[serde(default)]
    pub init_containers: Vec<ContainerRecord>,
    #[serde(default)]
    pub containers: Vec<ContainerRecord>,
    /// Seconds between TERM and KILL on delete.
    #[serde(default = "default_grace")]
    pub grace_seconds: i64,
    #[serde(default)]
    pub failure: Option<Failure>,
}

fn default_grace() -> i64 {
    30
}

impl PodRecord {
    /// Every container id of the pod, infra last (containers that join its
    /// namespaces must be removed before it).
    pub fn all_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .init_containers
            .iter()
            .chain(&self.containers)
            .map(|c| c.id.clone())
            .filter(|i| !i.is_empty())
            .collect();
        if !self.infra_id.is_empty() {
            v.push(self.infra_id.clone());
        }
        v
    }

    pub fn find(&self, container: &str) -> Option<&ContainerRecord> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .find(|c| c.name == container)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> StateError {
        match e {
            StoreError::Io { path, source } => StateError::Io { path, err: source },
            StoreError::Json { path, source } => StateError::Json { path, err: source },
        }
    }
}

/// The per-pod directories under the data root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(data_root: &Path) -> Result<Store, StateError> {
        use std::os::unix::fs::PermissionsExt;
        let root = data_root.join("pods");
        let io = |err| StateError::Io {
            path: root.clone(),
            err,
        };
        std::fs::create_dir_all(&root).map_err(io)?;
        // the pods' volume files hold Secrets: no other user may reach them
        // (containers see them through bind mounts, not through this path)
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Store { root })
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// Where a container's subPaths are bound: outside every volume, so no
    /// container can replace a mount point with a link.
    pub fn subpath_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join("subpaths").join(container)
    }

    /// Write a record atomically (see [`json_store`]).
    pub fn save(&self, rec: &PodRecord) -> Result<(), StateError> {
        let dir = self.pod_dir(&rec.uid);
        std::fs::create_dir_all(&dir).map_err(|err| StateError::Io {
            path: dir.clone(),
            err,
        })?;
        Ok(json_store::save(&dir.join("state.json"), rec)?)
    }

    /// Forget a pod: its record and its volume files.
    pub fn remove(&self, uid: &str) -> Result<(), StateError> {
        let dir = self.pod_dir(uid);
        // detach the subPath binds first: removing files must not reach through one
        interlink_plugin_kit::subpath::unmount_under(&dir).map_err(|err| StateError::Io {
            path: dir.join("subpaths"),
            err,
        })?;
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::Io { path: dir, err })
            }
            _ => Ok(()),
        }
    }

    /// Every saved record; unreadable ones are reported and skipped.
    pub fn load_all(&self) -> Result<(BTreeMap<String, PodRecord>, Vec<StateError>), StateError> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        let rd = std::fs::read_dir(&self.root).map_err(|err| StateError::Io {
            path: self.root.clone(),
            err,
        })?;
        let (records, errors) =
            json_store::load_all::<PodRecord>(rd.flatten().map(|e| e.path().join("state.json")));
        for r in records {
            out.insert(r.uid.clone(), r);
        }
        bad.extend(errors.into_iter().map(StateError::from));
        Ok((out, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path()).unwrap();
        let r = PodRecord {
            uid: "u1".into(),
            name: "p".into(),
            namespace: "ns".into(),
            infra_id: "inf".into(),
            init_containers: vec![ContainerRecord {
                name: "i".into(),
                image: "img".into(),
                id: "a".into(),
                ..Default::default()
            }],
            containers: vec![ContainerRecord {
                name: "c".into(),
                image: "img".into(),
                id: "b".into(),
                ..Default::default()
            }],
            grace_seconds: 3,
            failure: None,
        };
        s.save(&r).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("pods")), 0o700, "pods hold Secrets");
        assert_eq!(mode(&d.path().join("pods/u1/state.json")), 0o600);
        assert!(!d.path().join("pods/u1/state.json.tmp").exists());
        std::fs::create_dir_all(d.path().join("pods/broken")).unwrap();
        std::fs::write(d.path().join("pods/broken/state.json"), "{").unwrap();
        let (all, bad) = s.load_all().unwrap();
        assert_eq!(all.get("u1"), Some(&r));
        assert_eq!(bad.len(), 1);
        assert_eq!(r.all_ids(), vec!["a", "b", "inf"]);
        s.remove("u1").unwrap();
        s.remove("u1").unwrap();
        assert!(!s.load_all().unwrap().0.contains_key("u1"));
    }
}
