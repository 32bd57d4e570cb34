//! `RemoveContainer`: stops it if needed and forgets it; a remote pod left with
//! no container is deleted. Idempotent.

use std::sync::Arc;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Phase;

pub async fn remove_container(
    rt: &Arc<Runtime>,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse> {
    let (id, running) = {
        let st = rt.store.read();
        match crate::ids::resolve(&st.containers, &req.container_id) {
            Ok(id) => (
                id.to_string(),
                st.containers
                    .get(id)
                    .is_some_and(|c| c.state != cri::ContainerState::ContainerExited as i32),
            ),
            Err(_) => return Ok(cri::RemoveContainerResponse {}),
        }
    };
    if running {
        let _ = crate::dispatch::stop_container(rt, &id, 0).await;
    }
    let sandbox = rt.store.update(|st, d| {
        let c = st.containers.remove(&id)?;
        d.container(&id);
        if let Some(uid) = &c.remote_uid
            && let Some(r) = st.remotes.get_mut(uid)
        {
            let others = r
                .containers
                .iter()
                .any(|x| x != &id && st.containers.contains_key(x));
            if !others && matches!(r.phase, Phase::Created | Phase::Failed) {
                r.phase = Phase::Deleting;
                d.remote(uid);
            }
        }
        Some(c.sandbox_id)
    });
    rt.dispatch_wake.notify_one();
    if let Some(sb) = sandbox {
        rt.emit(&id, &sb, cri::ContainerEventType::ContainerDeletedEvent);
    }
    Ok(cri::RemoveContainerResponse {})
}
