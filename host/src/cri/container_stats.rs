//! `ContainerStats`, `ListContainerStats`, `StreamContainerStats`: CPU and
//! memory usage from the usage cache (the interLink `stats` extension, see
//! [`crate::usage`]); a figure the backend did not report is left unset, not zero.

use super::{Result, labels_match, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Container;
use crate::usage::Usage;

fn value(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

/// CPU usage with its timestamp; figures only where known.
pub fn cpu(u: Option<&Usage>, now: i64) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: u.map_or(now, |u| u.timestamp),
        usage_core_nano_seconds: value(u.and_then(|u| u.cpu_core_ns)),
        usage_nano_cores: value(u.and_then(|u| u.nano_cores)),
        psi: None,
    }
}

/// Memory usage with its timestamp; figures only where known.
pub fn memory(u: Option<&Usage>, now: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: u.map_or(now, |u| u.timestamp),
        working_set_bytes: value(u.and_then(|u| u.working_set_bytes)),
        usage_bytes: value(u.and_then(|u| u.usage_bytes)),
        ..Default::default()
    }
}

pub fn stats_of(rt: &Runtime, c: &Container, now: i64) -> cri::ContainerStats {
    let zero = || Some(cri::UInt64Value { value: 0 });
    let usage = rt.usage.get(&c.id);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        }),
        cpu: Some(cpu(usage.as_ref(), now)),
        memory: Some(memory(usage.as_ref(), now)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: rt.cfg.data_root_folder.display().to_string(),
            }),
            used_bytes: zero(),
            inodes_used: zero(),
        }),
        swap: None,
        io: None,
    }
}

pub fn container_stats(
    rt: &Runtime,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse> {
    let id = resolve_container(rt, &req.container_id)?;
    let st = rt.store.read();
    let c = st
        .containers
        .get(&id)
        .ok_or_else(|| tonic::Status::not_found(format!("container {id:?} not found")))?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(stats_of(rt, c, crate::now_ns())),
    })
}

pub fn list(rt: &Runtime, f: Option<&cri::ContainerStatsFilter>) -> Vec<cri::ContainerStats> {
    let now = crate::now_ns();
    let st = rt.store.read();
    let default = cri::ContainerStatsFilter::default();
    let f = f.unwrap_or(&default);
    let id = if f.id.is_empty() {
        None
    } else {
        match crate::ids::resolve(&st.containers, &f.id) {
            Ok(i) => Some(i.to_string()),
            Err(_) => return vec![],
        }
    };
    let sb = if f.pod_sandbox_id.is_empty() {
        None
    } else {
        match crate::ids::resolve(&st.sandboxes, &f.pod_sandbox_id) {
            Ok(i) => Some(i.to_string()),
            Err(_) => return vec![],
        }
    };
    st.containers
        .values()
        .filter(|c| id.as_ref().is_none_or(|i| &c.id == i))
        .filter(|c| sb.as_ref().is_none_or(|s| &c.sandbox_id == s))
        .filter(|c| labels_match(&c.config.labels, &f.label_selector))
        .map(|c| stats_of(rt, c, now))
        .collect()
}
