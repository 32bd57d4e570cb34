//! One status loop for the whole host: every created, unfinished remote pod in one
//! `/status` per `StatusInterval`; exponential backoff (to 30 s) while the API
//! server does not answer. CRI reads never wait on it: they read the store.
//!
//! A round reads a snapshot under the read lock, runs the state-mapping step
//! (hooks, possibly guest code) with no lock held, and commits the decisions
//! through [`crate::lifecycle::status`], which drops any made on a container
//! that changed meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink::PodStatus;

use crate::effects;
use crate::lifecycle::status::{Decided, current};
use crate::runtime::Runtime;
use crate::state_map;
use crate::store::Phase;

pub async fn run(rt: Arc<Runtime>) {
    let interval = rt.cfg.status_interval;
    let mut delay = interval;
    loop {
        tokio::time::sleep(delay).await;
        let pods = rt.polled.get(&rt.store);
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

/// What one container looked like when the answer arrived.
struct Seen {
    container: String,
    name: String,
    rev: u64,
    fingerprint: u64,
    view: state_map::RemoteView,
    current: crate::hooks::StateDecision,
}

/// One remote pod of the answer, with its containers to decide on.
struct PodRound {
    uid: String,
    name: String,
    namespace: String,
    job_id: String,
    seen: Vec<Seen>,
}

/// Apply one `/status` answer; returns how many containers changed.
pub fn apply(rt: &Arc<Runtime>, list: &[PodStatus]) -> usize {
    let rounds = snapshot(rt, list);
    if rounds.is_empty() {
        return 0;
    }
    // the state-mapping step, outside the lock
    let decided: Vec<(String, String, Vec<Decided>)> = rounds
        .into_iter()
        .map(|p| {
            let ds = p
                .seen
                .into_iter()
                .map(|s| Decided {
                    decision: state_map::decide(
                        rt.hooks.as_ref(),
                        &p.name,
                        &p.namespace,
                        &s.name,
                        &p.job_id,
                        &s.view,
                        &s.current,
                    ),
                    container: s.container,
                    rev: s.rev,
                    seen: s.fingerprint,
                    finished_at: s.view.finished_at_ns,
                })
                .collect();
            (p.uid, p.job_id, ds)
        })
        .collect();
    effects::change(rt, |ch| {
        decided
            .into_iter()
            .map(|(uid, job, ds)| ch.commit_status(&uid, &job, ds))
            .sum()
    })
}

/// The containers whose remote answer changed since it was last decided on.
fn snapshot(rt: &Runtime, list: &[PodStatus]) -> Vec<PodRound> {
    let by_uid: HashMap<&str, &PodStatus> = list.iter().map(|p| (p.pod_uid.as_str(), p)).collect();
    let st = rt.store.read();
    let mut rounds = vec![];
    for r in st.remotes.values() {
        if r.phase != Phase::Created || r.finished {
            continue;
        }
        let Some(ps) = by_uid.get(r.uid.as_str()) else {
            continue;
        };
        let mut seen = vec![];
        for id in &r.containers {
            let Some(c) = st.containers.get(id) else {
                continue;
            };
            if c.state.is_exited() {
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
            let view = state_map::view(remote);
            // the same answer as last round: nothing to decide
            let fingerprint = fingerprint(&view, &ps.job_id);
            if fingerprint == c.remote_seen {
                continue;
            }
            seen.push(Seen {
                container: id.clone(),
                name: name.to_string(),
                rev: c.rev,
                fingerprint,
                view,
                current: current(c),
            });
        }
        let all_exited_now = seen.is_empty()
            && r.containers
                .iter()
                .all(|id| st.containers.get(id).is_none_or(|c| c.state.is_exited()));
        if !seen.is_empty() || all_exited_now || (!ps.job_id.is_empty() && r.job_id != ps.job_id) {
            rounds.push(PodRound {
                uid: r.uid.clone(),
                name: r.name.clone(),
                namespace: r.namespace.clone(),
                job_id: ps.job_id.clone(),
                seen,
            });
        }
    }
    rounds
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
