//! One status loop for the whole host: every created, unfinished remote pod in one
//! `/status` per `StatusInterval`; exponential backoff (to 30 s) while the API
//! server does not answer. CRI reads never wait on it: they read the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink::PodStatus;
use k8s_openapi::api::core::v1::Pod;

use crate::convert;
use crate::hooks::StateDecision;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::state_map;
use crate::store::Phase;

const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

pub async fn run(rt: Arc<Runtime>) {
    let interval = rt.cfg.status_interval;
    let mut delay = interval;
    loop {
        tokio::time::sleep(delay).await;
        let pods = polled_pods(&rt);
        rt.metrics.status_loop_pods.set(pods.len() as i64);
        if pods.is_empty() {
            delay = interval;
            continue;
        }
        let t0 = Instant::now();
        let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.status(pods)).await;
        let ok = matches!(res, Ok(Ok(_)));
        rt.metrics.remote("status", ok);
        match res {
            Ok(Ok(list)) => {
                let changed = apply(&rt, &list);
                delay = interval;
                if changed > 0 {
                    tracing::debug!(changed, "container states changed");
                }
            }
            Ok(Err(e)) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in = ?delay, "status failed");
            }
            Err(_) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                tracing::warn!(retry_in = ?delay, "status timed out");
            }
        }
        rt.metrics
            .status_loop_lag_ms
            .set(t0.elapsed().as_millis() as i64);
    }
}

/// The pods of one status round, rebuilt only when a remote pod record changed.
pub fn polled_pods(rt: &Runtime) -> Arc<Vec<Pod>> {
    let generation = rt.store.remotes_generation();
    if let Ok(c) = rt.poll_cache.lock()
        && let Some((g, pods)) = c.as_ref()
        && *g == generation
    {
        return pods.clone();
    }
    let pods = {
        let st = rt.store.read();
        Arc::new(
            st.remotes
                .values()
                .filter(|r| r.phase == Phase::Created && !r.finished)
                .map(|r| {
                    convert::status_pod(
                        r,
                        r.containers
                            .iter()
                            .filter_map(|id| st.containers.get(id))
                            .map(|c| c.name())
                            .collect(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    if let Ok(mut c) = rt.poll_cache.lock() {
        *c = Some((generation, pods.clone()));
    }
    pods
}

/// Apply one `/status` answer; returns how many containers changed.
pub fn apply(rt: &Arc<Runtime>, list: &[PodStatus]) -> usize {
    let by_uid: HashMap<&str, &PodStatus> = list.iter().map(|p| (p.pod_uid.as_str(), p)).collect();
    let now = crate::now_ns();
    let mut events = Vec::new();
    let mut tails = Vec::new();
    let changed = rt.store.update(|st, d| {
        let crate::store::Inner {
            remotes,
            containers,
            ..
        } = st;
        let mut changed = 0;
        for r in remotes.values_mut() {
            if r.phase != Phase::Created || r.finished {
                continue;
            }
            let Some(ps) = by_uid.get(r.uid.as_str()) else {
                continue;
            };
            let mut all_exited = true;
            for id in &r.containers {
                let Some(c) = containers.get_mut(id) else {
                    continue;
                };
                if c.state == EXITED {
                    continue;
                }
                let name = c
                    .config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.as_str())
                    .unwrap_or("");
                let remote_name = crate::names::dns_label(name);
                let remote = ps
                    .containers
                    .iter()
                    .chain(ps.init_containers.iter())
                    .find(|s| s.name == remote_name);
                let v = state_map::view(remote);
                // the same answer as last round: nothing to decide
                let fp = fingerprint(&v, &ps.job_id);
                if fp == c.remote_seen {
                    all_exited = false;
                    continue;
                }
                c.remote_seen = fp;
                let current = StateDecision {
                    state: state_map::from_cri(c.state),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                };
                let dec = state_map::decide(
                    rt.hooks.as_ref(),
                    &r.name,
                    &r.namespace,
                    name,
                    &ps.job_id,
                    &v,
                    &current,
                );
                if dec != current {
                    let new_state = state_map::to_cri(dec.state);
                    c.state = new_state;
                    c.exit_code = dec.exit_code;
                    c.reason = dec.reason;
                    c.message = dec.message;
                    if new_state == EXITED {
                        // remote times have whole seconds (Kubernetes `Time`): never before the start
                        c.finished_at = if v.finished_at_ns > 0 {
                            v.finished_at_ns.max(c.started_at)
                        } else {
                            now
                        };
                        if c.log_file.is_some() && !c.log_done {
                            tails.push(c.id.clone());
                        } else {
                            c.log_done = true;
                        }
                        events.push((
                            c.id.clone(),
                            c.sandbox_id.clone(),
                            cri::ContainerEventType::ContainerStoppedEvent,
                        ));
                    }
                    d.container(id);
                    changed += 1;
                }
                all_exited &= c.state == EXITED;
            }
            if !ps.job_id.is_empty() && r.job_id != ps.job_id {
                r.job_id = ps.job_id.clone();
                d.remote(&r.uid);
            }
            if all_exited {
                r.finished = true;
                d.remote(&r.uid);
            }
        }
        changed
    });
    for (id, sb, kind) in events {
        rt.emit(&id, &sb, kind);
    }
    for id in tails {
        crate::logs::ensure_follower(rt, &id);
    }
    changed
}

fn fingerprint(v: &state_map::RemoteView, job_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        v.state.map(|s| s as u8),
        &v.reason,
        &v.message,
        v.exit_code,
        v.finished_at_ns,
        job_id,
    )
        .hash(&mut h);
    h.finish() | 1
}
