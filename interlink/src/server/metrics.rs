//! Prometheus metrics: requests and latency per endpoint and status code,
//! plugin call latency per endpoint and outcome, pods in the status cache.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    endpoint: String,
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~52 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    plugin_latency: Family<PluginLabels, Histogram, fn() -> Histogram>,
    cached_pods: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("interlink");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let plugin_latency =
            Family::<PluginLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let cached_pods = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "http_requests",
            "API requests by endpoint and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "API request latency (until the response head) by endpoint and status code",
            latency.clone(),
        );
        registry.register(
            "plugin_request_duration_seconds",
            "Latency of calls to the plugin by endpoint and outcome",
            plugin_latency.clone(),
        );
        registry.register(
            "cached_pods",
            "Pods in the status cache",
            cached_pods.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                plugin_latency,
                cached_pods,
            }),
        }
    }

    pub fn request(&self, endpoint: &str, code: u16, took: Duration) {
        let l = RequestLabels {
            endpoint: endpoint.to_string(),
            code,
        };
        self.inner.requests.get_or_create(&l).inc();
        self.inner
            .latency
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn plugin_call(&self, endpoint: &str, outcome: &str, took: Duration) {
        let l = PluginLabels {
            endpoint: endpoint.to_string(),
            outcome: outcome.to_string(),
        };
        self.inner
            .plugin_latency
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn set_cached_pods(&self, n: usize) {
        self.inner.cached_pods.set(n as i64);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// Middleware: count and time every request by its route.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.request(&endpoint, resp.status().as_u16(), start.elapsed());
    resp
}
