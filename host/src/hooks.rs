//! The extension seam: the four steps where a site changes how a CRI request
//! becomes a remote pod and how remote state becomes CRI state.
//!
//! The CRI host computes a default for each step, then hands it to the [`Hooks`]
//! in force, which return the final answer. [`NoHooks`] keeps the default; the
//! WebAssembly extension system implements the same trait. Hooks are synchronous
//! and must be fast (microseconds): they run on CRI call paths and in the status
//! loop. They never fail the caller except through [`Hooks::admit`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// CRI `LinuxContainerResources`, as plain numbers (0 = not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriResources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// page size (e.g. "2MB") -> limit in bytes
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 unified keys
    pub unified: BTreeMap<String, String>,
    pub memory_swap_limit_in_bytes: i64,
}

/// A device handed to the container (`ContainerConfig.devices`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    pub permissions: String,
}

/// Kubernetes requests and limits: resource name -> quantity string ("500m", "1Gi", "2").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRequirements {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

/// Input of the resource-mapping step, for one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceInput {
    pub pod_name: String,
    pub pod_namespace: String,
    pub container_name: String,
    pub resources: CriResources,
    pub devices: Vec<Device>,
    /// CDI device names, e.g. "nvidia.com/gpu=0"
    pub cdi_devices: Vec<String>,
    /// container annotations merged over pod annotations
    pub annotations: BTreeMap<String, String>,
    pub sandbox_overhead: Option<CriResources>,
    pub sandbox_resources: Option<CriResources>,
    /// what the host computed (see the seeds' default mapping)
    pub default: ResourceRequirements,
}

/// Input of the annotation step, once per remote pod before `/create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnnotationInput {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    /// container name -> its CRI annotations
    pub container_annotations: BTreeMap<String, BTreeMap<String, String>>,
    pub runtime_handler: String,
    /// `PluginConfig` entries from the host's config
    pub plugin_config: BTreeMap<String, String>,
}

/// Changes to the remote pod's metadata. Removals apply before sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChanges {
    pub set_labels: BTreeMap<String, String>,
    pub remove_labels: Vec<String>,
    pub set_annotations: BTreeMap<String, String>,
    pub remove_annotations: Vec<String>,
}

/// The CRI container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CriState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// The remote container status, as the plugin reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteState {
    Waiting,
    Running,
    Terminated,
    /// the plugin did not report this container
    Missing,
}

/// Decision of the state-mapping step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDecision {
    pub state: CriState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

/// Input of the state-mapping step, per container per status update.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInput {
    pub pod_name: String,
    pub pod_namespace: String,
    pub container_name: String,
    pub job_id: String,
    pub remote: RemoteState,
    pub remote_reason: String,
    pub remote_message: String,
    pub remote_exit_code: i32,
    /// what the host's default mapping decided
    pub default: StateDecision,
}

/// What a site can change. Every method gets the host's default and returns the
/// final answer; an implementation that fails internally returns the default.
pub trait Hooks: Send + Sync + 'static {
    fn map_resources(&self, input: &ResourceInput) -> ResourceRequirements {
        input.default.clone()
    }

    fn handle_annotations(&self, _input: &AnnotationInput) -> MetadataChanges {
        MetadataChanges::default()
    }

    fn map_state(&self, input: &StateInput) -> StateDecision {
        input.default.clone()
    }

    /// The remote pod about to be created: `Err(reason)` denies it.
    ///
    /// It is asked at `CreateContainer`, on the pod the container would be
    /// sent in alone; a denial fails that call with `PermissionDenied`
    /// carrying the reason. When the batch finally sent differs from what was
    /// judged (several containers started together, a later batch of a
    /// restarted container), it is asked again on the batch; a denial then
    /// makes each of its containers exit with code 128, reason
    /// `AdmissionDenied` and the reason in the message, and nothing is sent.
    fn admit(&self, _pod: &Pod) -> Result<(), String> {
        Ok(())
    }
}

/// The defaults, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}
