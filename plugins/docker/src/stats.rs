//! Usage of running containers (extension `stats`) from the engine's one-shot
//! stats (`GET /containers/{id}/stats?stream=false&one-shot=true`, Docker and
//! podman alike): cumulative CPU time, memory usage, and the working set as
//! usage minus inactive file pages (what kubelet and `docker stats` report).
//! A container the engine has no figures for (not running, gone) is left out.

use futures::future::join_all;
use interlink::extensions::{ContainerStats, PodStats};
use jiff::Timestamp;
use serde::Deserialize;

use crate::engine::raw::RawClient;

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    read: Option<String>,
    #[serde(default)]
    cpu_stats: CpuStats,
    #[serde(default)]
    memory_stats: MemoryStats,
}

#[derive(Debug, Default, Deserialize)]
struct CpuStats {
    #[serde(default)]
    cpu_usage: CpuUsage,
}

#[derive(Debug, Default, Deserialize)]
struct CpuUsage {
    #[serde(default)]
    total_usage: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct MemoryStats {
    #[serde(default)]
    usage: Option<u64>,
    #[serde(default)]
    stats: std::collections::HashMap<String, u64>,
}

/// The wire figures of one engine answer, `None` when it has none (a stopped
/// container reads as the zero time).
fn figures(name: &str, raw: Raw) -> Option<ContainerStats> {
    let ts: Timestamp = raw.read.as_deref()?.parse().ok()?;
    if ts.as_second() <= 0 {
        return None;
    }
    let usage = raw.memory_stats.usage;
    let inactive = ["inactive_file", "total_inactive_file"]
        .iter()
        .find_map(|k| raw.memory_stats.stats.get(*k).copied())
        .unwrap_or(0);
    Some(ContainerStats {
        name: name.to_string(),
        timestamp: ts,
        cpu_usage_core_nano_seconds: raw.cpu_stats.cpu_usage.total_usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
        memory_usage_bytes: usage,
    })
}

/// Usage of these pods: `(pod uid, [(container name, engine id)])`.
pub async fn read(raw: &RawClient, pods: Vec<(String, Vec<(String, String)>)>) -> Vec<PodStats> {
    join_all(pods.into_iter().map(|(uid, containers)| async move {
        let answers = join_all(containers.into_iter().map(|(name, id)| async move {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            let path = format!("/containers/{id}/stats?stream=false&one-shot=true");
            match raw.get::<Raw>(&path).await {
                Ok(r) => figures(&name, r),
                Err(e) => {
                    tracing::debug!(container = %id, error = ?e, "no stats");
                    None
                }
            }
        }))
        .await;
        PodStats {
            pod_uid: uid,
            containers: answers.into_iter().flatten().collect(),
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_stopped_answers() {
        let r: Raw = serde_json::from_str(
            r#"{"read":"2026-12-01T04:40:00.5Z","cpu_stats":{"cpu_usage":{"total_usage":1500}},
                "memory_stats":{"usage":9000,"stats":{"inactive_file":1000}}}"#,
        )
        .unwrap();
        let s = figures("main", r).unwrap();
        assert_eq!(s.cpu_usage_core_nano_seconds, Some(1500));
        assert_eq!(s.memory_working_set_bytes, Some(8000));
        assert_eq!(s.memory_usage_bytes, Some(9000));
        let stopped: Raw =
            serde_json::from_str(r#"{"read":"0001-01-01T00:00:00Z","memory_stats":{}}"#).unwrap();
        assert!(figures("main", stopped).is_none());
    }
}
