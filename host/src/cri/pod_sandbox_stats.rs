//! `PodSandboxStats`, `ListPodSandboxStats`, `StreamPodSandboxStats` and the
//! sandbox metrics calls: entries with timestamps, zero usage (interLink reports none).

use super::{Result, labels_match, resolve_sandbox};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Inner, Sandbox};

fn stats_of(rt: &Runtime, st: &Inner, s: &Sandbox, now: i64) -> cri::PodSandboxStats {
    let zero = || Some(cri::UInt64Value { value: 0 });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(super::container_stats::zero_cpu(now)),
            memory: Some(super::container_stats::zero_memory(now)),
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

/// One metrics entry (no metric values) per sandbox.
pub fn metrics(rt: &Runtime) -> Vec<cri::PodSandboxMetrics> {
    let st = rt.store.read();
    st.sandboxes
        .values()
        .map(|s| cri::PodSandboxMetrics {
            pod_sandbox_id: s.id.clone(),
            metrics: vec![],
            container_metrics: vec![],
        })
        .collect()
}
