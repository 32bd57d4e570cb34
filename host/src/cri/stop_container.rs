//! `StopContainer`: once no container of its remote pod should run, the remote pod
//! is deleted with the given grace period. Idempotent for unknown/stopped containers.

use std::sync::Arc;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub async fn stop_container(
    rt: &Arc<Runtime>,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse> {
    let id = {
        let st = rt.store.read();
        match crate::ids::resolve(&st.containers, &req.container_id) {
            Ok(id) => id.to_string(),
            Err(_) => return Ok(cri::StopContainerResponse {}),
        }
    };
    crate::dispatch::stop_container(rt, &id, req.timeout).await;
    Ok(cri::StopContainerResponse {})
}
