//! The runtime context every CRI call and background task shares:
//! configuration, state, hooks, the remote API and the small tables the tasks
//! coordinate through. It holds data and does nothing itself: state changes
//! are in [`crate::lifecycle`], their effects in [`crate::effects`], the tasks
//! in [`crate::background`].

use std::sync::Arc;

use tokio::sync::Notify;

use crate::claims::Claims;
use crate::config::Config;
use crate::events::Events;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::pod_specs::PodSpecs;
use crate::polled::PolledPods;
use crate::readiness::{NotReady, Readiness};
use crate::remote::Remote;
use crate::store::Store;
use crate::usage::UsageCache;

pub struct Runtime {
    pub cfg: Config,
    pub store: Store,
    pub hooks: Arc<dyn Hooks>,
    pub remote: Arc<dyn Remote>,
    /// Container events for `GetContainerEvents` subscribers.
    pub events: Events,
    pub metrics: Metrics,
    /// Wakes the dispatcher (batches due, deletions due).
    pub dispatch_wake: Notify,
    /// Whether the API server answers pings.
    pub readiness: Readiness,
    pub started_at: i64,
    /// Containers whose log follower runs.
    pub followers: Claims,
    /// Remote pods with a `/create` or `/delete` in flight.
    pub inflight: Claims,
    /// The `/status` body of the next round.
    pub polled: PolledPods,
    /// CPU and memory usage of running containers (see [`crate::usage`]).
    pub usage: UsageCache,
    /// This node's pods from the Kubernetes API, when a kubeconfig is set.
    pub pod_specs: PodSpecs,
    /// The exec/attach/port-forward server, once started (see `streaming`).
    pub streaming: std::sync::OnceLock<Arc<crate::streaming::Streaming>>,
}

impl Runtime {
    pub fn new(
        cfg: Config,
        store: Store,
        hooks: Arc<dyn Hooks>,
        remote: Arc<dyn Remote>,
    ) -> Arc<Runtime> {
        let now = crate::now_ns();
        Arc::new(Runtime {
            cfg,
            store,
            hooks,
            remote,
            events: Events::default(),
            metrics: Metrics::default(),
            dispatch_wake: Notify::new(),
            readiness: Readiness::new(now),
            started_at: now,
            followers: Claims::default(),
            inflight: Claims::default(),
            polled: PolledPods::default(),
            usage: UsageCache::default(),
            pod_specs: PodSpecs::default(),
            streaming: Default::default(),
        })
    }

    /// The range pod IPs come from: kubelet's, else `PodCIDR`, else the default.
    pub fn pod_cidr(&self) -> crate::network::Cidr {
        let node = self.store.read().node_pod_cidr.clone();
        crate::network::choose_cidr(node.as_deref(), self.cfg.pod_cidr.as_deref())
    }

    /// `Ok` when the API server answered a ping within `PingTimeout`.
    pub fn runtime_ready(&self) -> Result<(), NotReady> {
        self.readiness.check(crate::now_ns(), self.cfg.ping_timeout)
    }

    /// Update the container gauges from the store (before `/metrics` is read).
    pub fn refresh_gauges(&self) {
        self.metrics.set_container_counts(&self.store);
    }
}
