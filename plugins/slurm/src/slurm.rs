//! Running the Slurm commands: sbatch, squeue --json (one call shared by the
//! status requests of a short window), scontrol, scancel.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::Mutex;

use crate::config::SlurmConfig;
use crate::jobinfo::{JobInfo, parse_scontrol_job, parse_squeue_json};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SlurmError {
    /// The controller (or the command) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Slurm refused the request (bad flags, unknown partition...).
    #[error("{0}")]
    Refused(String),
}

pub type Queue = Arc<HashMap<u64, JobInfo>>;

struct Cached {
    at: Instant,
    generation: u64,
    result: Result<Queue, SlurmError>,
}

/// The Slurm client of the plugin.
pub struct Slurm {
    cfg: Arc<SlurmConfig>,
    cache: Mutex<Option<Cached>>,
    /// Bumped by sbatch/scancel: a queue read before it is stale.
    generation: AtomicU64,
    squeue_calls: prometheus_client::metrics::counter::Counter,
}

/// Messages that mean "the controller is not there", not "your job is wrong".
fn is_unavailable(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "unable to contact slurm controller",
        "connection refused",
        "connect failure",
        "socket timed out",
        "slurm_persist_conn",
        "communication connection failure",
        "zero bytes were transmitted",
        "munge",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The most useful line of a command's stderr.
fn message(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let msg = lines.join("; ");
    if msg.is_empty() {
        String::from_utf8_lossy(stdout).trim().to_string()
    } else {
        msg
    }
}

impl Slurm {
    pub fn new(cfg: Arc<SlurmConfig>) -> Slurm {
        Slurm {
            cfg,
            cache: Mutex::new(None),
            generation: AtomicU64::new(0),
            squeue_calls: Default::default(),
        }
    }

    /// How many times squeue ran (for tests and the benchmark).
    pub fn squeue_calls(&self) -> u64 {
        self.squeue_calls.get()
    }

    /// Register the squeue counter (`..._slurm_squeue_calls_total`) in a metrics registry.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "slurm_squeue_calls",
            "squeue --json runs (one per status request at most)",
            self.squeue_calls.clone(),
        );
    }

    async fn run(
        &self,
        prog: &str,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Result<std::process::Output, SlurmError> {
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(c) = &self.cfg.slurm_conf {
            cmd.env("SLURM_CONF", c);
        }
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let t = Duration::from_secs(self.cfg.command_timeout_s.max(1));
        match tokio::time::timeout(t, cmd.output()).await {
            Err(_) => Err(SlurmError::Unavailable(format!(
                "{prog} did not answer within {t:?}"
            ))),
            Ok(Err(e)) => Err(SlurmError::Unavailable(format!("cannot run {prog}: {e}"))),
            Ok(Ok(o)) => Ok(o),
        }
    }

    /// Submit a job script; answers the job id.
    pub async fn sbatch(&self, script: &Path, cwd: &Path) -> Result<String, SlurmError> {
        let path = script.to_string_lossy();
        let out = self
            .run(&self.cfg.sbatch, &["--parsable", &path], Some(cwd))
            .await?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        if !out.status.success() {
            let m = message(&out.stderr, &out.stdout);
            let m = if m.is_empty() {
                format!("sbatch exited with {}", out.status)
            } else {
                m
            };
            return Err(if is_unavailable(&m) {
                SlurmError::Unavailable(m)
            } else {
                SlurmError::Refused(m)
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let id = id.split(';').next().unwrap_or("").trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(SlurmError::Refused(format!(
                "sbatch gave no job id (output: {stdout:?})"
            )));
        }
        Ok(id.to_string())
    }

    /// The whole queue, from one `squeue --json`, shared by callers within the cache window.
    pub async fn queue(&self) -> Result<Queue, SlurmError> {
        let mut slot = self.cache.lock().await;
        let window = Duration::from_millis(self.cfg.status_cache_ms);
        let gen_now = self.generation.load(Ordering::SeqCst);
        if let Some(c) = slot.as_ref()
            && c.at.elapsed() < window
            && c.generation == gen_now
        {
            return c.result.clone();
        }
        let at = Instant::now();
        self.squeue_calls.inc();
        let result = match self.run(&self.cfg.squeue, &["--json"], None).await {
            Err(e) => Err(e),
            Ok(o) if !o.status.success() => {
                let m = message(&o.stderr, &o.stdout);
                Err(SlurmError::Unavailable(format!("squeue: {m}")))
            }
            Ok(o) => parse_squeue_json(&o.stdout)
                .map(Arc::new)
                .map_err(SlurmError::Unavailable),
        };
        *slot = Some(Cached {
            at,
            generation: gen_now,
            result: result.clone(),
        });
        result
    }

    /// `scontrol -o show job N`; `Ok(None)` when Slurm does not know the job.
    pub async fn show_job(&self, id: &str) -> Result<Option<JobInfo>, SlurmError> {
        let out = self
            .run(&self.cfg.scontrol, &["-o", "show", "job", id], None)
            .await?;
        if out.status.success() {
            return Ok(parse_scontrol_job(&String::from_utf8_lossy(&out.stdout)));
        }
        let m = message(&out.stderr, &out.stdout);
        if m.to_ascii_lowercase().contains("invalid job id") {
            return Ok(None);
        }
        Err(SlurmError::Unavailable(format!(
            "scontrol show job {id}: {m}"
        )))
    }

    /// `scancel N`; a job Slurm no longer knows counts as cancelled.
    pub async fn cancel(&self, id: &str) -> Result<(), SlurmError> {
        self.scancel(id, &[]).await
    }

    /// `scancel --signal=SIG --full N`: the signal to the batch script and every
    /// process it started (the containers), without ending the job. A job Slurm no
    /// longer knows, or that is ending, counts as signalled.
    pub async fn signal(&self, id: &str, sig: &str) -> Result<(), SlurmError> {
        let flag = format!("--signal={sig}");
        self.scancel(id, &[&flag, "--full"]).await
    }

    /// Signal the job's shell alone (`--batch`), not its containers.
    pub async fn signal_batch(&self, id: &str, sig: &str) -> Result<(), SlurmError> {
        let flag = format!("--signal={sig}");
        self.scancel(id, &[&flag, "--batch"]).await
    }

    async fn scancel(&self, id: &str, flags: &[&str]) -> Result<(), SlurmError> {
        let mut args = flags.to_vec();
        args.push(id);
        let out = self.run(&self.cfg.scancel, &args, None).await?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let m = message(&out.stderr, &out.stdout);
        if out.status.success() && !is_unavailable(&m) {
            return Ok(());
        }
        let lower = m.to_ascii_lowercase();
        if lower.contains("invalid job id")
            || lower.contains("already completing or completed")
            || lower.contains("job is pending")
        {
            return Ok(());
        }
        Err(SlurmError::Unavailable(format!(
            "scancel {}: {m}",
            args.join(" ")
        )))
    }

    /// `scontrol ping` and the nodes' CPUs/memory.
    pub async fn ping(&self) -> Result<(u64, u64), SlurmError> {
        let out = self.run(&self.cfg.scontrol, &["ping"], None).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("is UP") {
            let m = message(&out.stderr, &out.stdout);
            return Err(SlurmError::Unavailable(format!(
                "slurm controller is not up: {m}"
            )));
        }
        let nodes = self
            .run(&self.cfg.scontrol, &["-o", "show", "nodes"], None)
            .await?;
        let mut cpus = 0;
        let mut mem_mib = 0;
        for l in String::from_utf8_lossy(&nodes.stdout).lines() {
            let kv = crate::jobinfo::parse_scontrol_line(l);
            cpus += kv
                .get("CPUTot")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            mem_mib += kv
                .get("RealMemory")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok((cpus, mem_mib))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in command: a shell script that logs its calls and answers `body`.
    fn fake(dir: &Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        let calls = dir.join(format!("{name}.calls"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn calls(dir: &Path, name: &str) -> usize {
        std::fs::read_to_string(dir.join(format!("{name}.calls"))).map_or(0, |s| s.lines().count())
    }

    #[tokio::test]
    async fn sbatch_answers_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = SlurmConfig {
            sbatch: fake(d.path(), "sbatch", "echo '4242;cluster'"),
            ..Default::default()
        };
        let s = Slurm::new(Arc::new(cfg.clone()));
        assert_eq!(
            s.sbatch(Path::new("/x/job.sh"), d.path()).await.unwrap(),
            "4242"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("sbatch.calls")).unwrap(),
            "--parsable /x/job.sh\n"
        );

        cfg.sbatch = fake(
            d.path(),
            "sbatch2",
            "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
        );
        let s = Slurm::new(Arc::new(cfg.clone()));
        let e = s
            .sbatch(Path::new("/x/job.sh"), d.path())
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SlurmError::Refused(
                "sbatch: error: Batch job submission failed: Invalid partition name specified"
                    .into()
            )
        );

        cfg.sbatch = fake(
            d.path(),
            "sbatch3",
            "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)' >&2; exit 1",
        );
        let s = Slurm::new(Arc::new(cfg.clone()));
        assert!(matches!(
            s.sbatch(Path::new("/x/job.sh"), d.path()).await,
            Err(SlurmError::Unavailable(_))
        ));

        cfg.sbatch = d.path().join("missing").display().to_string();
        let s = Slurm::new(Arc::new(cfg));
        let e = s
            .sbatch(Path::new("/x/job.sh"), d.path())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SlurmError::Unavailable(m) if m.contains("cannot run")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn queue_is_shared_then_refreshed_after_sbatch() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SlurmConfig {
            squeue: fake(
                d.path(),
                "squeue",
                r#"echo '{"jobs": [{"job_id": 7, "job_state": "RUNNING"}]}'"#,
            ),
            sbatch: fake(d.path(), "sbatch", "echo 8"),
            status_cache_ms: 60_000,
            ..Default::default()
        };
        let s = Arc::new(Slurm::new(Arc::new(cfg)));
        let many = (0..8).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.queue().await.unwrap().len() })
        });
        for h in many {
            assert_eq!(h.await.unwrap(), 1);
        }
        assert_eq!((calls(d.path(), "squeue"), s.squeue_calls()), (1, 1));
        s.sbatch(Path::new("/j.sh"), d.path()).await.unwrap();
        s.queue().await.unwrap();
        assert_eq!(
            calls(d.path(), "squeue"),
            2,
            "a submission makes the cached queue stale"
        );
    }

    #[tokio::test]
    async fn squeue_failure_is_unavailable_and_scontrol_unknown_is_none() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SlurmConfig {
            squeue: fake(
                d.path(),
                "squeue",
                "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1",
            ),
            scontrol: fake(
                d.path(),
                "scontrol",
                "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
            ),
            scancel: fake(
                d.path(),
                "scancel",
                "echo 'scancel: error: Kill job error on job id 5: Invalid job id specified' >&2; exit 1",
            ),
            status_cache_ms: 0,
            ..Default::default()
        };
        let s = Slurm::new(Arc::new(cfg));
        let e = s.queue().await.unwrap_err();
        assert!(
            matches!(&e, SlurmError::Unavailable(m) if m.contains("Unable to contact")),
            "{e}"
        );
        assert_eq!(s.show_job("5").await.unwrap(), None);
        s.cancel("5").await.unwrap();
    }
}
