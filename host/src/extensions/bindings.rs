//! Bindings to the worlds of `wit/` (one per hook), and conversions between the
//! hook seam's Rust types and the WIT records.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::hooks;

pub(crate) mod resources {
    wasmtime::component::bindgen!({
        world: "resource-mapping",
        path: "../wit",
    });
}

pub(crate) mod annotations {
    wasmtime::component::bindgen!({
        world: "annotation-handling",
        path: "../wit",
        with: {
            "interlink:extensions/types": super::resources::interlink::extensions::types,
            "interlink:extensions/host": super::resources::interlink::extensions::host,
        },
    });
}

pub(crate) mod state {
    wasmtime::component::bindgen!({
        world: "state-mapping",
        path: "../wit",
        with: {
            "interlink:extensions/types": super::resources::interlink::extensions::types,
            "interlink:extensions/host": super::resources::interlink::extensions::host,
        },
    });
}

pub(crate) mod admission {
    wasmtime::component::bindgen!({
        world: "admission-policy",
        path: "../wit",
        with: {
            "interlink:extensions/types": super::resources::interlink::extensions::types,
            "interlink:extensions/host": super::resources::interlink::extensions::host,
        },
    });
}

pub(crate) use resources::interlink::extensions::host;
pub(crate) use resources::interlink::extensions::types as wit;

pub(crate) type StringMap = Vec<(String, String)>;

fn map(m: &BTreeMap<String, String>) -> StringMap {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn unmap(m: StringMap) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn cri_resources(r: &hooks::CriResources) -> wit::CriResources {
    wit::CriResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r.hugepage_limits.clone(),
        unified: map(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

pub(crate) fn requirements(r: &hooks::ResourceRequirements) -> wit::ResourceRequirements {
    wit::ResourceRequirements {
        requests: map(&r.requests),
        limits: map(&r.limits),
    }
}

pub(crate) fn from_requirements(r: wit::ResourceRequirements) -> hooks::ResourceRequirements {
    hooks::ResourceRequirements {
        requests: unmap(r.requests),
        limits: unmap(r.limits),
    }
}

/// The WIT input for one resource-mapping stage, `current` being what the
/// previous stage produced.
pub(crate) fn resource_input(
    i: &hooks::ResourceInput,
    current: &hooks::ResourceRequirements,
) -> wit::ResourceInput {
    wit::ResourceInput {
        pod_name: i.pod_name.clone(),
        pod_namespace: i.pod_namespace.clone(),
        container_name: i.container_name.clone(),
        resources: cri_resources(&i.resources),
        devices: i
            .devices
            .iter()
            .map(|d| wit::Device {
                container_path: d.container_path.clone(),
                host_path: d.host_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        cdi_devices: i.cdi_devices.clone(),
        annotations: map(&i.annotations),
        sandbox_overhead: i.sandbox_overhead.as_ref().map(cri_resources),
        sandbox_resources: i.sandbox_resources.as_ref().map(cri_resources),
        current: requirements(current),
    }
}

/// The WIT input for one annotation stage: labels and annotations with the
/// changes so far applied.
pub(crate) fn annotation_input(
    i: &hooks::AnnotationInput,
    so_far: &hooks::MetadataChanges,
) -> wit::AnnotationInput {
    let apply =
        |base: &BTreeMap<String, String>, remove: &[String], set: &BTreeMap<String, String>| {
            let mut m = base.clone();
            for k in remove {
                m.remove(k);
            }
            m.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            map(&m)
        };
    wit::AnnotationInput {
        pod_name: i.pod_name.clone(),
        pod_namespace: i.pod_namespace.clone(),
        pod_labels: apply(&i.pod_labels, &so_far.remove_labels, &so_far.set_labels),
        pod_annotations: apply(
            &i.pod_annotations,
            &so_far.remove_annotations,
            &so_far.set_annotations,
        ),
        container_annotations: i
            .container_annotations
            .iter()
            .map(|(c, m)| (c.clone(), map(m)))
            .collect(),
        runtime_handler: i.runtime_handler.clone(),
        plugin_config: map(&i.plugin_config),
    }
}

/// Merge one module's changes over the changes so far (later modules win).
pub(crate) fn merge_changes(so_far: &mut hooks::MetadataChanges, c: wit::MetadataChanges) {
    for k in c.remove_labels {
        so_far.set_labels.remove(&k);
        if !so_far.remove_labels.contains(&k) {
            so_far.remove_labels.push(k);
        }
    }
    for (k, v) in c.set_labels {
        so_far.remove_labels.retain(|r| *r != k);
        so_far.set_labels.insert(k, v);
    }
    for k in c.remove_annotations {
        so_far.set_annotations.remove(&k);
        if !so_far.remove_annotations.contains(&k) {
            so_far.remove_annotations.push(k);
        }
    }
    for (k, v) in c.set_annotations {
        so_far.remove_annotations.retain(|r| *r != k);
        so_far.set_annotations.insert(k, v);
    }
}

fn cri_state(s: hooks::CriState) -> wit::CriState {
    match s {
        hooks::CriState::Created => wit::CriState::Created,
        hooks::CriState::Running => wit::CriState::Running,
        hooks::CriState::Exited => wit::CriState::Exited,
        hooks::CriState::Unknown => wit::CriState::Unknown,
    }
}

fn from_cri_state(s: wit::CriState) -> hooks::CriState {
    match s {
        wit::CriState::Created => hooks::CriState::Created,
        wit::CriState::Running => hooks::CriState::Running,
        wit::CriState::Exited => hooks::CriState::Exited,
        wit::CriState::Unknown => hooks::CriState::Unknown,
    }
}

pub(crate) fn decision(d: &hooks::StateDecision) -> wit::StateDecision {
    wit::StateDecision {
        state: cri_state(d.state),
        exit_code: d.exit_code,
        reason: d.reason.clone(),
        message: d.message.clone(),
    }
}

pub(crate) fn from_decision(d: wit::StateDecision) -> hooks::StateDecision {
    hooks::StateDecision {
        state: from_cri_state(d.state),
        exit_code: d.exit_code,
        reason: d.reason,
        message: d.message,
    }
}

pub(crate) fn state_input(
    i: &hooks::StateInput,
    current: &hooks::StateDecision,
) -> wit::StateInput {
    wit::StateInput {
        pod_name: i.pod_name.clone(),
        pod_namespace: i.pod_namespace.clone(),
        container_name: i.container_name.clone(),
        job_id: i.job_id.clone(),
        remote: match i.remote {
            hooks::RemoteState::Waiting => wit::RemoteState::Waiting,
            hooks::RemoteState::Running => wit::RemoteState::Running,
            hooks::RemoteState::Terminated => wit::RemoteState::Terminated,
            hooks::RemoteState::Missing => wit::RemoteState::Missing,
        },
        remote_reason: i.remote_reason.clone(),
        remote_message: i.remote_message.clone(),
        remote_exit_code: i.remote_exit_code,
        current: decision(current),
    }
}

fn quantities(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> StringMap {
    m.map(|m| m.iter().map(|(k, q)| (k.clone(), q.0.clone())).collect())
        .unwrap_or_default()
}

fn container(c: &Container, pod: &Pod, init: bool) -> wit::ContainerSummary {
    let sc = c.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let res = c.resources.as_ref();
    wit::ContainerSummary {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        init,
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        allow_privilege_escalation: sc.and_then(|s| s.allow_privilege_escalation),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_sc.and_then(|s| s.run_as_user)),
        capabilities_add: sc
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.add.clone())
            .unwrap_or_default(),
        requests: quantities(res.and_then(|r| r.requests.as_ref())),
        limits: quantities(res.and_then(|r| r.limits.as_ref())),
    }
}

/// The admission input for a pod.
pub(crate) fn pod_summary(pod: &Pod) -> wit::PodSummary {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let mut containers: Vec<wit::ContainerSummary> = Vec::new();
    if let Some(spec) = spec {
        for c in spec.init_containers.iter().flatten() {
            containers.push(container(c, pod, true));
        }
        for c in &spec.containers {
            containers.push(container(c, pod, false));
        }
    }
    wit::PodSummary {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        labels: meta.labels.as_ref().map(map).unwrap_or_default(),
        annotations: meta.annotations.as_ref().map(map).unwrap_or_default(),
        containers,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        host_pid: spec.and_then(|s| s.host_pid).unwrap_or(false),
        host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        pod_json: serde_json::to_string(pod).unwrap_or_default(),
    }
}

/// Total bytes of text in a string map (keys and values).
pub(crate) fn map_bytes(m: &StringMap) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len()).sum()
}
