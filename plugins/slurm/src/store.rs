//! The pods this plugin tracks, persisted one JSON file each under
//! `<data root>/state/`, so a restarted plugin keeps tracking its jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use interlink::PodStatus;
use interlink_plugin_kit::json_store;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
}

/// One tracked pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The Slurm job id; `None` when submission failed.
    pub job_id: Option<String>,
    /// Why the pod could not be submitted (its later status says it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_error: Option<String>,
    pub pod_dir: PathBuf,
    pub init_containers: Vec<ContainerMeta>,
    pub containers: Vec<ContainerMeta>,
    pub created: Timestamp,
    /// The status once the job has ended: never asked of Slurm again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<PodStatus>,
    /// Set by delete once TERM was sent: when to KILL the job if it still runs
    /// (the end of the pod's grace period). A restarted plugin finishes the delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_at: Option<Timestamp>,
    /// A container has a preStop hook: delete signals the job's shell alone,
    /// which runs the hooks, then sends TERM to the containers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_stop: bool,
}

/// The directory of records.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        interlink_plugin_kit::private_fs::ensure_private_dir(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    pub fn save(&self, r: &PodRecord) -> std::io::Result<()> {
        Ok(json_store::save(&self.path(&r.uid), r)?)
    }

    pub fn remove(&self, uid: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record; unreadable files are reported and skipped.
    pub fn load_all(&self) -> std::io::Result<HashMap<String, PodRecord>> {
        let mut out = HashMap::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_none_or(|x| x != "json")
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            match json_store::load::<PodRecord>(&p) {
                Ok(r) => {
                    out.insert(r.uid.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable pod record")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let r = PodRecord {
            uid: "u-1".into(),
            name: "p".into(),
            namespace: "ns".into(),
            job_id: Some("12".into()),
            submit_error: None,
            pod_dir: "/x".into(),
            init_containers: vec![],
            containers: vec![ContainerMeta {
                name: "c".into(),
                image: "i".into(),
            }],
            created: Timestamp::now(),
            final_status: None,
            kill_at: None,
            pre_stop: false,
        };
        s.save(&r).unwrap();
        std::fs::write(d.path().join("junk.json"), "{").unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all["u-1"], r);
        s.remove("u-1").unwrap();
        s.remove("u-1").unwrap();
        assert!(s.load_all().unwrap().is_empty());
        let valid_uid = interlink_plugin_kit::validate::uid;
        assert!(valid_uid("0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11"));
        assert!(!valid_uid("../etc") && !valid_uid("") && !valid_uid(".."));
    }
}
