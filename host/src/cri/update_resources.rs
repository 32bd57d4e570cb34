//! `UpdateContainerResources` and `UpdatePodSandboxResources`: recorded (a remote
//! pod cannot be resized in place through interLink); unknown IDs are NotFound.

use super::{Result, resolve_container, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn update_container_resources(
    rt: &Runtime,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    rt.store.update(|st, d| {
        if let Some(c) = st.containers.get_mut(&id)
            && let Some(r) = req.linux
        {
            c.config
                .linux
                .get_or_insert_with(Default::default)
                .resources = Some(r);
            d.container(&id);
        }
    });
    Ok(cri::UpdateContainerResourcesResponse {})
}

pub fn update_pod_sandbox_resources(
    rt: &Runtime,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse> {
    let id = resolve_sandbox(rt, &req.pod_sandbox_id)?;
    rt.store.update(|st, d| {
        if let Some(s) = st.sandboxes.get_mut(&id) {
            let l = s.config.linux.get_or_insert_with(Default::default);
            if req.overhead.is_some() {
                l.overhead = req.overhead;
            }
            if req.resources.is_some() {
                l.resources = req.resources;
            }
            d.sandbox(&id);
        }
    });
    Ok(cri::UpdatePodSandboxResourcesResponse {})
}
