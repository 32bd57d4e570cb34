//! What a state change asked for, run after the store lock is released:
//! container events (with the statuses kubelet's evented PLEG reads), log
//! followers, dispatcher wake-ups. [`change`] is how the rest of the host
//! changes state: one [`crate::lifecycle`] change, then its effects.

use std::sync::Arc;

use crate::lifecycle::{Change, Effects};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::views;

/// Run `f` as one change of the state, then its effects.
pub fn change<R>(rt: &Arc<Runtime>, f: impl FnOnce(&mut Change<'_>) -> R) -> R {
    let (r, fx) = crate::lifecycle::change(&rt.store, f);
    run(rt, fx);
    r
}

/// Run the effects of a change.
pub fn run(rt: &Arc<Runtime>, fx: Effects) {
    for (id, sandbox, kind) in fx.events {
        emit(rt, &id, &sandbox, kind);
    }
    for id in fx.followers {
        crate::logs::ensure_follower(rt, &id);
    }
    if fx.wake_dispatcher {
        rt.dispatch_wake.notify_one();
    }
}

/// Publish a container event with the sandbox's and its containers' statuses;
/// nothing is built without subscribers.
fn emit(rt: &Runtime, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
    if !rt.events.has_subscribers() {
        return;
    }
    let (sandbox, statuses) = {
        let st = rt.store.read();
        (
            st.sandboxes.get(sandbox_id).map(views::sandbox_status),
            views::sandbox_containers(&st, sandbox_id),
        )
    };
    rt.events.send(cri::ContainerEventResponse {
        container_id: container_id.to_string(),
        container_event_type: kind as i32,
        created_at: crate::now_ns(),
        pod_sandbox_status: sandbox,
        containers_statuses: statuses,
    });
}
