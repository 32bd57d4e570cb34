//! CRI messages built from the state: what kubelet reads about containers and
//! sandboxes, in one place for the CRI calls and the container events.

use std::collections::HashMap;

use crate::proto::runtime::v1 as cri;
use crate::store::{Container, Inner, Sandbox};

fn image_spec(c: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: c.image_ref.clone(),
        ..c.config.image.clone().unwrap_or_default()
    }
}

/// The CRI `ContainerStatus` of a record.
pub fn container_status(c: &Container) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.state.as_i32(),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c
            .log_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        image_id: c.image_id.clone(),
        user: None,
        stop_signal: c.config.stop_signal,
    }
}

/// The CRI `Container` (list entry) of a record.
pub fn container_summary(c: &Container) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: c.config.metadata.clone(),
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        state: c.state.as_i32(),
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        image_id: c.image_id.clone(),
    }
}

/// The CRI sandbox state of a record.
pub fn sandbox_state(sb: &Sandbox) -> cri::PodSandboxState {
    if sb.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// The CRI `PodSandbox` (list entry) of a record.
pub fn sandbox_summary(sb: &Sandbox) -> cri::PodSandbox {
    cri::PodSandbox {
        id: sb.id.clone(),
        metadata: sb.config.metadata.clone(),
        state: sandbox_state(sb) as i32,
        created_at: sb.created_at,
        labels: sb.config.labels.clone(),
        annotations: sb.config.annotations.clone(),
        runtime_handler: sb.runtime_handler.clone(),
    }
}

/// The CRI `PodSandboxStatus` of a record.
pub fn sandbox_status(sb: &Sandbox) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: sb.id.clone(),
        metadata: sb.config.metadata.clone(),
        state: sandbox_state(sb) as i32,
        created_at: sb.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: sb.ip.clone(),
            additional_ips: vec![],
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: sb
                    .config
                    .linux
                    .as_ref()
                    .and_then(|l| l.security_context.as_ref())
                    .and_then(|s| s.namespace_options.clone()),
            }),
        }),
        labels: sb.config.labels.clone(),
        annotations: sb.config.annotations.clone(),
        runtime_handler: sb.runtime_handler.clone(),
    }
}

/// The statuses of a sandbox's containers.
pub fn sandbox_containers(st: &Inner, sandbox_id: &str) -> Vec<cri::ContainerStatus> {
    st.containers
        .values()
        .filter(|c| c.sandbox_id == sandbox_id)
        .map(container_status)
        .collect()
}

/// `PodSandboxStatus`'s verbose `info`: the remote pods behind the sandbox.
pub fn sandbox_info(st: &Inner, sb: &Sandbox) -> HashMap<String, String> {
    let remotes: Vec<serde_json::Value> = st
        .remotes
        .values()
        .filter(|r| r.sandbox_id == sb.id)
        .map(|r| serde_json::json!({"uid": r.uid, "name": r.name, "phase": format!("{:?}", r.phase), "jobID": r.job_id, "containers": r.containers}))
        .collect();
    HashMap::from([(
        "info".to_string(),
        serde_json::json!({"runtimeHandler": sb.runtime_handler, "remoteUID": sb.uid, "remotePods": remotes})
            .to_string(),
    )])
}
