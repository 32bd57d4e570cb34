//! `RemoveContainer`: stops it if needed and forgets it; a remote pod left with
//! no container is deleted. Idempotent.

use std::sync::Arc;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub async fn remove_container(
    rt: &Arc<Runtime>,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse> {
    let (id, running) = {
        let st = rt.store.read();
        match crate::ids::resolve(&st.containers, &req.container_id) {
            Ok(id) => (
                id.to_string(),
                st.containers.get(id).is_some_and(|c| !c.state.is_exited()),
            ),
            Err(_) => return Ok(cri::RemoveContainerResponse {}),
        }
    };
    if running {
        crate::dispatch::stop_container(rt, &id, 0).await;
    }
    crate::effects::change(rt, |ch| ch.remove_container(&id));
    Ok(cri::RemoveContainerResponse {})
}
