//! `StartContainer`: puts the container in its sandbox's open batch and returns at
//! once, with its CRI log file created; the batch is sent (`/create`) when the
//! batch window closes. From here on
//! the container is RUNNING (never CREATED again) until the remote side says it
//! exited.

use tonic::Status;

use super::{Result, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn start_container(
    rt: &Runtime,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    let (sandbox, log_file) = rt.store.update(|st, d| {
        let c = st
            .containers
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
        if c.state != cri::ContainerState::ContainerCreated as i32 {
            let state = cri::ContainerState::try_from(c.state)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            return Err(Status::failed_precondition(format!(
                "container {id} is in state {state}; only a created container can be started"
            )));
        }
        let sandbox_id = c.sandbox_id.clone();
        if !st.sandboxes.get(&sandbox_id).is_some_and(|s| s.ready) {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {sandbox_id} is not ready (stopped)"
            )));
        }
        let uid = crate::dispatch::enqueue(rt, st, &id).map_err(Status::internal)?;
        d.container(&id);
        d.remote(&uid);
        d.sandbox(&sandbox_id);
        Ok((
            sandbox_id,
            st.containers.get(&id).and_then(|c| c.log_file.clone()),
        ))
    })?;
    // kubelet and critest open the log file as soon as this call returns
    if let Some(f) = log_file
        && let Err(e) = crate::logs::create_file(&f)
    {
        tracing::warn!(container = %id, file = %f.display(), error = %e, "creating the container log file failed");
    }
    rt.dispatch_wake.notify_one();
    rt.emit(
        &id,
        &sandbox,
        cri::ContainerEventType::ContainerStartedEvent,
    );
    Ok(cri::StartContainerResponse {})
}
