//! `ContainerStats`, `ListContainerStats`, `StreamContainerStats`: interLink
//! reports no usage figures, so each entry has its timestamps and zero usage.

use super::{Result, labels_match, resolve_container};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Container;

/// CPU usage with its timestamp and zero figures (interLink reports none).
pub fn zero_cpu(now: i64) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: Some(cri::UInt64Value { value: 0 }),
        usage_nano_cores: Some(cri::UInt64Value { value: 0 }),
        psi: None,
    }
}

/// Memory usage with its timestamp and zero figures (interLink reports none).
pub fn zero_memory(now: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: Some(cri::UInt64Value { value: 0 }),
        ..Default::default()
    }
}

pub fn stats_of(rt: &Runtime, c: &Container, now: i64) -> cri::ContainerStats {
    let zero = || Some(cri::UInt64Value { value: 0 });
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        }),
        cpu: Some(zero_cpu(now)),
        memory: Some(zero_memory(now)),
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
