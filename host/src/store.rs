//! The host's state: sandboxes, containers, images and remote pods, answered from
//! memory and persisted under `<DataRootFolder>/state/` one JSON file per object,
//! each written atomically (temp file + rename). Mutations go through
//! [`Store::update`], which serialises writers so files never go back in time.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use k8s_openapi::api::core::v1 as k8s;
use serde::{Deserialize, Serialize};

use crate::proto::runtime::v1 as cri;
pub use crate::states::{ContainerState, Phase};

/// Is a container an init container (its own remote pod, run before the next) or regular?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Init,
    Regular,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    #[serde(with = "pb")]
    pub config: cri::PodSandboxConfig,
    pub created_at: i64,
    pub ready: bool,
    pub runtime_handler: String,
    /// UID of the pod's main remote pod (the Kubernetes pod UID).
    pub uid: String,
    /// Remote pods made for this sandbox so far (numbering derived UIDs).
    pub batches: u32,
    /// Has the first regular batch (which uses `uid`) been opened?
    pub main_used: bool,
    /// The pod IP (IPv4) allocated from the pod CIDR; empty for host-network pods.
    #[serde(default)]
    pub ip: String,
}

/// A container as converted for the remote pod, kept until its `/create` succeeded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Converted {
    pub container: k8s::Container,
    pub volumes: Vec<k8s::Volume>,
    pub configmaps: Vec<k8s::ConfigMap>,
    pub secrets: Vec<k8s::Secret>,
    pub projected: Vec<k8s::ConfigMap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    #[serde(with = "pb")]
    pub config: cri::ContainerConfig,
    pub kind: Kind,
    pub image_ref: String,
    pub image_id: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The remote pod it runs in, once started.
    pub remote_uid: Option<String>,
    pub spec: Option<Box<Converted>>,
    /// `log_directory` + `log_path`, when kubelet gave both.
    pub log_file: Option<PathBuf>,
    /// Bytes of remote log already written to the file.
    pub log_offset: u64,
    /// The log file has everything the remote side will ever have.
    #[serde(default)]
    pub log_done: bool,
    pub stop_requested: bool,
    /// Fingerprint of the last remote status applied (memory only): an unchanged
    /// answer is skipped by the status loop.
    #[serde(skip, default)]
    pub remote_seen: u64,
    /// Bumped by every change of its state (memory only): a decision made on an
    /// older snapshot is not committed (see [`crate::lifecycle::status`]).
    #[serde(skip, default)]
    pub rev: u64,
    /// Fingerprint of the pod admission judged at `CreateContainer`; the batch
    /// is judged again at send time only if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemotePod {
    pub uid: String,
    pub sandbox_id: String,
    pub name: String,
    pub namespace: String,
    pub kind: Kind,
    pub containers: Vec<String>,
    pub phase: Phase,
    pub job_id: String,
    pub grace_seconds: Option<i64>,
    /// When the batch window closes (ns), while collecting.
    pub send_after: i64,
    /// All its containers exited and their logs are complete: no more polling.
    pub finished: bool,
}

/// An image as this runtime knows it: references (normalised) sharing one ID.
/// References pinned to one digest are one image (see the `images` module).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    /// The first reference recorded: what the remote side is sent when a
    /// container names the image by its ID only.
    pub reference: String,
    /// Further references of the same image (other tags of one digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
    pub pinned: bool,
    pub recorded_at: i64,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub sandboxes: HashMap<String, Sandbox>,
    pub containers: HashMap<String, Container>,
    pub images: HashMap<String, Image>,
    pub remotes: HashMap<String, RemotePod>,
    /// The node's pod CIDR as kubelet sent it (`UpdateRuntimeConfig`).
    pub node_pod_cidr: Option<String>,
}

impl Inner {
    /// Give back the room the maps keep for records since removed: a map
    /// holds its peak capacity, and its values are stored inline (a
    /// `Container` is ~1.5 KiB), so after 2,000 pods were removed the empty
    /// sandbox and container maps alone still held ~11 MiB.
    pub fn shrink_to_fit(&mut self) {
        self.sandboxes.shrink_to_fit();
        self.containers.shrink_to_fit();
        self.images.shrink_to_fit();
        self.remotes.shrink_to_fit();
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Network {
    #[serde(rename = "podCIDR", default)]
    pod_cidr: Option<String>,
}

/// What a mutation touched, so [`Store::update`] persists exactly that.
#[derive(Debug, Default)]
pub struct Dirty {
    sandboxes: BTreeSet<String>,
    containers: BTreeSet<String>,
    images: BTreeSet<String>,
    remotes: BTreeSet<String>,
    sync: bool,
    network: bool,
}

impl Dirty {
    pub fn sandbox(&mut self, id: &str) {
        self.sandboxes.insert(id.to_string());
    }
    pub fn container(&mut self, id: &str) {
        self.containers.insert(id.to_string());
    }
    pub fn image(&mut self, id: &str) {
        self.images.insert(id.to_string());
    }
    pub fn remote(&mut self, uid: &str) {
        self.remotes.insert(uid.to_string());
    }
    pub fn network(&mut self) {
        self.network = true;
    }
    /// fsync the files (write-ahead of a remote side effect).
    pub fn durable(&mut self) {
        self.sync = true;
    }
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty()
            && self.containers.is_empty()
            && self.images.is_empty()
            && !self.network
            && self.remotes.is_empty()
    }
}

pub struct Store {
    /// Bumped by every update that touched a remote pod.
    remotes_gen: std::sync::atomic::AtomicU64,
    dir: Option<PathBuf>,
    inner: RwLock<Inner>,
    writer: Mutex<()>,
}

const SANDBOXES: &str = "sandboxes";
const CONTAINERS: &str = "containers";
const IMAGES: &str = "images";
const REMOTES: &str = "remote-pods";
const NETWORK: &str = "network.json";

impl Store {
    /// A store that persists nothing (benchmarks, unit tests).
    pub fn in_memory() -> Store {
        Store {
            remotes_gen: Default::default(),
            dir: None,
            inner: RwLock::new(Inner::default()),
            writer: Mutex::new(()),
        }
    }

    /// Open (and load) the store under `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        let mut inner = Inner::default();
        private_dir(dir)?;
        for sub in [SANDBOXES, CONTAINERS, IMAGES, REMOTES] {
            private_dir(&dir.join(sub))?;
        }
        for (k, v) in load::<Sandbox>(&dir.join(SANDBOXES))? {
            inner.sandboxes.insert(k, v);
        }
        for (k, v) in load::<Container>(&dir.join(CONTAINERS))? {
            inner.containers.insert(k, v);
        }
        for (_, v) in load::<Image>(&dir.join(IMAGES))? {
            inner.images.insert(v.id.clone(), v);
        }
        for (k, v) in load::<RemotePod>(&dir.join(REMOTES))? {
            inner.remotes.insert(k, v);
        }
        match std::fs::read(dir.join(NETWORK)) {
            Ok(b) => match serde_json::from_slice::<Network>(&b) {
                Ok(n) => inner.node_pod_cidr = n.pod_cidr,
                Err(e) => {
                    tracing::error!(error = %e, "unreadable {NETWORK} ignored")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Store {
            remotes_gen: Default::default(),
            dir: Some(dir.to_path_buf()),
            inner: RwLock::new(inner),
            writer: Mutex::new(()),
        })
    }

    /// Changes whenever a remote pod record changed (added, removed, phase, finished).
    pub fn remotes_generation(&self) -> u64 {
        self.remotes_gen.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutate under the write lock; what `f` marks dirty is persisted before return.
    pub fn update<R>(&self, f: impl FnOnce(&mut Inner, &mut Dirty) -> R) -> R {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut dirty = Dirty::default();
        let (r, files) = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut inner, &mut dirty);
            if !dirty.remotes.is_empty() {
                self.remotes_gen
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
            }
            if self.dir.is_none() || dirty.is_empty() {
                return r;
            }
            let mut files: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
            let dir = self.dir.as_ref().unwrap();
            for id in &dirty.sandboxes {
                files.push((
                    dir.join(SANDBOXES).join(file_name(id)),
                    inner.sandboxes.get(id).map(to_json),
                ));
            }
            for id in &dirty.containers {
                files.push((
                    dir.join(CONTAINERS).join(file_name(id)),
                    inner.containers.get(id).map(to_json),
                ));
            }
            for id in &dirty.images {
                files.push((
                    dir.join(IMAGES).join(file_name(id)),
                    inner.images.get(id).map(to_json),
                ));
            }
            if dirty.network {
                files.push((
                    dir.join(NETWORK),
                    Some(to_json(&Network {
                        pod_cidr: inner.node_pod_cidr.clone(),
                    })),
                ));
            }
            for id in &dirty.remotes {
                files.push((
                    dir.join(REMOTES).join(file_name(id)),
                    inner.remotes.get(id).map(to_json),
                ));
            }
            (r, files)
        };
        for (path, body) in files {
            let res = match body {
                Some(b) => write_atomic(&path, &b, dirty.sync),
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = res {
                tracing::error!(path = %path.display(), error = %e, "persisting state failed");
            }
        }
        r
    }
}

fn file_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Mode of the state files: a container's record holds its env, with the values
/// kubelet resolved from Secrets.
pub const STATE_FILE_MODE: u32 = 0o600;
/// Mode of the state directories.
pub const STATE_DIR_MODE: u32 = 0o700;

/// Create `dir` (and missing parents) as [`STATE_DIR_MODE`]; an existing one is
/// narrowed to it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != STATE_DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(STATE_DIR_MODE))?;
    }
    Ok(())
}

/// Write `body` to `path` through a temp file (created [`STATE_FILE_MODE`]) and
/// a rename.
pub fn write_atomic(path: &Path, body: &[u8], sync: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(STATE_FILE_MODE)
            .open(&tmp)?;
        f.write_all(body)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if sync && let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn load<T: for<'de> Deserialize<'de>>(dir: &Path) -> std::io::Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push((id.to_string(), v)),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable state file set aside");
                let _ = std::fs::rename(&path, path.with_extension("corrupt"));
            }
        }
    }
    Ok(out)
}

/// Protobuf messages inside JSON records: base64 of their wire encoding.
mod pb {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<M: prost::Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec()))
    }

    pub fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<M, D::Error> {
        let s = String::deserialize(d)?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)?;
        M::decode(b.as_slice()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.update(|i, d| {
            let cfg = cri::PodSandboxConfig {
                hostname: "h".into(),
                ..Default::default()
            };
            i.sandboxes.insert(
                "s1".into(),
                Sandbox {
                    id: "s1".into(),
                    config: cfg,
                    created_at: 1,
                    ready: true,
                    runtime_handler: "interlink".into(),
                    uid: "u".into(),
                    batches: 0,
                    main_used: false,
                    ip: String::new(),
                },
            );
            d.sandbox("s1");
        });
        let s2 = Store::open(dir.path()).unwrap();
        assert_eq!(s2.read().sandboxes["s1"].config.hostname, "h");
        s2.update(|i, d| {
            i.sandboxes.remove("s1");
            d.sandbox("s1");
        });
        let s3 = Store::open(dir.path()).unwrap();
        assert!(s3.read().sandboxes.is_empty());
    }

    #[test]
    fn shrinking_gives_back_the_room_of_removed_records_and_keeps_the_rest() {
        let s = Store::in_memory();
        let sandbox = |id: &str| Sandbox {
            id: id.into(),
            config: Default::default(),
            created_at: 1,
            ready: true,
            runtime_handler: "interlink".into(),
            uid: id.into(),
            batches: 0,
            main_used: false,
            ip: String::new(),
        };
        s.update(|i, _| {
            for n in 0..1000 {
                i.sandboxes
                    .insert(format!("s{n}"), sandbox(&format!("s{n}")));
            }
            i.sandboxes.retain(|id, _| id == "s7");
        });
        assert!(s.read().sandboxes.capacity() >= 1000);
        s.update(|i, _| i.shrink_to_fit());
        let st = s.read();
        assert!(st.sandboxes.capacity() < 16, "{}", st.sandboxes.capacity());
        assert_eq!(st.sandboxes["s7"].uid, "s7");
    }

    #[test]
    fn state_files_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // an old, wider directory is narrowed
        std::fs::create_dir_all(state.join(CONTAINERS)).unwrap();
        std::fs::set_permissions(
            state.join(CONTAINERS),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // a umask that would leave new files world-readable
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o002));
        let s = Store::open(&state).unwrap();
        nix::sys::stat::umask(old);
        for sub in ["", SANDBOXES, CONTAINERS, IMAGES, REMOTES] {
            assert_eq!(mode(&state.join(sub)), 0o700, "{sub}");
        }
        let tmp = state.join(CONTAINERS).join("c.json.tmp");
        std::fs::write(&tmp, "left over").unwrap();
        write_atomic(&state.join(CONTAINERS).join("c.json"), b"{}", true).unwrap();
        assert_eq!(mode(&state.join(CONTAINERS).join("c.json")), 0o600);
        drop(s);
    }
}
