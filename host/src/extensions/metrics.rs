//! Prometheus metrics of the extension system (process-wide: every extension
//! host of the process counts into the same families).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    /// resources | annotations | state | admission
    pub hook: String,
    /// the module's file name
    pub module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub hook: String,
    pub module: String,
    /// trap | timeout | memory | invalid | error
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: String,
}

type HistogramFamily = Family<ModuleLabels, Histogram, fn() -> Histogram>;

pub(crate) struct Metrics {
    pub calls: Family<ModuleLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: HistogramFamily,
    pub reloads: Counter,
    pub rejections: Family<ModuleLabels, Counter>,
    pub loaded: Family<HookLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 µs .. ~16 ms
    Histogram::new(exponential_buckets(1e-6, 2.0, 15))
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    calls: Family::default(),
    errors: Family::default(),
    latency: HistogramFamily::new_with_constructor(latency_histogram),
    reloads: Counter::default(),
    rejections: Family::default(),
    loaded: Family::default(),
});

/// The handles one module counts into (looked up once, at load).
#[derive(Clone)]
pub(crate) struct ModuleMetrics {
    pub calls: Counter,
    pub latency: Histogram,
    labels: ModuleLabels,
}

impl ModuleMetrics {
    pub(crate) fn new(hook: &str, module: &str) -> ModuleMetrics {
        let labels = ModuleLabels {
            hook: hook.into(),
            module: module.into(),
        };
        ModuleMetrics {
            calls: METRICS.calls.get_or_create_owned(&labels),
            latency: METRICS.latency.get_or_create_owned(&labels),
            labels,
        }
    }

    pub(crate) fn error(&self, kind: &str) {
        METRICS
            .errors
            .get_or_create(&ErrorLabels {
                hook: self.labels.hook.clone(),
                module: self.labels.module.clone(),
                kind: kind.into(),
            })
            .inc();
    }
}

pub(crate) fn rejected(hook: &str, module: &str) {
    METRICS
        .rejections
        .get_or_create(&ModuleLabels {
            hook: hook.into(),
            module: module.into(),
        })
        .inc();
}

pub(crate) fn loaded(hook: &str, n: usize) {
    METRICS
        .loaded
        .get_or_create(&HookLabels { hook: hook.into() })
        .set(n as i64);
}

/// Register the extension metrics under the sub-prefix `extension` of a
/// registry: in the host's `interlink_cri` registry they read
/// `interlink_cri_extension_calls_total{hook,module}`,
/// `..._errors_total{hook,module,kind}`, `..._call_duration_seconds{hook,module}`,
/// `..._reloads_total`, `..._rejections_total{hook,module}`, `..._modules{hook}`.
pub fn register_metrics(registry: &mut Registry) {
    let r = registry.sub_registry_with_prefix("extension");
    let m = &*METRICS;
    r.register("calls", "Hook calls per module", m.calls.clone());
    r.register(
        "errors",
        "Failed hook calls per module and kind (trap, timeout, memory, invalid, error)",
        m.errors.clone(),
    );
    r.register(
        "call_duration_seconds",
        "Duration of hook calls per module",
        m.latency.clone(),
    );
    r.register("reloads", "Module set changes applied", m.reloads.clone());
    r.register(
        "rejections",
        "Modules rejected at load (compile, link or smoke call failed)",
        m.rejections.clone(),
    );
    r.register("modules", "Modules loaded per hook", m.loaded.clone());
}
