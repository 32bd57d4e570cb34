//! The exec extension on Slurm: exec, attach and port-forward for the
//! plugin's pods, each a running job.
//!
//! - **exec** is a step inside the pod's job: `srun --jobid=<id> --overlap`
//!   (one task on the job's node), running the command through the
//!   configured container runtime as the job script's probes do
//!   (`apptainer`/`singularity exec` of the image with the container's binds
//!   and `--pwd`, `podman exec -i [-t] -w` into the running container,
//!   `enroot start`), or directly for runtime `none` (in the container's
//!   working directory, else the pod's directory). The container's
//!   environment (the kit's pod model, as the job script exports it) is the
//!   step's environment. Every tenant value is an argument or an environment
//!   value of `srun`, never shell on the host (an enroot working directory is
//!   `cd` in the container's own shell, as the job script does). The plugin
//!   writes what a container's exec needs when it writes the job script
//!   ([`spec_files`]: `containers/NAME.exec.json`, 0600 as it holds the env).
//!   With a tty, `srun --pty` gets a pseudo-terminal on the plugin's side,
//!   whose size follows the resizes (srun forwards them to the step). When the
//!   client goes away the step's `srun` is sent TERM (it cancels the step),
//!   then KILL. A program that is not there is the step's exit code (127
//!   for runtime `none`), not checked before the upgrade.
//! - **attach** follows the container's output from now on through its log
//!   file (stdout and stderr merged there, so all on stdout), until the
//!   container ends; its exit code then. A job has no stdin: attach with
//!   stdin is refused (400).
//! - **port-forward** connects to `<job's node>:<port>` (`squeue -h -o %N`,
//!   the node's `NodeAddr` from `scontrol show node`):
//!   jobs share their node's network, so that is where the pod listens.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use interlink::exec::{AttachRequest, ExecRequest, PortForwardRequest, Target, TermSize};
use interlink::{ContainerLogOpts, LogStruct};
use interlink_plugin_kit::{ExecIo, ExecRun, LogStream, PluginError, PortStream, exec_run};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ContainerRuntime, SlurmConfig};
use crate::files::{containers_dir, read_container};
use crate::script::{JobScript, in_container, volume_env_name};
use crate::store::PodRecord;
use crate::volumes::PlannedFile;

/// How long a port-forward connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a step's `srun` has to end after TERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What running a command in one container takes, written with the job script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The runtime's words before the command (empty for runtime `none`).
    pub prefix: Vec<String>,
    /// Where `prefix` has `podman exec`: `-i`/`-t` go after this many words.
    #[serde(default)]
    pub podman: bool,
    /// The step's environment: the container's.
    pub env: Vec<(String, String)>,
    /// The step's working directory on the node.
    pub chdir: PathBuf,
    /// Words between `prefix` and the command (enroot's `cd` in the container).
    #[serde(default)]
    pub wrap: Vec<String>,
}

fn spec_path(name: &str) -> PathBuf {
    PathBuf::from("containers").join(format!("{name}.exec.json"))
}

/// The exec specs of every container of the job script, as files of the pod
/// directory (0600: they hold the container's environment).
pub fn spec_files(s: &JobScript) -> Result<Vec<PlannedFile>, String> {
    s.init
        .iter()
        .chain(&s.containers)
        .map(|c| {
            let mut env = c.env.clone();
            env.push(("INTERLINK_POD_DIR".into(), s.pod_dir.display().to_string()));
            let mut chdir = s.pod_dir.clone();
            let mut wrap = Vec::new();
            match s.runtime {
                ContainerRuntime::None => {
                    for m in &c.mounts {
                        env.push((volume_env_name(&m.volume), m.source().display().to_string()));
                    }
                    if let Some(wd) = &c.working_dir {
                        chdir = PathBuf::from(wd);
                    }
                }
                ContainerRuntime::Enroot => {
                    if let Some(wd) = &c.working_dir {
                        wrap = ["/bin/sh", "-c", r#"cd "$1" && shift && exec "$@""#, "sh"]
                            .map(String::from)
                            .to_vec();
                        wrap.push(wd.clone());
                    }
                }
                _ => {}
            }
            let spec = ExecSpec {
                prefix: in_container(s, c),
                podman: s.runtime == ContainerRuntime::Podman,
                env,
                chdir,
                wrap,
            };
            let contents = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
            Ok(PlannedFile {
                path: spec_path(&c.name),
                contents,
                mode: 0o600,
            })
        })
        .collect()
}

/// The pod of `t` with the names it was created with.
pub(crate) fn pod(rec: Option<PodRecord>, t: &Target) -> Result<PodRecord, PluginError> {
    match rec {
        Some(r) if r.namespace == t.namespace && r.name == t.pod_name => Ok(r),
        _ => Err(PluginError::NotFound(format!(
            "no pod {}/{} with UID {} in the slurm plugin",
            t.namespace, t.pod_name, t.pod_uid
        ))),
    }
}

/// The job id of a pod whose container `name` runs now.
pub(crate) fn running(rec: &PodRecord, name: &str) -> Result<String, PluginError> {
    let known = rec
        .init_containers
        .iter()
        .chain(&rec.containers)
        .any(|c| c.name == name);
    if !known {
        return Err(PluginError::NotFound(format!(
            "pod {}/{} has no container {name:?}",
            rec.namespace, rec.name
        )));
    }
    if rec.kill_at.is_some() {
        return Err(PluginError::NotFound(format!(
            "pod {}/{} is being deleted",
            rec.namespace, rec.name
        )));
    }
    let files = read_container(&rec.pod_dir, name);
    match (&rec.job_id, files.started, files.exit, &rec.final_status) {
        (Some(id), Some(_), None, None) => Ok(id.clone()),
        _ => Err(PluginError::NotRunning(format!(
            "container {name:?} of pod {}/{} is not running",
            rec.namespace, rec.name
        ))),
    }
}

/// `srun` next to the configured `sbatch`.
fn srun_path(cfg: &SlurmConfig) -> String {
    match Path::new(&cfg.sbatch).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join("srun").display().to_string(),
        _ => "srun".into(),
    }
}

/// The `srun` command of an exec step.
fn step_command(
    cfg: &SlurmConfig,
    job: &str,
    spec: &ExecSpec,
    req: &ExecRequest,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(srun_path(cfg));
    cmd.arg(format!("--jobid={job}"))
        // twice quiet: srun's own "task 0: Exited with exit code N" is not
        // the command's stderr
        .args(["--overlap", "--nodes=1", "--ntasks=1", "--quiet", "--quiet"])
        .arg(format!("--job-name=exec-{}", req.container))
        .arg(format!("--chdir={}", spec.chdir.display()));
    if req.tty {
        cmd.arg("--pty");
    }
    if !req.stdin {
        // the step reads EOF at once
        cmd.arg("--input=none");
    }
    // the end of srun's options: nothing after this is read as one
    cmd.arg("--");
    let mut prefix = spec.prefix.clone();
    if spec.podman && prefix.len() >= 2 {
        let mut flags = Vec::new();
        if req.stdin {
            flags.push("-i".to_string());
        }
        if req.tty {
            flags.push("-t".to_string());
        }
        prefix.splice(2..2, flags);
    }
    cmd.args(&prefix).args(&spec.wrap).args(&req.command);
    if let Some(c) = &cfg.slurm_conf {
        cmd.env("SLURM_CONF", c);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if req.tty {
        // a terminal's programs need its type: TERM=xterm, as containerd sets it
        cmd.env("TERM", "xterm");
    }
    cmd
}

/// `exec`: check the pod, then a run of the step.
pub(crate) fn exec(
    cfg: &SlurmConfig,
    rec: Option<PodRecord>,
    req: ExecRequest,
) -> Result<ExecRun, PluginError> {
    let rec = pod(rec, &req.target)?;
    let job = running(&rec, &req.container)?;
    let path = rec.pod_dir.join(spec_path(&req.container));
    let spec: ExecSpec = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            PluginError::BadRequest(format!(
                "container {:?} of pod {}/{} was started without exec support (no {})",
                req.container,
                rec.namespace,
                rec.name,
                containers_dir(&rec.pod_dir).display()
            ))
        })?;
    let cmd = step_command(cfg, &job, &spec, &req);
    let tty = req.tty;
    Ok(exec_run(move |io| async move {
        if tty {
            run_tty(cmd, io).await
        } else {
            run_pipes(cmd, io).await
        }
    }))
}

/// Stops a step's `srun` unless it ended: TERM (srun cancels the step),
/// then KILL after [`STOP_GRACE`].
struct StepGuard(Option<tokio::process::Child>);

impl Drop for StepGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) of the srun this plugin started and still waits for
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        tokio::spawn(async move {
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        });
    }
}

impl StepGuard {
    /// Wait for the step, or at the client's cancel end it (srun cancels the
    /// step at SIGTERM) and wait for srun, so it is gone when this returns.
    async fn wait_or_cancel(&mut self, cancel: &CancellationToken) -> Result<i32, PluginError> {
        tokio::select! {
            r = self.wait() => r,
            _ = cancel.cancelled() => {
                if let Some(mut child) = self.0.take() {
                    if let Some(pid) = child.id() {
                        // SAFETY: kill(2) of the srun this plugin started and still waits for
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    }
                    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                }
                Err(PluginError::Unavailable("the client ended the session".into()))
            }
        }
    }

    async fn wait(&mut self) -> Result<i32, PluginError> {
        let child = self.0.as_mut().expect("a step");
        let st = child
            .wait()
            .await
            .map_err(|e| PluginError::Internal(format!("waiting for srun: {e}")))?;
        self.0 = None;
        use std::os::unix::process::ExitStatusExt;
        Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
    }
}

fn spawn_error(e: std::io::Error) -> PluginError {
    PluginError::Unavailable(format!("cannot run srun: {e}"))
}

async fn pump(mut r: impl AsyncRead + Unpin, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn run_pipes(cmd: std::process::Command, io: ExecIo) -> Result<i32, PluginError> {
    let ExecIo {
        mut stdin,
        resize: _,
        stdout,
        stderr,
        cancel,
    } = io;
    let mut cmd = Command::from(cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let out = child.stdout.take().map(|o| tokio::spawn(pump(o, stdout)));
    let err = child.stderr.take().map(|e| tokio::spawn(pump(e, stderr)));
    let mut child_in = child.stdin.take();
    let feed = tokio::spawn(async move {
        while let Some(b) = stdin.recv().await {
            let Some(w) = child_in.as_mut() else { break };
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        drop(child_in);
    });
    let mut guard = StepGuard(Some(child));
    let code = guard.wait_or_cancel(&cancel).await;
    feed.abort();
    for h in [out, err].into_iter().flatten() {
        let _ = h.await;
    }
    code
}

fn set_size(fd: i32, size: TermSize) {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// A pty pair: (master, slave).
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors we then own
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from openpty
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// `srun --pty` on a terminal of the plugin's: its output is the session's
/// stdout, stdin is typed on it, resizes set its size (srun forwards them).
async fn run_tty(cmd: std::process::Command, io: ExecIo) -> Result<i32, PluginError> {
    let ExecIo {
        mut stdin,
        mut resize,
        stdout,
        stderr: _,
        cancel,
    } = io;
    let pty_err = |e: std::io::Error| PluginError::Internal(format!("pty: {e}"));
    let (master, slave) = open_pty().map_err(pty_err)?;
    let master_fd = master.as_raw_fd();
    while let Ok(size) = resize.try_recv() {
        set_size(master_fd, size);
    }
    let mut cmd = Command::from(cmd);
    cmd.stdin(Stdio::from(slave.try_clone().map_err(pty_err)?))
        .stdout(Stdio::from(slave.try_clone().map_err(pty_err)?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_error)?;
    // the parent's copies of the terminal go, so its end is seen
    drop(cmd);
    let mut guard = StepGuard(Some(child));
    // blocking reads and writes on the master, one descriptor each
    let reader =
        tokio::fs::File::from_std(std::fs::File::from(master.try_clone().map_err(pty_err)?));
    let mut writer =
        tokio::fs::File::from_std(std::fs::File::from(master.try_clone().map_err(pty_err)?));
    let out = tokio::spawn(pump(reader, stdout));
    let feed = tokio::spawn(async move {
        while let Some(b) = stdin.recv().await {
            if writer.write_all(&b).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    let resizer = tokio::spawn(async move {
        while let Some(size) = resize.recv().await {
            set_size(master_fd, size);
        }
    });
    let code = guard.wait_or_cancel(&cancel).await;
    feed.abort();
    resizer.abort();
    // what the terminal still holds, then its end (EIO once no one has it)
    let _ = tokio::time::timeout(Duration::from_secs(2), out).await;
    drop(master);
    code
}

/// The log request attach follows: the container's output from now on.
pub(crate) fn attach_logs(rec: &PodRecord, req: &AttachRequest) -> Result<LogStruct, PluginError> {
    if req.stdin {
        return Err(PluginError::BadRequest(format!(
            "container {:?} of pod {}/{} has no stdin to attach to (a Slurm job reads none)",
            req.container, rec.namespace, rec.name
        )));
    }
    Ok(LogStruct {
        namespace: rec.namespace.clone(),
        pod_uid: rec.uid.clone(),
        pod_name: rec.name.clone(),
        container_name: req.container.clone(),
        opts: ContainerLogOpts {
            follow: true,
            since_time: Some(jiff::Timestamp::now()),
            ..Default::default()
        },
    })
}

/// Attach's run: the followed log to stdout, then the container's exit code.
pub(crate) fn attach_run(rec: PodRecord, container: String, mut output: LogStream) -> ExecRun {
    exec_run(move |io| async move {
        while let Some(chunk) = output.next().await {
            let chunk = chunk.map_err(|e| {
                PluginError::Internal(format!("reading the log of {container:?}: {e}"))
            })?;
            if io.stdout.send(chunk).await.is_err() {
                break;
            }
        }
        // the log ends with the container (or the job)
        for _ in 0..50 {
            if let Some((code, _)) = read_container(&rec.pod_dir, &container).exit {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(PluginError::Internal(format!(
            "container {container:?} ended without an exit code"
        )))
    })
}

/// Run a Slurm client command with the plugin's `SLURM_CONF`, bounded.
async fn slurm_output(
    cfg: &SlurmConfig,
    prog: &str,
    args: &[&str],
) -> Result<std::process::Output, PluginError> {
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(c) = &cfg.slurm_conf {
        cmd.env("SLURM_CONF", c);
    }
    let t = Duration::from_secs(cfg.command_timeout_s.max(1));
    tokio::time::timeout(t, cmd.output())
        .await
        .map_err(|_| PluginError::Unavailable(format!("{prog} did not answer within {t:?}")))?
        .map_err(|e| PluginError::Unavailable(format!("cannot run {prog}: {e}")))
}

/// Where `node` is reached: its `NodeAddr` as Slurm has it, else its name.
async fn node_addr(cfg: &SlurmConfig, node: &str) -> String {
    let Ok(out) = slurm_output(cfg, &cfg.scontrol, &["-o", "show", "node", node]).await else {
        return node.to_string();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("NodeAddr="))
        .filter(|a| !a.is_empty() && *a != "(null)")
        .unwrap_or(node)
        .to_string()
}

/// The node the job `id` runs on (`squeue -h -o %N -j id`).
async fn job_node(cfg: &SlurmConfig, id: &str) -> Result<String, PluginError> {
    let out = slurm_output(cfg, &cfg.squeue, &["-h", "-o", "%N", "-j", id]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    // one node (a job on several: the first, where the batch step runs)
    let list = text.trim();
    let first = first_node(list);
    if !out.status.success() || first.is_empty() {
        return Err(PluginError::BadRequest(format!(
            "job {id} has no node: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(first)
}

/// The first host of a Slurm node list (`n[01-03],m1` -> `n01`).
fn first_node(list: &str) -> String {
    let mut depth = 0;
    let end = list
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => return true,
                _ => {}
            }
            false
        })
        .map(|(i, _)| i)
        .unwrap_or(list.len());
    let one = &list[..end];
    match one.split_once('[') {
        Some((base, rest)) => {
            let first = rest
                .trim_end_matches(']')
                .split([',', '-'])
                .next()
                .unwrap_or("");
            format!("{base}{first}")
        }
        None => one.to_string(),
    }
}

/// `port-forward`: a connection to the port on the job's node.
pub(crate) async fn port_forward(
    cfg: &SlurmConfig,
    rec: Option<PodRecord>,
    req: PortForwardRequest,
) -> Result<PortStream, PluginError> {
    let rec = pod(rec, &req.target)?;
    let label = format!("{}/{}", rec.namespace, rec.name);
    let job = match (&rec.job_id, &rec.final_status) {
        (Some(id), None) => id.clone(),
        _ => {
            return Err(PluginError::NotRunning(format!(
                "pod {label} is not running"
            )));
        }
    };
    let node = job_node(cfg, &job).await?;
    let addr = node_addr(cfg, &node).await;
    let port = req.port;
    let s = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((addr.as_str(), port)),
    )
    .await
    .map_err(|_| "timed out".to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .map_err(|e| {
        PluginError::Unavailable(format!(
            "cannot connect to port {port} of pod {label} on node {node} ({addr}): {e}"
        ))
    })?;
    Ok(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists() {
        assert_eq!(first_node("vm"), "vm");
        assert_eq!(first_node("n[01-03],m1"), "n01");
        assert_eq!(first_node("n[7,9]"), "n7");
        assert_eq!(first_node("a,b"), "a");
        assert_eq!(first_node(""), "");
    }

    #[test]
    fn step_words_are_arguments() {
        let cfg = SlurmConfig {
            sbatch: "/usr/bin/sbatch".into(),
            ..Default::default()
        };
        let spec = ExecSpec {
            prefix: vec!["podman".into(), "exec".into(), "il-u1-main".into()],
            podman: true,
            env: vec![("A".into(), "$(reboot)".into())],
            chdir: "/data/pods/u1".into(),
            wrap: vec![],
        };
        let req = ExecRequest {
            target: Target {
                pod_uid: "u1".into(),
                namespace: "ns".into(),
                pod_name: "p".into(),
            },
            container: "main".into(),
            command: vec!["--uid=0".into(), "; id".into()],
            tty: true,
            stdin: true,
        };
        let cmd = step_command(&cfg, "42", &spec, &req);
        assert_eq!(cmd.get_program(), "/usr/bin/srun");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--jobid=42",
                "--overlap",
                "--nodes=1",
                "--ntasks=1",
                "--quiet",
                "--quiet",
                "--job-name=exec-main",
                "--chdir=/data/pods/u1",
                "--pty",
                "--",
                "podman",
                "exec",
                "-i",
                "-t",
                "il-u1-main",
                "--uid=0",
                "; id"
            ]
        );
        assert!(
            cmd.get_envs()
                .any(|(k, v)| k == "A" && v == Some(std::ffi::OsStr::new("$(reboot)")))
        );
    }
}
