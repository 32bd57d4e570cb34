//! `ContainerStatus`, from memory (the status loop keeps it current).

use std::collections::HashMap;

use super::{Result, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn container_status(
    rt: &Runtime,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    let st = rt.store.read();
    let c = st
        .containers
        .get(&id)
        .ok_or_else(|| tonic::Status::not_found(format!("container {id:?} not found")))?;
    let mut info = HashMap::new();
    if req.verbose {
        let r = c.remote_uid.as_ref().and_then(|u| st.remotes.get(u));
        info.insert(
            "info".to_string(),
            serde_json::json!({
                "sandboxID": c.sandbox_id,
                "remoteUID": c.remote_uid,
                "remotePod": r.map(|r| r.name.clone()),
                "remotePhase": r.map(|r| format!("{:?}", r.phase)),
                "jobID": r.map(|r| r.job_id.clone()),
                "logOffset": c.log_offset,
            })
            .to_string(),
        );
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(crate::views::container_status(c)),
        info,
    })
}
