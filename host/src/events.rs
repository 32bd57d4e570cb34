//! `GetContainerEvents`: every container state change, broadcast to subscribers.

use tokio::sync::broadcast;

use crate::proto::runtime::v1 as cri;

pub struct Events {
    tx: broadcast::Sender<cri::ContainerEventResponse>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.tx.subscribe()
    }

    /// Publish (no subscriber: dropped).
    pub fn emit(&self, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(cri::ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: crate::now_ns(),
            pod_sandbox_status: None,
            containers_statuses: vec![],
        });
        let _ = sandbox_id;
    }
}
