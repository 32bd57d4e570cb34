//! `ExecSync`: run a command to completion through the streaming backend (the
//! interLink exec extension) and answer its output and exit code. kubelet's
//! exec probes call it every few seconds per pod.
//!
//! Output is bounded like kubelet's: at most [`MAX_OUTPUT`] bytes of each
//! stream are kept (the rest is read and dropped, so the command never blocks
//! on a full pipe). `timeout` (seconds, 0 = none) ends the call with
//! `DeadlineExceeded`.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Status;

use super::Result;
use super::exec::{running_container, streaming};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::streaming::{ExecIo, ExecTarget, StreamBackend};

/// Bound on each of stdout and stderr (kubelet's `maxMsgSize`, 16 MiB).
pub const MAX_OUTPUT: usize = 16 << 20;

pub async fn exec_sync(rt: &Runtime, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
    let id = running_container(rt, &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument("cmd must not be empty"));
    }
    if req.timeout < 0 {
        return Err(Status::invalid_argument("timeout must not be negative"));
    }
    let backend = streaming(rt)?.backend();
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
    run(
        backend.as_ref(),
        ExecTarget {
            container_id: id,
            cmd: req.cmd,
            tty: false,
            timeout,
        },
    )
    .await
}

/// Keep up to [`MAX_OUTPUT`] bytes of what arrives on `rx`.
async fn collect(mut rx: mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&b[..b.len().min(room)]);
    }
    out
}

/// Beyond a command's timeout, how long the backend has to stop it before the
/// call ends anyway.
const STOP_BOUND: Duration = Duration::from_secs(15);

/// Run `target` on `backend` to completion (or its timeout: the backend stops
/// the command and answers `TimedOut` once it is gone; a backend that does
/// not is cut off [`STOP_BOUND`] later).
pub async fn run(backend: &dyn StreamBackend, target: ExecTarget) -> Result<cri::ExecSyncResponse> {
    let timeout = target.timeout;
    let (out_tx, out_rx) = mpsc::channel(16);
    let (err_tx, err_rx) = mpsc::channel(16);
    let io = ExecIo {
        stdin: None,
        stdout: Some(out_tx),
        stderr: Some(err_tx),
        resize: None,
    };
    let cmd = target.cmd.clone();
    let work = async {
        let (code, stdout, stderr) =
            tokio::join!(backend.exec(target, io), collect(out_rx), collect(err_rx));
        code.map(|exit_code| cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        })
    };
    let Some(t) = timeout else {
        return work.await.map_err(Status::from);
    };
    let timed_out =
        || Status::deadline_exceeded(format!("command {cmd:?} timed out after {}s", t.as_secs()));
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(t + STOP_BOUND, work)
        .await
        .map_err(|_| timed_out())?;
    // a backend that let the command finish after its deadline: still a
    // timeout, as kubelet counts it
    if r.is_ok() && started.elapsed() >= t {
        return Err(timed_out());
    }
    r.map_err(Status::from)
}
