//! Every state change of sandboxes, containers and remote pods.
//!
//! A change runs inside [`crate::store::Store::update`] through a [`Change`]:
//! each function here checks the transition against [`crate::states`], marks
//! what it touched for saving and collects the [`Effects`] to run once the lock
//! is released (container events for kubelet, log followers to start, a
//! dispatcher wake-up). Nothing here talks to the network or runs a hook: the
//! callers ([`crate::dispatch`], [`crate::status_loop`], the CRI handlers) do
//! that outside the lock and commit the outcome here.
//!
//! - [`container`]: create, start, stop requests, remove, log progress;
//! - [`exit`]: the one way a container exits, with an [`exit::ExitCause`];
//! - [`remote`]: batches (remote pods) from collecting to deleted;
//! - [`status`]: remote status decisions committed if the record did not change;
//! - [`sandbox`]: sandboxes created, stopped, removed.

pub mod container;
pub mod exit;
pub mod remote;
pub mod sandbox;
pub mod status;

use crate::proto::runtime::v1 as cri;
use crate::store::{Container, Dirty, Inner, RemotePod, Sandbox};

pub use exit::{ExitCause, StopPoint};

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    #[error("pod sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("pod sandbox {0} is not ready (stopped)")]
    SandboxNotReady(String),
    #[error("container {id} is in state {state}; only a created container can be started")]
    NotStartable { id: String, state: &'static str },
    #[error("container {name:?} attempt {attempt} already exists in pod sandbox {sandbox} as {id}")]
    ContainerExists {
        name: String,
        attempt: u32,
        sandbox: String,
        id: String,
    },
    #[error("pod sandbox {namespace}/{name} (uid {uid}, attempt {attempt}) already exists as {id}")]
    SandboxExists {
        namespace: String,
        name: String,
        uid: String,
        attempt: u32,
        id: String,
    },
}

impl From<LifecycleError> for tonic::Status {
    fn from(e: LifecycleError) -> tonic::Status {
        use LifecycleError as E;
        let msg = e.to_string();
        match e {
            E::ContainerNotFound(_) | E::SandboxNotFound(_) => tonic::Status::not_found(msg),
            E::SandboxNotReady(_) | E::NotStartable { .. } => {
                tonic::Status::failed_precondition(msg)
            }
            E::ContainerExists { .. } | E::SandboxExists { .. } => {
                tonic::Status::already_exists(msg)
            }
        }
    }
}

/// What a change asks to be done after the lock is released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Container events for `GetContainerEvents`: (container, sandbox, kind).
    pub events: Vec<(String, String, cri::ContainerEventType)>,
    /// Containers whose remote log must be followed (or its tail fetched).
    pub followers: Vec<String>,
    /// The dispatcher has work (a batch to send, a pod to delete).
    pub wake_dispatcher: bool,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.followers.is_empty() && !self.wake_dispatcher
    }

    fn event(&mut self, c: &Container, kind: cri::ContainerEventType) {
        self.events.push((c.id.clone(), c.sandbox_id.clone(), kind));
    }
}

/// One change of the store, under its write lock.
pub struct Change<'a> {
    st: &'a mut Inner,
    dirty: &'a mut Dirty,
    /// What to do once the lock is released.
    pub fx: Effects,
    /// The time of the change (ns), one for all its records.
    pub now: i64,
}

impl<'a> Change<'a> {
    pub fn new(st: &'a mut Inner, dirty: &'a mut Dirty, now: i64) -> Change<'a> {
        Change {
            st,
            dirty,
            fx: Effects::default(),
            now,
        }
    }

    /// The state, to read.
    pub fn state(&self) -> &Inner {
        self.st
    }

    /// Write the files of this change with fsync before the lock is released
    /// (a write-ahead record of a remote side effect).
    pub fn durable(&mut self) {
        self.dirty.durable();
    }

    fn container_mut(&mut self, id: &str) -> Option<&mut Container> {
        let c = self.st.containers.get_mut(id)?;
        self.dirty.container(id);
        Some(c)
    }

    fn remote_mut(&mut self, uid: &str) -> Option<&mut RemotePod> {
        let r = self.st.remotes.get_mut(uid)?;
        self.dirty.remote(uid);
        Some(r)
    }

    fn sandbox_mut(&mut self, id: &str) -> Option<&mut Sandbox> {
        let s = self.st.sandboxes.get_mut(id)?;
        self.dirty.sandbox(id);
        Some(s)
    }

    /// The store's contents for a change no transition covers (images, the
    /// node's pod CIDR); records of containers, sandboxes and remote pods
    /// change only through this module.
    pub fn others(&mut self) -> (&mut Inner, &mut Dirty) {
        (self.st, self.dirty)
    }
}

/// Run `f` as one change of `store`; returns its result and its effects.
pub fn change<R>(
    store: &crate::store::Store,
    f: impl FnOnce(&mut Change<'_>) -> R,
) -> (R, Effects) {
    let now = crate::now_ns();
    store.update(|st, d| {
        let mut ch = Change::new(st, d, now);
        let r = f(&mut ch);
        (r, ch.fx)
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Records for the transition tests.
    use super::*;
    use crate::states::{ContainerState, Phase};
    use crate::store::Kind;

    pub fn sandbox(id: &str) -> Sandbox {
        Sandbox {
            id: id.into(),
            config: cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "pod".into(),
                    namespace: "ns".into(),
                    uid: "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11".into(),
                    attempt: 0,
                }),
                log_directory: String::new(),
                ..Default::default()
            },
            created_at: 1,
            ready: true,
            runtime_handler: String::new(),
            uid: "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11".into(),
            batches: 0,
            main_used: false,
            ip: String::new(),
        }
    }

    pub fn container(id: &str, sandbox: &str, kind: Kind) -> Container {
        Container {
            id: id.into(),
            sandbox_id: sandbox.into(),
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: id.into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            kind,
            image_ref: "docker.io/library/busybox:latest".into(),
            image_id: "sha256:1".into(),
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            state: ContainerState::Created,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            remote_uid: None,
            spec: None,
            log_file: None,
            log_offset: 0,
            log_done: false,
            stop_requested: false,
            remote_seen: 0,
            rev: 0,
            admitted: None,
        }
    }

    /// A store with one ready sandbox `s` and created containers `ids`.
    pub fn store_with(ids: &[&str]) -> crate::store::Store {
        let store = crate::store::Store::in_memory();
        store.update(|st, _| {
            st.sandboxes.insert("s".into(), sandbox("s"));
            for id in ids {
                st.containers
                    .insert(id.to_string(), container(id, "s", Kind::Regular));
            }
        });
        store
    }

    pub fn phase(store: &crate::store::Store, uid: &str) -> Option<Phase> {
        store.read().remotes.get(uid).map(|r| r.phase)
    }

    pub fn cstate(store: &crate::store::Store, id: &str) -> ContainerState {
        store.read().containers[id].state
    }
}
