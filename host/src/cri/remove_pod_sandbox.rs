//! `RemovePodSandbox`: stop, then forget the sandbox and its containers. Remote
//! pods not yet confirmed deleted stay recorded until they are. Idempotent.

use super::Result;
use crate::ids;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use std::sync::Arc;

pub async fn remove_pod_sandbox(
    rt: &Arc<Runtime>,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse> {
    let id = {
        let st = rt.store.read();
        match ids::resolve(&st.sandboxes, &req.pod_sandbox_id) {
            Ok(id) => id.to_string(),
            Err(_) => return Ok(cri::RemovePodSandboxResponse {}),
        }
    };
    crate::dispatch::stop_sandbox(rt, &id).await;
    crate::effects::change(rt, |ch| ch.remove_sandbox(&id));
    Ok(cri::RemovePodSandboxResponse {})
}
