//! `StopPodSandbox`: every container stopped, every remote pod deleted.
//! Idempotent: an unknown or stopped sandbox succeeds.

use super::Result;
use crate::ids;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use std::sync::Arc;

pub async fn stop_pod_sandbox(
    rt: &Arc<Runtime>,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse> {
    let id = {
        let st = rt.store.read();
        match ids::resolve(&st.sandboxes, &req.pod_sandbox_id) {
            Ok(id) => id.to_string(),
            Err(_) => return Ok(cri::StopPodSandboxResponse {}),
        }
    };
    crate::dispatch::stop_sandbox(rt, &id).await;
    Ok(cri::StopPodSandboxResponse {})
}
