//! `StartContainer`: puts the container in its sandbox's open batch and returns at
//! once, with its CRI log file created; the batch is sent (`/create`) when the
//! batch window closes. From here on
//! the container is RUNNING (never CREATED again) until the remote side says it
//! exited (see [`crate::lifecycle`]).

use std::sync::Arc;

use super::{Result, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn start_container(
    rt: &Arc<Runtime>,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    let window = rt.cfg.batch_window.as_nanos() as i64;
    let (res, fx) = crate::lifecycle::change(&rt.store, |ch| {
        let batch = ch.start_container(&id, window)?;
        tracing::debug!(container = %id, %batch, "started: in its batch");
        // the batch's /create (sent later by the dispatcher) continues this call's trace
        interlink::telemetry::hand_off(&batch);
        Ok::<_, crate::lifecycle::LifecycleError>(
            ch.state()
                .containers
                .get(&id)
                .and_then(|c| c.log_file.clone()),
        )
    });
    let log_file = res?;
    // kubelet and critest open the log file as soon as this call returns
    if let Some(f) = log_file
        && let Err(e) = crate::logs::create_file(&f)
    {
        tracing::warn!(container = %id, file = %f.display(), error = %e, "creating the container log file failed");
    }
    crate::effects::run(rt, fx);
    Ok(cri::StartContainerResponse {})
}
