//! `PodSandboxStatus`, from memory.

use super::{Result, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::views;

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
    let (info, containers_statuses) = if req.verbose {
        (
            views::sandbox_info(&st, sb),
            views::sandbox_containers(&st, &id),
        )
    } else {
        Default::default()
    };
    Ok(cri::PodSandboxStatusResponse {
        status: Some(views::sandbox_status(sb)),
        info,
        containers_statuses,
        timestamp: crate::now_ns(),
    })
}
