//! `Exec`: a single-use URL on the host's streaming server (see
//! [`crate::streaming`]) where the client runs the command with its streams.
//! Also the checks `Exec`, `ExecSync` and `Attach` share, and
//! `CheckpointContainer` (unsupported).

use std::sync::Arc;

use tonic::Status;

use super::{Result, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::states::ContainerState;
use crate::streaming::interlink_exec::{self, Targets};
use crate::streaming::remotecommand::Options;
use crate::streaming::{BackendError, ExecTarget, Pending, Streaming};
use interlink::exec::Target;

/// The streaming server, or `Unavailable` when it is not running.
pub fn streaming(rt: &Runtime) -> Result<Arc<Streaming>> {
    rt.streaming
        .get()
        .cloned()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))
}

/// The full ID of a container that exists (`NotFound`) and runs
/// (`FailedPrecondition`), as kubelet requires for exec and attach.
pub fn running_container(rt: &Runtime, id: &str) -> Result<String> {
    let id = resolve_container(rt, id)?;
    let st = rt.store.read();
    let c = st
        .containers
        .get(&id)
        .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
    if c.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {id:?} is not running (state {})",
            c.state.to_cri().as_str_name()
        )));
    }
    Ok(id)
}

/// kubelet's checks of the stream flags of `Exec` and `Attach`.
pub fn stream_options(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<Options> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(Options {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

pub async fn exec(rt: &Runtime, req: cri::ExecRequest) -> Result<cri::ExecResponse> {
    let id = running_container(rt, &req.container_id)?;
    // what is missing first: a peer without exec makes every request moot
    let streaming = streaming(rt)?;
    streaming.backend().available().await?;
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument("cmd must not be empty"));
    }
    let opts = stream_options(req.stdin, req.stdout, req.stderr, req.tty)?;
    let url = streaming
        .url_for(Pending::Exec {
            target: ExecTarget {
                container_id: id,
                cmd: req.cmd,
                tty: req.tty,
                timeout: None,
            },
            opts,
        })
        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
    Ok(cri::ExecResponse { url })
}

/// The runtime's store says where containers and sandboxes run remotely.
impl Targets for Runtime {
    fn container(&self, id: &str) -> std::result::Result<(Target, String), BackendError> {
        interlink_exec::container_target(&self.store, id)
    }
    fn sandbox(&self, id: &str) -> std::result::Result<Target, BackendError> {
        interlink_exec::sandbox_target(&self.store, id)
    }
}

pub fn checkpoint_container(
    _rt: &Runtime,
    _req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse> {
    Err(Status::unimplemented(
        "CheckpointContainer is not supported: containers run remotely through interLink",
    ))
}
