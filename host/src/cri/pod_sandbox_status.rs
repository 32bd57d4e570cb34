//! `PodSandboxStatus`, from memory.

use std::collections::HashMap;

use super::{Result, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Phase;

pub fn pod_sandbox_status(
    rt: &Runtime,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse> {
    let id = resolve_sandbox(rt, &req.pod_sandbox_id)?;
    let st = rt.store.read();
    let sb = st
        .sandboxes
        .get(&id)
        .ok_or_else(|| tonic::Status::not_found(format!("pod sandbox {id:?} not found")))?;
    let mut info = HashMap::new();
    let mut containers_statuses = vec![];
    if req.verbose {
        let remotes: Vec<serde_json::Value> = st
            .remotes
            .values()
            .filter(|r| r.sandbox_id == id)
            .map(|r| serde_json::json!({"uid": r.uid, "name": r.name, "phase": format!("{:?}", r.phase), "jobID": r.job_id, "containers": r.containers}))
            .collect();
        info.insert("info".to_string(), serde_json::json!({"runtimeHandler": sb.runtime_handler, "remoteUID": sb.uid, "remotePods": remotes}).to_string());
        for c in st.containers.values().filter(|c| c.sandbox_id == id) {
            containers_statuses.push(rt.container_status(c, None));
        }
    }
    let _ = Phase::Created;
    Ok(cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.ready {
                cri::PodSandboxState::SandboxReady as i32
            } else {
                cri::PodSandboxState::SandboxNotready as i32
            },
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
        }),
        info,
        containers_statuses,
        timestamp: crate::now_ns(),
    })
}
