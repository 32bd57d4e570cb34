//! Prometheus metrics and the optional `/metrics` + `/healthz` listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemoteLabels {
    pub call: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub cri_calls: Family<CallLabels, Counter>,
    pub cri_latency: Family<MethodLabel, Histogram>,
    pub remote_calls: Family<RemoteLabels, Counter>,
    pub containers: Family<StateLabel, Gauge>,
    pub status_loop_lag_ms: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub status_loop_pods: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("interlink_cri");
        // calls, errors, latency per module; reloads and rejections
        crate::extensions::register_metrics(&mut registry);
        let cri_calls = Family::<CallLabels, Counter>::default();
        let cri_latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
        });
        let remote_calls = Family::<RemoteLabels, Counter>::default();
        let containers = Family::<StateLabel, Gauge>::default();
        let status_loop_lag_ms = Gauge::default();
        let status_loop_pods = Gauge::default();
        registry.register(
            "cri_calls",
            "CRI calls by method and gRPC code",
            cri_calls.clone(),
        );
        registry.register("cri_call_seconds", "CRI call latency", cri_latency.clone());
        registry.register(
            "interlink_requests",
            "interLink API requests by call and outcome",
            remote_calls.clone(),
        );
        registry.register(
            "containers",
            "Tracked containers by CRI state",
            containers.clone(),
        );
        registry.register(
            "status_loop_lag_ms",
            "Duration of the last status round",
            status_loop_lag_ms.clone(),
        );
        registry.register(
            "status_loop_pods",
            "Remote pods polled in the last status round",
            status_loop_pods.clone(),
        );
        Metrics {
            registry,
            cri_calls,
            cri_latency,
            remote_calls,
            containers,
            status_loop_lag_ms,
            status_loop_pods,
        }
    }
}

impl Metrics {
    pub fn remote(&self, call: &str, ok: bool) {
        self.remote_calls
            .get_or_create(&RemoteLabels {
                call: call.into(),
                outcome: if ok { "ok".into() } else { "error".into() },
            })
            .inc();
    }

    pub fn cri(&self, method: &str, code: tonic::Code, secs: f64) {
        self.cri_calls
            .get_or_create(&CallLabels {
                method: method.into(),
                code: format!("{code:?}"),
            })
            .inc();
        self.cri_latency
            .get_or_create(&MethodLabel {
                method: method.into(),
            })
            .observe(secs);
    }

    /// Set the container gauges from the store.
    pub fn set_container_counts(&self, store: &crate::store::Store) {
        let mut counts = [0i64; 4];
        for c in store.read().containers.values() {
            counts[c.state as usize] += 1;
        }
        for (state, n) in crate::states::ContainerState::ALL.iter().zip(counts) {
            self.containers
                .get_or_create(&StateLabel {
                    state: state.label().into(),
                })
                .set(n);
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
