//! `PodSandboxStats`, `ListPodSandboxStats`, `StreamPodSandboxStats` and the
//! sandbox metrics calls: a sandbox's CPU and memory are the sums over its
//! containers' (from the usage cache, see [`crate::usage`]), unset when no
//! container's figure is known.

use super::{Result, labels_match, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Inner, Sandbox};
use crate::usage::Usage;

/// The sum of the containers' usage; a figure is known when one container's is.
fn sandbox_usage(rt: &Runtime, st: &Inner, s: &Sandbox) -> Option<Usage> {
    fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        }
    }
    st.containers
        .values()
        .filter(|c| c.sandbox_id == s.id)
        .filter_map(|c| rt.usage.get(&c.id))
        .reduce(|a, b| Usage {
            timestamp: a.timestamp.max(b.timestamp),
            cpu_core_ns: add(a.cpu_core_ns, b.cpu_core_ns),
            nano_cores: add(a.nano_cores, b.nano_cores),
            working_set_bytes: add(a.working_set_bytes, b.working_set_bytes),
            usage_bytes: add(a.usage_bytes, b.usage_bytes),
        })
}

fn stats_of(rt: &Runtime, st: &Inner, s: &Sandbox, now: i64) -> cri::PodSandboxStats {
    let zero = || Some(cri::UInt64Value { value: 0 });
    let usage = sandbox_usage(rt, st, s);
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(super::container_stats::cpu(usage.as_ref(), now)),
            memory: Some(super::container_stats::memory(usage.as_ref(), now)),
            network: Some(cri::NetworkUsage {
                timestamp: now,
                default_interface: None,
                interfaces: vec![],
            }),
            process: Some(cri::ProcessUsage {
                timestamp: now,
                process_count: zero(),
            }),
            containers: st
                .containers
                .values()
                .filter(|c| c.sandbox_id == s.id)
                .map(|c| super::container_stats::stats_of(rt, c, now))
                .collect(),
            io: None,
        }),
        windows: None,
    }
}

pub fn pod_sandbox_stats(
    rt: &Runtime,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse> {
    let id = resolve_sandbox(rt, &req.pod_sandbox_id)?;
    let st = rt.store.read();
    let s = st
        .sandboxes
        .get(&id)
        .ok_or_else(|| tonic::Status::not_found(format!("pod sandbox {id:?} not found")))?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(stats_of(rt, &st, s, crate::now_ns())),
    })
}

pub fn list(rt: &Runtime, f: Option<&cri::PodSandboxStatsFilter>) -> Vec<cri::PodSandboxStats> {
    let now = crate::now_ns();
    let st = rt.store.read();
    let default = cri::PodSandboxStatsFilter::default();
    let f = f.unwrap_or(&default);
    let id = if f.id.is_empty() {
        None
    } else {
        match crate::ids::resolve(&st.sandboxes, &f.id) {
            Ok(i) => Some(i.to_string()),
            Err(_) => return vec![],
        }
    };
    st.sandboxes
        .values()
        .filter(|s| id.as_ref().is_none_or(|i| &s.id == i))
        .filter(|s| labels_match(&s.config.labels, &f.label_selector))
        .map(|s| stats_of(rt, &st, s, now))
        .collect()
}

type Pick = fn(&Usage) -> Option<u64>;

/// Name, help and figure of each metric (all gauges, in bytes).
const METRICS: [(&str, &str, Pick); 2] = [
    (
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        |u| u.working_set_bytes,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage of the container in bytes",
        |u| u.usage_bytes,
    ),
];

/// One metrics entry per sandbox, with each container's known figures.
pub fn metrics(rt: &Runtime) -> Vec<cri::PodSandboxMetrics> {
    let st = rt.store.read();
    st.sandboxes
        .values()
        .map(|s| cri::PodSandboxMetrics {
            pod_sandbox_id: s.id.clone(),
            metrics: vec![],
            container_metrics: st
                .containers
                .values()
                .filter(|c| c.sandbox_id == s.id)
                .map(|c| {
                    let usage = rt.usage.get(&c.id);
                    let name = c
                        .config
                        .metadata
                        .as_ref()
                        .map(|m| m.name.clone())
                        .unwrap_or_default();
                    cri::ContainerMetrics {
                        container_id: c.id.clone(),
                        metrics: usage
                            .iter()
                            .flat_map(|u| {
                                let name = name.clone();
                                METRICS.iter().filter_map(move |(metric, _, pick)| {
                                    pick(u).map(|value| cri::Metric {
                                        name: metric.to_string(),
                                        timestamp: u.timestamp,
                                        metric_type: cri::MetricType::Gauge as i32,
                                        label_values: vec![name.clone()],
                                        value: Some(cri::UInt64Value { value }),
                                    })
                                })
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect()
}
