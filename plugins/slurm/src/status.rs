//! From a Slurm job and the container files to Kubernetes container states.

use std::path::Path;

use interlink::PodStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::files::{ContainerFiles, read_container, read_job_done};
use crate::jobinfo::JobInfo;
use crate::store::{ContainerMeta, PodRecord};

/// What is known of the pod's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobView<'a> {
    /// Slurm's answer.
    Known(&'a JobInfo),
    /// Neither squeue nor scontrol knows the job any more.
    Gone,
    /// Slurm cannot be asked (slurmctld down): only the script's files tell.
    Unavailable(&'a str),
}

/// The Kubernetes-style reason and a readable message for an abnormal end.
pub fn abnormal_end(job_id: &str, state: &str) -> Option<(&'static str, String)> {
    Some(match state {
        "CANCELLED" => ("Cancelled", format!("Slurm job {job_id} was cancelled")),
        "TIMEOUT" => (
            "Timeout",
            format!("Slurm job {job_id} reached its time limit"),
        ),
        "NODE_FAIL" => ("NodeFail", format!("the node of Slurm job {job_id} failed")),
        "OUT_OF_MEMORY" => ("OOMKilled", format!("Slurm job {job_id} ran out of memory")),
        "PREEMPTED" => ("Preempted", format!("Slurm job {job_id} was preempted")),
        "BOOT_FAIL" => (
            "BootFail",
            format!("the node of Slurm job {job_id} failed to boot"),
        ),
        "DEADLINE" => (
            "Deadline",
            format!("Slurm job {job_id} missed its deadline"),
        ),
        _ => return None,
    })
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn from_unix(s: Option<i64>) -> Option<Timestamp> {
    s.and_then(|s| Timestamp::from_second(s).ok())
}

fn status(meta: &ContainerMeta, state: ContainerState) -> ContainerStatus {
    let running = state.running.is_some();
    let started = state.running.is_some() || state.terminated.is_some();
    ContainerStatus {
        name: meta.name.clone(),
        image: meta.image.clone(),
        image_id: String::new(),
        ready: running,
        restart_count: 0,
        started: Some(started),
        state: Some(state),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn terminated(
    code: i32,
    reason: &str,
    message: Option<String>,
    started: Option<Timestamp>,
    finished: Option<Timestamp>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            message,
            started_at: started.map(time),
            finished_at: finished.map(time),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exit_reason(code: i32) -> &'static str {
    if code == 0 { "Completed" } else { "Error" }
}

/// The status of a pod that could not be submitted.
pub fn submit_failed(r: &PodRecord, err: &str) -> PodStatus {
    let st = |m: &ContainerMeta| {
        status(
            m,
            terminated(128, "SubmitFailed", Some(err.to_string()), None, None),
        )
    };
    PodStatus {
        pod_name: r.name.clone(),
        pod_uid: r.uid.clone(),
        pod_namespace: r.namespace.clone(),
        job_id: String::new(),
        init_containers: r.init_containers.iter().map(st).collect(),
        containers: r.containers.iter().map(st).collect(),
    }
}

/// Build the pod's status; the bool says it is final (the job has ended).
pub fn pod_status(r: &PodRecord, job: JobView<'_>, pod_dir: &Path) -> (PodStatus, bool) {
    if let Some(e) = &r.submit_error {
        return (submit_failed(r, e), true);
    }
    let jid = r.job_id.clone().unwrap_or_default();
    let done = read_job_done(pod_dir);
    // without Slurm, the script's own end record is as good as Slurm forgetting the job
    let (job, down) = match job {
        JobView::Unavailable(_) if done.is_some() => (JobView::Gone, None),
        JobView::Unavailable(m) => (JobView::Unavailable(m), Some(m)),
        j => (j, None),
    };
    let files = |m: &ContainerMeta| read_container(pod_dir, &m.name);
    let init_files: Vec<ContainerFiles> = r.init_containers.iter().map(files).collect();
    let main_files: Vec<ContainerFiles> = r.containers.iter().map(files).collect();

    // the job's end, as Slurm or the script tells it
    let (finished, state, job_exit, job_end, slurm_reason) = match &job {
        JobView::Known(j) => (
            j.is_finished(),
            j.state.clone(),
            j.exit,
            from_unix(j.end_time),
            j.reason.clone(),
        ),
        JobView::Gone => (
            true,
            if done.is_some() {
                "COMPLETED".into()
            } else {
                "GONE".into()
            },
            done.map(|d| (d.0, 0)),
            done.map(|d| d.1),
            String::new(),
        ),
        JobView::Unavailable(_) => (false, "UNKNOWN".into(), None, None, String::new()),
    };
    let job_start = match &job {
        JobView::Known(j) => from_unix(j.start_time),
        JobView::Gone | JobView::Unavailable(_) => None,
    };
    let script_started = pod_dir.join("job.started").exists();

    let pending = state == "PENDING" || state == "REQUEUED";
    let abnormal = abnormal_end(&jid, &state).or_else(|| {
        (state == "GONE").then(|| {
            (
                "JobLost",
                format!("Slurm job {jid} is no longer known to Slurm and left no exit record"),
            )
        })
    });
    let failed_init = r
        .init_containers
        .iter()
        .zip(&init_files)
        .find(|(_, f)| f.exit.is_some_and(|e| e.0 != 0))
        .map(|(m, f)| (m.name.clone(), f.exit.unwrap().0));
    let inits_done = init_files.iter().all(|f| f.exit.is_some_and(|e| e.0 == 0));

    let one = |_m: &ContainerMeta,
               f: &ContainerFiles,
               is_init: bool,
               index: usize|
     -> ContainerState {
        if pending {
            let reason = if slurm_reason.is_empty() || slurm_reason == "None" {
                "Pending"
            } else {
                slurm_reason.as_str()
            };
            return waiting(
                reason,
                Some(format!("Slurm job {jid} is pending: {reason}")),
            );
        }
        if let Some((code, at)) = f.exit {
            // a container killed when the job was cancelled or timed out says why
            if code >= 128
                && let Some((reason, msg)) = &abnormal
            {
                return terminated(code, reason, Some(msg.clone()), f.started, Some(at));
            }
            return terminated(code, exit_reason(code), None, f.started, Some(at));
        }
        if !finished {
            if let Some(s) = f.started {
                return running_state(s);
            }
            if let Some(m) = down.filter(|_| !script_started) {
                // pending, starting or lost: only Slurm can tell
                return waiting(
                    "SlurmUnavailable",
                    Some(format!(
                        "the state of Slurm job {jid} is unknown while Slurm is unavailable: {m}"
                    )),
                );
            }
            let before_ok = if is_init {
                init_files[..index]
                    .iter()
                    .all(|x| x.exit.is_some_and(|e| e.0 == 0))
            } else {
                inits_done
            };
            let reason = if !before_ok || (!is_init && !r.init_containers.is_empty() && !inits_done)
            {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            return waiting(reason, None);
        }
        // the job ended and this container has no exit record
        let code = match job_exit {
            Some((_, sig)) if sig > 0 => 128 + sig,
            Some((c, _)) if c != 0 => c,
            _ => 1,
        };
        if let Some((reason, msg)) = &abnormal {
            let code = if f.started.is_some() || state == "CANCELLED" {
                code.max(1)
            } else {
                code
            };
            return terminated(
                code,
                reason,
                Some(msg.clone()),
                f.started.or(job_start),
                job_end,
            );
        }
        if f.started.is_none() {
            let msg = match &failed_init {
                Some((n, c)) => {
                    format!("not started: init container {n:?} exited with code {c}")
                }
                None => {
                    let mut m =
                        format!("not started: Slurm job {jid} ended ({state}) before it ran");
                    if let Some(last) = job_output_tail(pod_dir) {
                        m.push_str(&format!("; job output: {last}"));
                    }
                    m
                }
            };
            return terminated(code, "NotStarted", Some(msg), None, job_end);
        }
        terminated(
            code,
            "Error",
            Some(format!(
                "Slurm job {jid} ended ({state}) while the container ran"
            )),
            f.started,
            job_end,
        )
    };

    let init_containers = r
        .init_containers
        .iter()
        .zip(&init_files)
        .enumerate()
        .map(|(i, (m, f))| status(m, one(m, f, true, i)))
        .collect();
    let containers = r
        .containers
        .iter()
        .zip(&main_files)
        .enumerate()
        .map(|(i, (m, f))| {
            let mut st = status(m, one(m, f, false, i));
            // a readiness/startup probe decides (see `probes`): `NAME.ready`
            if st.ready && read_ready(pod_dir, &m.name) == Some(false) {
                st.ready = false;
            }
            st
        })
        .collect();
    (
        PodStatus {
            pod_name: r.name.clone(),
            pod_uid: r.uid.clone(),
            pod_namespace: r.namespace.clone(),
            job_id: jid,
            init_containers,
            containers,
        },
        finished,
    )
}

/// What the job's probes say of a container's readiness: `None` when no probe
/// gates it (no `NAME.ready` file).
fn read_ready(pod_dir: &Path, name: &str) -> Option<bool> {
    let s = std::fs::read_to_string(
        crate::files::containers_dir(pod_dir).join(format!("{name}.ready")),
    )
    .ok()?;
    Some(s.trim() == "1")
}

/// The last line of the job's own output (`job.out`): why a script failed early.
fn job_output_tail(pod_dir: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(pod_dir.join("job.out")).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(512))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn running_state(s: Timestamp) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(time(s)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn record(dir: &Path, inits: &[&str], mains: &[&str]) -> PodRecord {
        let meta = |n: &&str| ContainerMeta {
            name: n.to_string(),
            image: "busybox".into(),
        };
        PodRecord {
            uid: "u".into(),
            name: "p".into(),
            namespace: "ns".into(),
            job_id: Some("42".into()),
            submit_error: None,
            pod_dir: dir.to_path_buf(),
            init_containers: inits.iter().map(meta).collect(),
            containers: mains.iter().map(meta).collect(),
            created: Timestamp::now(),
            final_status: None,
            kill_at: None,
            pre_stop: false,
        }
    }

    fn job(state: &str, reason: &str, exit: Option<(i32, i32)>) -> JobInfo {
        JobInfo {
            job_id: 42,
            state: state.into(),
            reason: reason.into(),
            exit,
            start_time: Some(1795333069),
            end_time: exit.map(|_| 1795333080),
        }
    }

    fn write(dir: &Path, name: &str, started: bool, exit: Option<i32>) {
        let c = dir.join("containers");
        std::fs::create_dir_all(&c).unwrap();
        if started {
            std::fs::write(c.join(format!("{name}.started")), "1795333070.000001\n").unwrap();
        }
        if let Some(code) = exit {
            std::fs::write(
                c.join(format!("{name}.exit")),
                format!("{code} 1795333071.5\n"),
            )
            .unwrap();
        }
    }

    fn state_of(s: &ContainerStatus) -> (&'static str, Option<i32>, String) {
        let st = s.state.as_ref().unwrap();
        if let Some(w) = &st.waiting {
            ("waiting", None, w.reason.clone().unwrap_or_default())
        } else if let Some(_r) = &st.running {
            ("running", None, String::new())
        } else {
            let t = st.terminated.as_ref().unwrap();
            (
                "terminated",
                Some(t.exit_code),
                t.reason.clone().unwrap_or_default(),
            )
        }
    }

    #[test]
    fn pending_uses_slurm_reason() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &["init"], &["a"]);
        let j = job("PENDING", "Resources", None);
        let (s, fin) = pod_status(&r, JobView::Known(&j), d.path());
        assert!(!fin);
        assert_eq!(
            state_of(&s.containers[0]),
            ("waiting", None, "Resources".into())
        );
        assert_eq!(state_of(&s.init_containers[0]).2, "Resources");
        let msg = s.containers[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .clone()
            .unwrap();
        assert!(msg.contains("42") && msg.contains("Resources"));
        assert_eq!(s.job_id, "42");
    }

    /// A running container a probe gates is ready only once the job's probe says so.
    #[test]
    fn readiness_follows_the_probe() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &[], &["web", "plain"]);
        let j = job("RUNNING", "None", None);
        write(d.path(), "web", true, None);
        write(d.path(), "plain", true, None);
        let ready = |v: &str| {
            std::fs::write(d.path().join("containers/web.ready"), v).unwrap();
            let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
            assert_eq!(state_of(&s.containers[0]).0, "running");
            assert!(s.containers[1].ready);
            s.containers[0].ready
        };
        assert!(!ready("0\n"));
        assert!(ready("1\n"));
        assert!(!ready("0\n"));
        // a container that ended is never ready, whatever the file says
        write(d.path(), "web", true, Some(0));
        let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
        assert!(!s.containers[0].ready);
    }

    #[test]
    fn running_with_init_then_main() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &["i1", "i2"], &["a", "b"]);
        let j = job("RUNNING", "None", None);
        write(d.path(), "i1", true, None);
        let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
        assert_eq!(state_of(&s.init_containers[0]).0, "running");
        assert_eq!(state_of(&s.init_containers[1]).2, "PodInitializing");
        assert_eq!(state_of(&s.containers[0]).2, "PodInitializing");
        write(d.path(), "i1", true, Some(0));
        write(d.path(), "i2", true, Some(0));
        write(d.path(), "a", true, None);
        let (s, fin) = pod_status(&r, JobView::Known(&j), d.path());
        assert!(!fin);
        assert_eq!(
            state_of(&s.init_containers[1]),
            ("terminated", Some(0), "Completed".into())
        );
        assert_eq!(state_of(&s.containers[0]).0, "running");
        assert!(s.containers[0].ready);
        assert_eq!(state_of(&s.containers[1]).2, "ContainerCreating");
    }

    #[test]
    fn per_container_exit_codes() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &[], &["ok", "bad"]);
        write(d.path(), "ok", true, Some(0));
        write(d.path(), "bad", true, Some(3));
        let j = job("FAILED", "NonZeroExitCode", Some((3, 0)));
        let (s, fin) = pod_status(&r, JobView::Known(&j), d.path());
        assert!(fin);
        assert_eq!(
            state_of(&s.containers[0]),
            ("terminated", Some(0), "Completed".into())
        );
        assert_eq!(
            state_of(&s.containers[1]),
            ("terminated", Some(3), "Error".into())
        );
        let t = s.containers[1]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(
            t.finished_at.as_ref().unwrap().0.to_string(),
            "2026-11-22T07:37:51.5Z"
        );
    }

    #[test]
    fn cancelled_and_timeout_are_readable() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &[], &["done", "killed", "never"]);
        write(d.path(), "done", true, Some(0));
        write(d.path(), "killed", true, Some(143));
        let j = job("CANCELLED", "None", Some((0, 15)));
        let (s, fin) = pod_status(&r, JobView::Known(&j), d.path());
        assert!(fin);
        assert_eq!(state_of(&s.containers[0]).2, "Completed");
        assert_eq!(
            state_of(&s.containers[1]),
            ("terminated", Some(143), "Cancelled".into())
        );
        assert_eq!(
            state_of(&s.containers[2]),
            ("terminated", Some(143), "Cancelled".into())
        );
        let j = job("TIMEOUT", "TimeLimit", Some((0, 9)));
        let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
        let t = s.containers[2]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Timeout"));
        assert!(t.message.unwrap().contains("time limit"));
        let j = job("NODE_FAIL", "None", Some((0, 9)));
        let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
        assert_eq!(state_of(&s.containers[1]).2, "NodeFail");
    }

    #[test]
    fn failed_init_and_gone_jobs() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &["setup"], &["main"]);
        write(d.path(), "setup", true, Some(7));
        let j = job("FAILED", "NonZeroExitCode", Some((7, 0)));
        let (s, _) = pod_status(&r, JobView::Known(&j), d.path());
        assert_eq!(
            state_of(&s.init_containers[0]),
            ("terminated", Some(7), "Error".into())
        );
        let t = s.containers[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("NotStarted"));
        assert!(t.message.unwrap().contains("\"setup\" exited with code 7"));

        // a script that died before any container: its output says why
        let d3 = tempfile::tempdir().unwrap();
        let r3 = record(d3.path(), &[], &["main"]);
        std::fs::write(
            d3.path().join("job.out"),
            "/bin/bash: line 1: nosuchshell: not found\n",
        )
        .unwrap();
        let j = job("FAILED", "NonZeroExitCode", Some((127, 0)));
        let (s, _) = pod_status(&r3, JobView::Known(&j), d3.path());
        let t = s.containers[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (127, Some("NotStarted"))
        );
        assert!(
            t.message
                .unwrap()
                .ends_with("job output: /bin/bash: line 1: nosuchshell: not found")
        );

        let d2 = tempfile::tempdir().unwrap();
        let r2 = record(d2.path(), &[], &["main"]);
        let (s, fin) = pod_status(&r2, JobView::Gone, d2.path());
        assert!(fin);
        assert_eq!(state_of(&s.containers[0]).2, "JobLost");
        // the script's own record is enough when Slurm forgot the job
        write(d2.path(), "main", true, Some(0));
        std::fs::write(d2.path().join("job.done"), "0 1795333072.0\n").unwrap();
        let (s, _) = pod_status(&r2, JobView::Gone, d2.path());
        assert_eq!(
            state_of(&s.containers[0]),
            ("terminated", Some(0), "Completed".into())
        );
    }

    #[test]
    fn without_slurm_the_files_answer() {
        let d = tempfile::tempdir().unwrap();
        let r = record(d.path(), &[], &["a", "b"]);
        let down =
            JobView::Unavailable("slurm_load_jobs error: Unable to contact slurm controller");
        // the script has not started: pending or lost, nobody can tell
        let (s, fin) = pod_status(&r, down.clone(), d.path());
        assert!(!fin);
        assert_eq!(
            state_of(&s.containers[0]),
            ("waiting", None, "SlurmUnavailable".into())
        );
        let w = s.containers[0].state.clone().unwrap().waiting.unwrap();
        assert!(w.message.unwrap().contains("Unable to contact"));
        // running: the files say which container runs and which has ended
        std::fs::write(
            d.path().join("job.started"),
            "42 1795333069.0
",
        )
        .unwrap();
        write(d.path(), "a", true, None);
        write(d.path(), "b", true, Some(3));
        let (s, fin) = pod_status(&r, down.clone(), d.path());
        assert!(!fin);
        assert_eq!(state_of(&s.containers[0]).0, "running");
        assert_eq!(
            state_of(&s.containers[1]),
            ("terminated", Some(3), "Error".into())
        );
        // the script's end record is final even without Slurm
        write(d.path(), "a", true, Some(0));
        std::fs::write(
            d.path().join("job.done"),
            "3 1795333072.0
",
        )
        .unwrap();
        let (s, fin) = pod_status(&r, down, d.path());
        assert!(fin);
        assert_eq!(
            state_of(&s.containers[0]),
            ("terminated", Some(0), "Completed".into())
        );
    }

    #[test]
    fn submit_failure_says_why() {
        let mut r = record(&PathBuf::from("/nonexistent"), &[], &["main"]);
        r.submit_error = Some("Invalid partition name specified".into());
        let (s, fin) = pod_status(&r, JobView::Gone, Path::new("/nonexistent"));
        assert!(fin);
        let t = s.containers[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("SubmitFailed"));
        assert!(t.message.unwrap().contains("Invalid partition"));
    }
}
