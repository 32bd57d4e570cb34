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

    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publish (no subscriber: dropped); the `effects` module builds the events.
    pub fn send(&self, ev: cri::ContainerEventResponse) {
        let _ = self.tx.send(ev);
    }
}
