//! `ExecSync`, `Exec`, `Attach`, `PortForward`, `CheckpointContainer`: interLink
//! has no API for them yet, so they answer `Unimplemented` and say so.

use tonic::Status;

use super::{Result, resolve_container, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported: containers run remotely through interLink, whose API has no exec/attach/port-forward yet"
    ))
}

pub fn exec_sync(rt: &Runtime, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
    resolve_container(rt, &req.container_id)?;
    Err(unimplemented("ExecSync"))
}

pub fn exec(rt: &Runtime, req: cri::ExecRequest) -> Result<cri::ExecResponse> {
    resolve_container(rt, &req.container_id)?;
    Err(unimplemented("Exec"))
}

pub fn attach(rt: &Runtime, req: cri::AttachRequest) -> Result<cri::AttachResponse> {
    resolve_container(rt, &req.container_id)?;
    Err(unimplemented("Attach"))
}

pub fn port_forward(
    rt: &Runtime,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse> {
    resolve_sandbox(rt, &req.pod_sandbox_id)?;
    Err(unimplemented("PortForward"))
}

pub fn checkpoint_container(
    _rt: &Runtime,
    _req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse> {
    Err(Status::unimplemented(
        "CheckpointContainer is not supported: containers run remotely through interLink",
    ))
}
