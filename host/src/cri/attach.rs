//! `Attach`: a single-use URL on the host's streaming server where the client
//! attaches to the container's main process.

use tonic::Status;

use super::Result;
use super::exec::{running_container, stream_options, streaming};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::streaming::Pending;

pub async fn attach(rt: &Runtime, req: cri::AttachRequest) -> Result<cri::AttachResponse> {
    let id = running_container(rt, &req.container_id)?;
    let streaming = streaming(rt)?;
    streaming.backend().available().await?;
    let opts = stream_options(req.stdin, req.stdout, req.stderr, req.tty)?;
    let url = streaming
        .url_for(Pending::Attach {
            container_id: id,
            opts,
        })
        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
    Ok(cri::AttachResponse { url })
}
