//! Sandboxes: created (with a pod IP), stopped (every container stopped,
//! every remote pod deleted), removed.

use super::{Change, ExitCause, LifecycleError, StopPoint};
use crate::states::{ContainerState, Phase};
use crate::store::Sandbox;

impl Change<'_> {
    /// Record a new sandbox; with a pod CIDR, give it the first free address.
    pub fn create_sandbox(
        &mut self,
        mut sb: Sandbox,
        cidr: Option<&crate::network::Cidr>,
    ) -> Result<(), SandboxRefused> {
        let md = sb.config.metadata.clone().unwrap_or_default();
        if let Some(other) = self.st.sandboxes.values().find(|s| {
            s.config.metadata.as_ref().is_some_and(|m| {
                m.name == md.name
                    && m.namespace == md.namespace
                    && m.uid == md.uid
                    && m.attempt == md.attempt
            })
        }) {
            return Err(SandboxRefused::Exists(LifecycleError::SandboxExists {
                namespace: md.namespace,
                name: md.name,
                uid: md.uid,
                attempt: md.attempt,
                id: other.id.clone(),
            }));
        }
        if let Some(c) = cidr {
            let used: std::collections::HashSet<std::net::Ipv4Addr> = self
                .st
                .sandboxes
                .values()
                .filter_map(|s| s.ip.parse().ok())
                .collect();
            sb.ip = c
                .allocate(&used)
                .ok_or_else(|| SandboxRefused::NoFreeIp {
                    cidr: c.to_string(),
                    held: used.len(),
                })?
                .to_string();
        }
        sb.ready = true;
        self.dirty.sandbox(&sb.id);
        self.st.sandboxes.insert(sb.id.clone(), sb);
        Ok(())
    }

    /// `StopPodSandbox`: not ready any more; its containers are stopped, its
    /// batches not sent yet are dropped. Returns the remote pods to delete.
    pub fn stop_sandbox(&mut self, sandbox_id: &str) -> Vec<String> {
        if let Some(sb) = self.sandbox_mut(sandbox_id) {
            sb.ready = false;
        }
        let ids = self.containers_of(sandbox_id);
        for id in &ids {
            let c = self.container_mut(id).expect("listed above");
            c.stop_requested = true;
            if c.state == ContainerState::Created {
                let _ = self.exit(id, ExitCause::Stopped(StopPoint::BeforeStart));
            }
        }
        let remotes: Vec<(String, Phase)> = self
            .st
            .remotes
            .values()
            .filter(|r| r.sandbox_id == sandbox_id)
            .map(|r| (r.uid.clone(), r.phase))
            .collect();
        let mut delete = vec![];
        for (uid, phase) in remotes {
            match phase {
                Phase::Collecting => {
                    for id in self.st.remotes[&uid].containers.clone() {
                        self.leave_batch(&id, &uid);
                        let _ = self.exit(&id, ExitCause::Stopped(StopPoint::BeforeSend));
                    }
                }
                Phase::Created | Phase::Failed | Phase::Deleting => {
                    self.mark_deleting(&uid, None);
                    delete.push(uid);
                }
                // the sender deletes it when `/create` returns
                Phase::Sending => {}
            }
        }
        delete
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<String> {
        self.st
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id.clone())
            .collect()
    }

    /// `RemovePodSandbox` (after [`Change::stop_sandbox`]): the sandbox and its
    /// containers are forgotten.
    pub fn remove_sandbox(&mut self, sandbox_id: &str) {
        let ids = self.containers_of(sandbox_id);
        for id in ids {
            self.remove_container(&id);
        }
        if self.st.sandboxes.remove(sandbox_id).is_some() {
            self.dirty.sandbox(sandbox_id);
        }
    }
}

/// Why a sandbox was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxRefused {
    #[error(transparent)]
    Exists(LifecycleError),
    #[error("no free pod IP left in {cidr} ({held} sandboxes hold one)")]
    NoFreeIp { cidr: String, held: usize },
}

impl From<SandboxRefused> for tonic::Status {
    fn from(e: SandboxRefused) -> tonic::Status {
        match e {
            SandboxRefused::Exists(e) => e.into(),
            e @ SandboxRefused::NoFreeIp { .. } => tonic::Status::resource_exhausted(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::states::{ContainerState, Phase};

    #[test]
    fn stop_sandbox_stops_everything_and_lists_what_to_delete() {
        let store = store_with(&["created", "collecting", "sent"]);
        let (sent_uid, _) = change(&store, |ch| ch.start_container("sent", 0).unwrap());
        store.update(|st, _| st.remotes.get_mut(&sent_uid).unwrap().phase = Phase::Created);
        let (collecting_uid, _) = change(&store, |ch| {
            ch.start_container("collecting", 1 << 40).unwrap()
        });
        assert_ne!(sent_uid, collecting_uid);
        let (delete, fx) = change(&store, |ch| ch.stop_sandbox("s"));
        assert_eq!(delete, vec![sent_uid.clone()]);
        assert!(fx.wake_dispatcher);
        assert_eq!(phase(&store, &collecting_uid), None);
        assert_eq!(phase(&store, &sent_uid), Some(Phase::Deleting));
        assert_eq!(cstate(&store, "created"), ContainerState::Exited);
        assert_eq!(cstate(&store, "collecting"), ContainerState::Exited);
        // running remotely until the delete is confirmed
        assert_eq!(cstate(&store, "sent"), ContainerState::Running);
        let st = store.read();
        assert!(!st.sandboxes["s"].ready);
        assert!(st.containers.values().all(|c| c.stop_requested));
        drop(st);
        // stopping again lists the pending delete again
        let (again, _) = change(&store, |ch| ch.stop_sandbox("s"));
        assert_eq!(again, vec![sent_uid]);
        change(&store, |ch| ch.remove_sandbox("s"));
        let st = store.read();
        assert!(st.sandboxes.is_empty() && st.containers.is_empty());
    }

    #[test]
    fn sandboxes_get_an_ip_and_are_unique() {
        let store = crate::store::Store::in_memory();
        // one address to give: .2 (.0 network, .1 gateway, .3 broadcast)
        let cidr = crate::network::Cidr::parse("10.1.0.0/30").unwrap();
        let (r, _) = change(&store, |ch| ch.create_sandbox(sandbox("x"), Some(&cidr)));
        r.unwrap();
        assert_eq!(store.read().sandboxes["x"].ip, "10.1.0.2");
        let (r, _) = change(&store, |ch| ch.create_sandbox(sandbox("z"), None));
        assert!(matches!(r, Err(sandbox::SandboxRefused::Exists(_))));
        let mut sb = sandbox("w");
        sb.config.metadata.as_mut().unwrap().attempt = 9;
        let (r, _) = change(&store, |ch| ch.create_sandbox(sb, Some(&cidr)));
        assert!(matches!(r, Err(sandbox::SandboxRefused::NoFreeIp { .. })));
    }
}
