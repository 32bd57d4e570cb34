//! The life of one pod: init containers one after the other (each must exit 0),
//! then the regular containers together; each container's end is recorded.
//! The same code resumes a pod after a plugin restart: finished containers are
//! skipped, running ones are watched by pid, waiting ones are started.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::task::JoinHandle;

use crate::process;
use crate::provider::{Inner, PodEntry, ended_state};
use crate::state::{ContainerRecord, ContainerState, ExitRecord, PodRecord, read_exit};
use crate::supervise::{self, SupervisorSpec, exit_of, exit_record, start_error};

/// How often a process that is not our child is checked for life, where the
/// kernel cannot tell its end (no pidfds).
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Init,
    Regular,
}

fn container(rec: &mut PodRecord, kind: Kind, i: usize) -> &mut ContainerRecord {
    match kind {
        Kind::Init => &mut rec.init_containers[i],
        Kind::Regular => &mut rec.containers[i],
    }
}

/// How to learn that a started process ended.
enum Waiter {
    /// A supervising shim process, our child.
    Shim(tokio::process::Child),
    /// Supervised inside this process.
    Task(JoinHandle<ExitRecord>),
}

enum Started {
    Yes(Waiter),
    /// The pod is being deleted, or the container has nothing to launch.
    No,
    /// It could not be started; its state says why.
    Failed,
}

pub(crate) async fn run_pod(inner: Arc<Inner>, e: Arc<PodEntry>) {
    if e.lock().refused.is_some() {
        return;
    }
    let n_init = e.lock().init_containers.len();
    for i in 0..n_init {
        let st = e.lock().init_containers[i].state.clone();
        match st {
            ContainerState::Terminated { .. } => {}
            ContainerState::Running { .. } => wait(&e, Kind::Init, i, None).await,
            ContainerState::Waiting { .. } => match start(&inner, &e, Kind::Init, i) {
                Started::Yes(w) => wait(&e, Kind::Init, i, Some(w)).await,
                Started::No => return,
                Started::Failed => {}
            },
        }
        let mut rec = e.lock();
        let c = &rec.init_containers[i];
        let code = c.state.exit_code();
        if code != Some(0) {
            if e.deleting.is_cancelled() {
                return;
            }
            let msg = format!(
                "init container {:?} failed (exit code {}); the pod's containers will not start",
                c.name,
                code.unwrap_or(-1)
            );
            tracing::warn!(uid = %e.uid, "{msg}");
            let rec = &mut *rec;
            for c in rec
                .init_containers
                .iter_mut()
                .chain(rec.containers.iter_mut())
            {
                if matches!(c.state, ContainerState::Waiting { .. }) {
                    c.state = ContainerState::waiting("PodInitializing", Some(msg.clone()));
                }
            }
            e.save(rec);
            return;
        }
    }
    let n = e.lock().containers.len();
    let mut waits = Vec::new();
    for i in 0..n {
        let st = e.lock().containers[i].state.clone();
        match st {
            ContainerState::Terminated { .. } => {}
            ContainerState::Running { .. } => waits.push(wait(&e, Kind::Regular, i, None)),
            ContainerState::Waiting { .. } => {
                if let Started::Yes(w) = start(&inner, &e, Kind::Regular, i) {
                    waits.push(wait(&e, Kind::Regular, i, Some(w)));
                }
            }
        }
    }
    futures::future::join_all(waits).await;
}

fn spawn_shim(shim: &Path, spec: &SupervisorSpec) -> Result<(i32, Waiter), String> {
    use std::io::Write;
    let json = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    let (reader, mut writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = tokio::process::Command::new(shim);
    cmd.arg("__shim")
        .env_clear()
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the supervisor {}: {e}", shim.display()))?;
    drop(cmd);
    writer
        .write_all(&json)
        .map_err(|e| format!("cannot hand the command to the supervisor: {e}"))?;
    drop(writer);
    let pid = child.id().map(|p| p as i32).unwrap_or(-1);
    Ok((pid, Waiter::Shim(child)))
}

fn start(inner: &Inner, e: &PodEntry, kind: Kind, i: usize) -> Started {
    let mut rec = e.lock();
    if e.deleting.is_cancelled() {
        return Started::No;
    }
    let c = container(&mut rec, kind, i);
    let Some(launch) = c.launch.clone() else {
        return Started::No;
    };
    let name = c.name.clone();
    let stdin = c.stdin.then(|| crate::exec::stdin_path(e, &name));
    let stdin_once = c.stdin_once;
    let spec = SupervisorSpec {
        argv: launch.argv,
        env: launch.env,
        cwd: launch.cwd,
        log: e.log_path(&name),
        exit: e.exit_path(&name),
        stdin,
        stdin_once,
    };
    let _ = std::fs::remove_file(&spec.exit);
    let result = match &inner.supervisor {
        crate::options::Supervisor::Shim(p) => spawn_shim(p, &spec),
        crate::options::Supervisor::InProcess => supervise::spawn(&spec, true)
            .map(|s| (s.pid, Waiter::Task(s.done)))
            .map_err(|e| e.to_string()),
    };
    let c = container(&mut rec, kind, i);
    let out = match result {
        Ok((pid, w)) => {
            let start_ticks = process::start_ticks(pid).unwrap_or(0);
            tracing::info!(uid = %e.uid, container = %name, pid, "container started");
            c.state = ContainerState::Running {
                pid,
                start_ticks,
                started_at: Timestamp::now(),
            };
            Started::Yes(w)
        }
        Err(m) => {
            tracing::warn!(uid = %e.uid, container = %name, "cannot start: {m}");
            c.state = start_error(m).into_state();
            Started::Failed
        }
    };
    e.save(&rec);
    out
}

async fn wait(e: &PodEntry, kind: Kind, i: usize, waiter: Option<Waiter>) {
    let (name, pid, ticks, started_at) = {
        let mut rec = e.lock();
        let c = container(&mut rec, kind, i);
        match c.state {
            ContainerState::Running {
                pid,
                start_ticks,
                started_at,
            } => (c.name.clone(), pid, start_ticks, started_at),
            _ => return,
        }
    };
    let from_wait: Option<ExitRecord> = match waiter {
        Some(Waiter::Shim(mut child)) => match child.wait().await {
            Ok(st) => {
                let (code, sig) = exit_of(st);
                Some(exit_record(code, sig, started_at))
            }
            Err(_) => None,
        },
        Some(Waiter::Task(h)) => h.await.ok(),
        None => {
            process::ended(pid, ticks, POLL).await;
            None
        }
    };
    let exit_file = e.exit_path(&name);
    let state = match (read_exit(&exit_file), from_wait) {
        (Some(x), _) => x.into_state(),
        (None, Some(x)) => x.into_state(),
        (None, None) => ended_state(&exit_file, pid, started_at),
    };
    tracing::info!(
        uid = %e.uid,
        container = %name,
        exit_code = state.exit_code().unwrap_or(-1),
        "container ended"
    );
    let mut rec = e.lock();
    container(&mut rec, kind, i).state = state;
    e.save(&rec);
}
