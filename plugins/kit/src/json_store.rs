//! Records a plugin keeps across restarts, one JSON file each: written whole to
//! a private temporary file beside the record, synced and renamed over it (see
//! [`crate::private_fs::write_atomic`]), so a crash leaves the old record or the
//! new one, never half of one, and no other user can read it (mode 0600).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl StoreError {
    /// The record's file.
    pub fn path(&self) -> &Path {
        match self {
            StoreError::Io { path, .. } | StoreError::Json { path, .. } => path,
        }
    }

    /// Whether the record does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> std::io::Error {
        match e {
            StoreError::Io { source, .. } => source,
            json @ StoreError::Json { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, json)
            }
        }
    }
}

/// Replace the record at `path` with `value` atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let body = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    crate::private_fs::write_atomic(path, &body).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The record at `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let body = std::fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The records at `paths`: those that exist and parse, and why the others
/// that exist could not be read (paths that do not exist are skipped).
pub fn load_all<T: DeserializeOwned>(
    paths: impl IntoIterator<Item = PathBuf>,
) -> (Vec<T>, Vec<StoreError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for p in paths {
        match load(&p) {
            Ok(v) => ok.push(v),
            Err(e) if e.is_not_found() => {}
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        uid: String,
        n: u32,
    }

    #[test]
    fn saves_atomically_privately_and_loads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("u1.json");
        let r = Rec {
            uid: "u1".into(),
            n: 1,
        };
        save(&p, &r).unwrap();
        save(&p, &Rec { n: 2, ..r }).unwrap();
        let back: Rec = load(&p).unwrap();
        assert_eq!(back.n, 2);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["u1.json"], "no temporary file is left behind");

        std::fs::write(d.path().join("broken.json"), "{").unwrap();
        let (ok, bad): (Vec<Rec>, _) = load_all([
            p.clone(),
            d.path().join("broken.json"),
            d.path().join("absent.json"),
        ]);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].path(), d.path().join("broken.json"));
        assert!(bad[0].to_string().contains("broken.json"));
        let e = load::<Rec>(&d.path().join("absent.json")).unwrap_err();
        assert!(e.is_not_found());
    }
}
