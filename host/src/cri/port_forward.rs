//! `PortForward`: a single-use URL on the host's streaming server where the
//! client forwards connections to ports of the pod.

use tonic::Status;

use super::exec::streaming;
use super::{Result, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::streaming::Pending;

pub async fn port_forward(
    rt: &Runtime,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse> {
    let id = resolve_sandbox(rt, &req.pod_sandbox_id)?;
    {
        let st = rt.store.read();
        let sb = st
            .sandboxes
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id:?} not found")))?;
        if !sb.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {id:?} is not ready"
            )));
        }
    }
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Status::invalid_argument(format!(
            "port {p} is not a valid port (1-65535)"
        )));
    }
    let streaming = streaming(rt)?;
    streaming.backend().available().await?;
    let url = streaming
        .url_for(Pending::PortForward { sandbox_id: id })
        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
    Ok(cri::PortForwardResponse { url })
}
