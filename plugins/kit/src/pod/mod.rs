//! What a plugin needs to know about a pod, computed once as Kubernetes defines
//! it: the objects sent with it ([`objects`]), the downward API ([`downward`]),
//! container environments with `$(VAR)` expansion ([`env`]), resource values
//! for `resourceFieldRef` ([`resources`]) and the files of its volumes
//! ([`volumes`]). A plugin adds only what its backend does with them.
//!
//! What Kubernetes learns from the node (the pod's IP, the node's name and
//! allocatable resources) is not in the pod a plugin receives when it is
//! created: the plugin passes what its backend knows as a [`Placement`]
//! ([`host::this_host`] where the pod runs on this host, with its network).

pub mod dns;
pub mod downward;
pub mod env;
pub mod host;
pub mod objects;
pub mod resources;
pub mod volumes;

pub use env::Env;
pub use objects::{Data, ObjectKind, PodObjects};

use interlink::RetrievedPodData;
use k8s_openapi::api::core::v1::Pod;

/// What the backend knows about where a pod runs, for the downward API: used
/// where the pod itself says nothing (a pod being created has no
/// `status.podIP` yet); a field left `None` then reads as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// `status.podIP` (and `status.podIPs`).
    pub pod_ip: Option<String>,
    /// `status.hostIP` (and `status.hostIPs`).
    pub host_ip: Option<String>,
    /// `spec.nodeName` when the pod names no node.
    pub node_name: Option<String>,
    /// The node's allocatable CPU in millicores: what `limits.cpu` is when the
    /// container sets no limit (as the kubelet does).
    pub allocatable_cpu_millis: Option<u64>,
    /// The node's allocatable memory in bytes: `limits.memory` when unset.
    pub allocatable_memory_bytes: Option<u64>,
}

/// A pod with what was sent with it and where it runs: the input of the
/// resolvers in this module.
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a> {
    pub pod: &'a Pod,
    pub objects: &'a PodObjects,
    pub placement: &'a Placement,
}

/// A create request's pod with its objects indexed and where it runs: what a
/// [`PodView`] borrows.
#[derive(Debug, Clone)]
pub struct PodModel<'a> {
    pub pod: &'a Pod,
    pub objects: PodObjects,
    pub placement: Placement,
}

impl<'a> PodModel<'a> {
    pub fn new(data: &'a RetrievedPodData, placement: Placement) -> PodModel<'a> {
        PodModel {
            pod: &data.pod,
            objects: PodObjects::from_request(data),
            placement,
        }
    }

    pub fn view(&self) -> PodView<'_> {
        PodView {
            pod: self.pod,
            objects: &self.objects,
            placement: &self.placement,
        }
    }
}

/// Why a pod cannot be prepared as its spec asks: a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// A ConfigMap or Secret (or one of its keys) that the pod needs was not
    /// sent with it and is not optional.
    #[error("{context}: {kind} {name:?} was not sent with the pod")]
    NotSent {
        context: String,
        kind: ObjectKind,
        name: String,
    },
    #[error("{context}: key {key:?} of {kind} {name:?} was not sent with the pod")]
    KeyNotSent {
        context: String,
        kind: ObjectKind,
        name: String,
        key: String,
    },
    /// Anything else the spec asks that cannot be done.
    #[error("{0}")]
    Invalid(String),
}

impl PodError {
    /// The message, with the object kind spelled as the pod spec's field
    /// (`configMap "x"`, `secret "y"`) instead of its Kubernetes kind.
    pub fn with_field_names(&self) -> String {
        match self {
            PodError::NotSent {
                context,
                kind,
                name,
            } => format!(
                "{context}: {} {name:?} was not sent with the pod",
                kind.field_name()
            ),
            PodError::KeyNotSent {
                context,
                kind,
                name,
                key,
            } => format!(
                "{context}: key {key:?} of {} {name:?} was not sent with the pod",
                kind.field_name()
            ),
            PodError::Invalid(m) => m.clone(),
        }
    }
}
