//! One status loop for the whole host. When the API server has the status
//! watch (extension `statusWatch`), statuses arrive as they change, each
//! applied at once, with a polling round only every so often; otherwise (an
//! upstream server, a plugin without it) every created, unfinished remote pod
//! in one `/status` per `StatusInterval`, with exponential backoff (to 30 s)
//! while the API server does not answer. CRI reads never wait on it: they
//! read the store.
//!
//! A round reads a snapshot under the read lock, runs the state-mapping step
//! (hooks, possibly guest code) with no lock held, and commits the decisions
//! through [`crate::lifecycle::status`], which drops any made on a container
//! that changed meanwhile.
//!
//! A polling round decodes only the statuses that may matter: one whose JSON
//! is the very bytes of a status that the last round found nothing to do
//! about, for a pod whose containers are as they were then, is skipped
//! undecoded (see [`Settled`]). At 10,000 running pods that is most of the
//! answer, every round.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink::{PodStatus, StatusAnswer};

use crate::effects;
use crate::lifecycle::status::{Decided, current};
use crate::runtime::Runtime;
use crate::state_map;
use crate::store::{Inner, Phase};

pub async fn run(rt: Arc<Runtime>) {
    let interval = rt.cfg.status_interval;
    let mut delay = interval;
    let mut next_round = Instant::now() + interval;
    // when to try the status watch again, and how long to wait after a failure
    let mut watch_at = Instant::now();
    let mut watch_backoff = WATCH_RETRY_MIN;
    let mut settled = Settled::default();
    loop {
        if Instant::now() >= watch_at {
            match watch(&rt, &mut settled).await {
                Ok(false) => {
                    tracing::debug!("the API server has no status watch: polling /status");
                    watch_at = Instant::now() + WATCH_RECHECK;
                }
                Ok(true) => {
                    // it ran and ended (the server or plugin restarted): poll now, reconnect soon
                    watch_backoff = WATCH_RETRY_MIN;
                    watch_at = Instant::now() + watch_backoff;
                    next_round = Instant::now();
                }
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?watch_backoff, "status watch failed");
                    watch_at = Instant::now() + watch_backoff;
                    watch_backoff = (watch_backoff * 2).min(Duration::from_secs(30));
                    next_round = next_round.min(Instant::now() + interval);
                }
            }
        }
        tokio::time::sleep_until(next_round.min(watch_at).into()).await;
        if Instant::now() >= next_round {
            delay = match round(&rt, &mut settled).await {
                Ok(_) => interval,
                Err(()) => (delay.max(interval) * 2).min(Duration::from_secs(30)),
            };
            next_round = Instant::now() + delay;
        }
    }
}

/// The shortest wait before a failed status watch is opened again.
const WATCH_RETRY_MIN: Duration = Duration::from_secs(1);
/// How often a server without the status watch is asked again whether it has it.
const WATCH_RECHECK: Duration = Duration::from_secs(60);
/// While a status arrived for a pod not yet recorded as created here, how
/// often to look whether it is now.
const PENDING_TICK: Duration = Duration::from_millis(5);
/// How long such a status waits for its pod.
const PENDING_FOR: Duration = Duration::from_secs(10);
/// Most statuses applied in one commit.
const BATCH: usize = 4096;

/// One polling round: every created, unfinished remote pod in one `/status`.
/// `Err` when the server did not answer (the caller backs off).
async fn round(rt: &Arc<Runtime>, settled: &mut Settled) -> Result<usize, ()> {
    let pods = rt.polled.get(&rt.store);
    rt.metrics.status_loop_pods.set(pods.len() as i64);
    if pods.is_empty() {
        // nothing to poll: what the last answer held goes back
        *settled = Settled::default();
        return Ok(0);
    }
    let t0 = Instant::now();
    let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.status(pods)).await;
    let ok = matches!(res, Ok(Ok(_)));
    rt.metrics.remote("status", ok);
    rt.metrics
        .status_loop_lag_ms
        .set(t0.elapsed().as_millis() as i64);
    match res {
        Ok(Ok(answer)) => {
            let changed = apply_answer(rt, &answer, settled).changed;
            if changed > 0 {
                tracing::debug!(changed, "container states changed");
            }
            Ok(changed)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "status failed");
            Err(())
        }
        Err(_) => {
            tracing::warn!("status timed out");
            Err(())
        }
    }
}

/// Follow the server's status watch (extension `statusWatch`) while it
/// lasts: each status, as it arrives, goes through [`apply`]. A status of a
/// pod this host does not know as created yet (its create answer is still on
/// its way) waits for it a little. A polling round every so often catches
/// what a watch cannot tell (a pod the plugin forgot). `Ok(false)`: the server
/// has no watch; `Ok(true)`: the watch ran and ended.
async fn watch(
    rt: &Arc<Runtime>,
    settled: &mut Settled,
) -> Result<bool, crate::remote::RemoteError> {
    use futures::{FutureExt, StreamExt};
    let Some(mut stream) = rt.remote.status_watch().await? else {
        return Ok(false);
    };
    tracing::info!("status watch open: container states arrive as they change");
    let silent_limit = interlink::extensions::WATCH_KEEPALIVE * 3;
    let resync = (rt.cfg.status_interval * 10).max(Duration::from_secs(60));
    let mut pending: HashMap<String, (PodStatus, Instant)> = HashMap::new();
    let mut heard = Instant::now();
    let mut resynced = Instant::now();
    let mut generation = rt.store.remotes_generation();
    loop {
        let tick = if pending.is_empty() {
            resync
        } else {
            PENDING_TICK
        };
        tokio::select! {
            item = stream.next() => {
                heard = Instant::now();
                let mut batch = match item {
                    None => return Ok(true),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(s)) => vec![(s, heard)],
                };
                let mut end = None;
                while batch.len() < BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(s))) => batch.push((s, heard)),
                        Some(Some(Err(e))) => { end = Some(Err(e)); break; }
                        Some(None) => { end = Some(Ok(true)); break; }
                        None => break,
                    }
                }
                apply_watched(rt, batch, &mut pending);
                if let Some(end) = end {
                    return end;
                }
            }
            _ = tokio::time::sleep(tick) => {}
        }
        if !pending.is_empty() {
            pending.retain(|_, (_, at)| at.elapsed() < PENDING_FOR);
            let g = rt.store.remotes_generation();
            if g != generation {
                generation = g;
                let waiting: Vec<_> = pending.drain().map(|(_, v)| v).collect();
                apply_watched(rt, waiting, &mut pending);
            }
        }
        if heard.elapsed() > silent_limit {
            return Err(crate::remote::RemoteError::Unreachable(format!(
                "the status watch was silent for {silent_limit:?}"
            )));
        }
        if resynced.elapsed() >= resync {
            resynced = Instant::now();
            let _ = round(rt, settled).await;
        }
    }
}

/// Apply the statuses (each with its arrival time) of pods created here;
/// keep the others in `pending`.
fn apply_watched(
    rt: &Arc<Runtime>,
    batch: Vec<(PodStatus, Instant)>,
    pending: &mut HashMap<String, (PodStatus, Instant)>,
) {
    let phases: HashMap<String, Phase> = {
        let st = rt.store.read();
        st.remotes
            .values()
            .map(|r| (r.uid.clone(), r.phase))
            .collect()
    };
    let mut known = Vec::new();
    for (s, at) in batch {
        match phases.get(&s.pod_uid) {
            Some(Phase::Created) => known.push(s),
            // its create answer is on its way
            Some(Phase::Sending | Phase::Collecting) => {
                pending.insert(s.pod_uid.clone(), (s, at));
            }
            // not ours, or gone, or failed: nothing to do
            _ => {}
        }
    }
    if !known.is_empty() {
        let changed = apply(rt, &known);
        if changed > 0 {
            tracing::debug!(changed, "container states changed (watch)");
        }
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

/// What the last polling round found nothing to do about: each such status'
/// JSON (in the last answer, found by its hash), its pod's UID and the pod's
/// [`pod_key`] then. The same bytes for a pod with the same key would be
/// decided the same way (nothing to do), so they are not decoded again.
/// Bytes are compared, not only hashed. Only the last round's are kept.
#[derive(Default)]
pub struct Settled {
    last: StatusAnswer,
    /// hash of the JSON → (its index in `last`, UID, pod key)
    entries: HashMap<u64, (usize, String, u64)>,
}

/// What applying a polled answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Statuses decoded (the others were [`Settled`]).
    pub decoded: usize,
    /// Containers whose state changed.
    pub changed: usize,
}

/// Apply one polled `/status` answer, decoding only statuses that are not
/// [`Settled`].
pub fn apply_answer(rt: &Arc<Runtime>, answer: &StatusAnswer, settled: &mut Settled) -> Applied {
    let last = std::mem::replace(&mut settled.last, answer.clone());
    let mut last_entries = std::mem::take(&mut settled.entries);
    // the statuses to decide on, with each one's index and JSON hash
    let (mut list, mut places): (Vec<PodStatus>, Vec<(usize, u64)>) = (Vec::new(), Vec::new());
    {
        let st = rt.store.read();
        for (i, raw) in answer.raw().enumerate() {
            let h = HASH.hash_one(raw);
            if let Some((j, uid, key)) = last_entries.remove(&h)
                && last.raw_at(j) == Some(raw)
                && pod_key(&st, &uid) == Some(key)
            {
                settled.entries.insert(h, (i, uid, key));
                continue;
            }
            match StatusAnswer::decode(raw) {
                Ok(s) => {
                    list.push(s);
                    places.push((i, h));
                }
                Err(e) => tracing::warn!(error = %e, "a /status element is not a PodStatus"),
            }
        }
    }
    let (rounds, quiet) = snapshot(rt, &list);
    let quiet: HashMap<&str, u64> = quiet.iter().map(|(u, k)| (u.as_str(), *k)).collect();
    for ((i, h), s) in places.iter().zip(&list) {
        if let Some(k) = quiet.get(s.pod_uid.as_str()) {
            settled.entries.insert(*h, (*i, s.pod_uid.clone(), *k));
        }
    }
    Applied {
        decoded: list.len(),
        changed: decide_and_commit(rt, rounds),
    }
}

/// Apply statuses (from the status watch); returns how many containers changed.
pub fn apply(rt: &Arc<Runtime>, list: &[PodStatus]) -> usize {
    decide_and_commit(rt, snapshot(rt, list).0)
}

fn decide_and_commit(rt: &Arc<Runtime>, rounds: Vec<PodRound>) -> usize {
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

/// The containers whose remote answer changed since it was last decided on;
/// and the pods with a status and nothing to decide, with their [`pod_key`].
fn snapshot(rt: &Runtime, list: &[PodStatus]) -> (Vec<PodRound>, Vec<(String, u64)>) {
    let by_uid: HashMap<&str, &PodStatus> = list.iter().map(|p| (p.pod_uid.as_str(), p)).collect();
    let st = rt.store.read();
    let mut rounds = vec![];
    let mut quiet = vec![];
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
        } else if let Some(k) = pod_key(&st, &r.uid) {
            quiet.push((r.uid.clone(), k));
        }
    }
    (rounds, quiet)
}

/// Everything of a remote pod that [`snapshot`] reads besides its status:
/// with the same status and the same key, it decides the same. `None`: the
/// pod is not polled (unknown, not created, finished).
fn pod_key(st: &Inner, uid: &str) -> Option<u64> {
    let r = st.remotes.get(uid)?;
    if r.phase != Phase::Created || r.finished {
        return None;
    }
    let mut h = HASH.build_hasher();
    r.job_id.hash(&mut h);
    for id in &r.containers {
        id.hash(&mut h);
        match st.containers.get(id) {
            None => 0u8.hash(&mut h),
            Some(c) => (1u8, c.state.is_exited(), c.remote_seen).hash(&mut h),
        }
    }
    Some(h.finish())
}

/// Hashes for [`Settled`] and [`pod_key`]. A JSON hash only finds the
/// candidate (bytes are then compared); a pod key is a 64-bit digest of the
/// pod's state here, whose collision (a chance of 2^-64 per pod and round)
/// is the only way to a wrong skip.
const HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x1c4e_5a7b);

fn fingerprint(v: &state_map::RemoteView, job_id: &str) -> u64 {
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
