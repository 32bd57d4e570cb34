//! `ReopenContainerLog`: the log writer opens the file for every write, so after
//! kubelet rotated it the next line goes to the new file; this call makes sure
//! the file exists again right away.

use tonic::Status;

use super::{Result, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn reopen_container_log(
    rt: &Runtime,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    let (file, running) = {
        let st = rt.store.read();
        let c = st
            .containers
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
        (
            c.log_file.clone(),
            c.state == crate::states::ContainerState::Running,
        )
    };
    if !running {
        return Err(Status::failed_precondition(format!(
            "container {id} is not running"
        )));
    }
    if let Some(f) = file {
        crate::logs::create_file(&f)
            .map_err(|e| Status::internal(format!("reopen {}: {e}", f.display())))?;
    }
    Ok(cri::ReopenContainerLogResponse {})
}
