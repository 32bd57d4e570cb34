//! The exec extension on the container engine: exec, attach and port-forward
//! for the Docker plugin's pods.
//!
//! - **exec** is the Engine API's exec (`POST /containers/{id}/exec`, then
//!   `/exec/{id}/start`, hijacked): the command runs in the container with
//!   its environment, working directory and user, never privileged (the exec
//!   gets no more rights than the container the site allowed). The exec is
//!   created and started before the client's WebSocket opens, so a container
//!   that is not running, or a program the runtime cannot start, is an HTTP
//!   error. With a tty, `resize` goes to `/exec/{id}/resize`. The exit code
//!   is that of `/exec/{id}/json` once the output ended. When the client goes
//!   away first and the engine is on this host, the command is killed (the
//!   engine has no call for that; its pid is the engine host's).
//! - **attach** is the engine's container attach (`stream=1`, no old logs):
//!   the container's output from now on, stdout and stderr on their channels,
//!   until it ends; its exit code then. stdin only for a container started
//!   with `stdin: true` (the plugin gives it `OpenStdin`), else 400.
//! - **port-forward** connects to the port inside the pod's network
//!   namespace: the plugin enters the network namespace of the pod's infra
//!   container (`/proc/<pid>/ns/net`, on a thread of its own) and connects to
//!   `127.0.0.1:<port>` there, which works with every network mode, `none`
//!   included (the default here, with podman). That needs the engine on this
//!   host and the right to enter namespaces (root); otherwise the infra
//!   container's address on the engine's network is tried.

use std::net::{IpAddr, SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    AttachContainerOptions, ResizeContainerTTYOptions, ResizeExecOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use interlink::exec::{AttachRequest, ExecRequest, PortForwardRequest, Target};
use interlink_plugin_kit::{ExecIo, ExecRun, PluginError, PortStream, exec_run};
use tokio::io::AsyncWriteExt;

use crate::engine::Engine;
use crate::engine::raw::Inspect;
use crate::state::PodRecord;

/// How long a connection to a forwarded port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod of `t`, by UID, with the names it was created with.
pub(crate) fn pod(rec: Option<PodRecord>, t: &Target) -> Result<PodRecord, PluginError> {
    match rec {
        Some(r) if r.namespace == t.namespace && r.name == t.pod_name => Ok(r),
        _ => Err(PluginError::NotFound(format!(
            "no pod {}/{} with UID {} in the docker plugin",
            t.namespace, t.pod_name, t.pod_uid
        ))),
    }
}

/// The engine id and inspect answer of the running container `name`.
async fn running(
    engine: &Engine,
    rec: &PodRecord,
    name: &str,
) -> Result<(String, Inspect), PluginError> {
    let c = rec.find(name).ok_or_else(|| {
        PluginError::NotFound(format!(
            "pod {}/{} has no container {name:?}",
            rec.namespace, rec.name
        ))
    })?;
    let not_running = || {
        PluginError::NotRunning(format!(
            "container {name:?} of pod {}/{} is not running",
            rec.namespace, rec.name
        ))
    };
    if c.id.is_empty() {
        return Err(not_running());
    }
    let i = engine.raw().inspect(&c.id).await.map_err(|e| {
        if e.is_not_found() {
            not_running()
        } else {
            engine.raw_error(&format!("container {name:?}"), e)
        }
    })?;
    match &i.state {
        Some(s) if s.normalized() == "running" => Ok((c.id.clone(), i)),
        _ => Err(not_running()),
    }
}

/// Kills an exec's process unless told it ended (the engine cannot).
struct ExecGuard {
    docker: Docker,
    exec_id: String,
    local: bool,
    ended: bool,
}

impl ExecGuard {
    /// The exec ended: nothing to kill.
    fn finished(&mut self) {
        self.ended = true;
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if self.ended || !self.local {
            return;
        }
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.exec_id);
        tokio::spawn(async move {
            if let Ok(i) = docker.inspect_exec(&id).await
                && i.running == Some(true)
                && let Some(pid) = i.pid.filter(|p| *p > 0)
            {
                tracing::debug!("exec {id}: the client went away; killing pid {pid}");
                // SAFETY: kill(2) of the exec's process, as the engine reported it
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
    }
}

/// `exec`: check the container, create and start the exec; the run relays it.
pub(crate) async fn exec(
    engine: &Engine,
    rec: Option<PodRecord>,
    req: ExecRequest,
) -> Result<ExecRun, PluginError> {
    let rec = pod(rec, &req.target)?;
    let (id, _) = running(engine, &rec, &req.container).await?;
    let docker = engine.client()?;
    let what = format!("exec in container {:?}", req.container);
    let created = docker
        .create_exec(
            &id,
            ExecConfig {
                attach_stdin: Some(req.stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(req.tty),
                // a terminal's programs need its type: TERM=xterm, as
                // containerd sets it
                env: req.tty.then(|| vec!["TERM=xterm".to_string()]),
                cmd: Some(req.command.clone()),
                // never more than the container has
                privileged: Some(false),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| engine.error(&what, e, PluginError::BadRequest))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: req.tty,
                output_capacity: Some(64 * 1024),
            }),
        )
        .await
        .map_err(|e| engine.error(&what, e, PluginError::BadRequest))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(PluginError::Internal(format!(
            "{what}: the engine did not attach"
        )));
    };
    let mut guard = ExecGuard {
        docker: docker.clone(),
        exec_id: created.id.clone(),
        local: engine.host().starts_with("unix://"),
        ended: false,
    };
    let tty = req.tty;
    Ok(exec_run(move |io| async move {
        let resize = tty.then(|| Resize::Exec(guard.exec_id.clone()));
        relay(&docker, io, input, output, resize).await;
        let code = exit_code(&docker, &guard.exec_id).await;
        if code.is_ok() {
            guard.finished();
        }
        code
    }))
}

/// What a terminal size goes to.
enum Resize {
    Exec(String),
    Container(String),
}

type EngineOutput = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// Relay a session's streams to and from an exec or attach until its output
/// ends; sizes go to `resize` (with a tty).
async fn relay(
    docker: &Docker,
    io: ExecIo,
    input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: EngineOutput,
    resize: Option<Resize>,
) {
    let ExecIo {
        stdin,
        resize: mut sizes,
        stdout,
        stderr,
        // the engine has no way to kill an exec: the run is dropped at once
        cancel: _,
    } = io;
    let feed = tokio::spawn(feed_stdin(stdin, input));
    let d = docker.clone();
    let resizer = tokio::spawn(async move {
        while let Some(s) = sizes.recv().await {
            let (h, w) = (s.height as i32, s.width as i32);
            let r = match &resize {
                Some(Resize::Exec(id)) => d.resize_exec(id, ResizeExecOptions { h, w }).await,
                Some(Resize::Container(id)) => {
                    d.resize_container_tty(id, ResizeContainerTTYOptions { h, w })
                        .await
                }
                None => Ok(()),
            };
            if let Err(e) = r {
                tracing::debug!("resize: {e}");
            }
        }
    });
    relay_output(output, &stdout, &stderr).await;
    feed.abort();
    resizer.abort();
}

/// Copy stdin to the engine; its end closes the engine's side.
async fn feed_stdin(
    mut stdin: tokio::sync::mpsc::Receiver<Bytes>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) {
    while let Some(b) = stdin.recv().await {
        if input.write_all(&b).await.is_err() || input.flush().await.is_err() {
            return;
        }
    }
    let _ = input.shutdown().await;
}

/// Copy the engine's output to the session's channels until it ends.
async fn relay_output(
    mut output: EngineOutput,
    stdout: &tokio::sync::mpsc::Sender<Bytes>,
    stderr: &tokio::sync::mpsc::Sender<Bytes>,
) {
    while let Some(item) = output.next().await {
        let sent = match item {
            Ok(LogOutput::StdErr { message }) => stderr.send(message).await,
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                stdout.send(message).await
            }
            Ok(LogOutput::StdIn { .. }) => Ok(()),
            Err(e) => {
                tracing::debug!("exec output: {e}");
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
}

/// The exit code of a finished exec (the engine may take a moment to record it).
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i32, PluginError> {
    for _ in 0..100 {
        let i = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| PluginError::Internal(format!("inspecting exec {exec_id}: {e}")))?;
        if i.running != Some(true)
            && let Some(code) = i.exit_code
        {
            return Ok(code as i32);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(PluginError::Internal(format!(
        "exec {exec_id}: the engine never reported its exit code"
    )))
}

/// `attach`: the container's streams from now on, until it ends.
pub(crate) async fn attach(
    engine: &Engine,
    rec: Option<PodRecord>,
    req: AttachRequest,
) -> Result<ExecRun, PluginError> {
    let rec = pod(rec, &req.target)?;
    let (id, inspect) = running(engine, &rec, &req.container).await?;
    let config = inspect.config.unwrap_or_default();
    if req.stdin && !config.open_stdin {
        return Err(PluginError::BadRequest(format!(
            "container {:?} of pod {}/{} was not started with stdin (spec.containers[].stdin): \
             attach cannot write to it",
            req.container, rec.namespace, rec.name
        )));
    }
    let docker = engine.client()?;
    let what = format!("attach to container {:?}", req.container);
    let attached = docker
        .attach_container(
            &id,
            Some(AttachContainerOptions {
                stream: true,
                logs: false,
                stdin: req.stdin,
                stdout: true,
                stderr: true,
                detach_keys: None,
            }),
        )
        .await
        .map_err(|e| engine.error(&what, e, PluginError::BadRequest))?;
    let container_tty = config.tty;
    Ok(exec_run(move |io| async move {
        let resize = container_tty.then(|| Resize::Container(id.clone()));
        relay(&docker, io, attached.input, attached.output, resize).await;
        container_exit(&docker, &id).await
    }))
}

/// The exit code of a container whose output ended (it ended, or it was
/// removed: then a failure).
async fn container_exit(docker: &Docker, id: &str) -> Result<i32, PluginError> {
    use bollard::query_parameters::WaitContainerOptions;
    let mut wait = docker.wait_container(id, None::<WaitContainerOptions>);
    match tokio::time::timeout(Duration::from_secs(10), wait.next()).await {
        Ok(Some(Ok(r))) => Ok(r.status_code as i32),
        // bollard reports a non-zero exit as an error carrying the code
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
            Ok(code as i32)
        }
        Ok(Some(Err(e))) => Err(PluginError::Internal(format!(
            "waiting for container {id}: {e}"
        ))),
        Ok(None) | Err(_) => Err(PluginError::Internal(format!(
            "container {id}: its output ended but it did not"
        ))),
    }
}

/// `port-forward`: a connection to the port inside the pod's network.
pub(crate) async fn port_forward(
    engine: &Engine,
    rec: Option<PodRecord>,
    req: PortForwardRequest,
) -> Result<PortStream, PluginError> {
    let rec = pod(rec, &req.target)?;
    let pod_name = format!("{}/{}", rec.namespace, rec.name);
    let refused = |e: &dyn std::fmt::Display| {
        PluginError::Unavailable(format!(
            "cannot connect to port {} of pod {pod_name}: {e}",
            req.port
        ))
    };
    if rec.infra_id.is_empty() {
        return Err(PluginError::NotRunning(format!(
            "pod {pod_name} is not running"
        )));
    }
    let infra = engine.raw().inspect(&rec.infra_id).await.map_err(|e| {
        if e.is_not_found() {
            PluginError::NotRunning(format!("pod {pod_name} is not running"))
        } else {
            engine.raw_error(&format!("pod {pod_name}"), e)
        }
    })?;
    let pid = infra
        .state
        .as_ref()
        .filter(|s| s.normalized() == "running")
        .map(|s| s.pid)
        .unwrap_or(0);
    if pid <= 0 {
        return Err(PluginError::NotRunning(format!(
            "pod {pod_name} is not running"
        )));
    }
    let port = req.port;
    let std = if engine.host().starts_with("unix://")
        && std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists()
    {
        tokio::task::spawn_blocking(move || connect_in_netns(pid, port))
            .await
            .map_err(|e| PluginError::Internal(format!("port-forward: {e}")))?
            .map_err(|e| refused(&e))?
    } else {
        let addrs = infra.network.map(|n| n.addresses()).unwrap_or_default();
        let ip: IpAddr = addrs
            .first()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| refused(&"the engine is not on this host and the pod has no address on the engine's network"))?;
        tokio::task::spawn_blocking(move || {
            StdTcpStream::connect_timeout(&SocketAddr::new(ip, port), CONNECT_TIMEOUT)
        })
        .await
        .map_err(|e| PluginError::Internal(format!("port-forward: {e}")))?
        .map_err(|e| refused(&e))?
    };
    std.set_nonblocking(true).map_err(|e| refused(&e))?;
    let s = tokio::net::TcpStream::from_std(std).map_err(|e| refused(&e))?;
    Ok(Box::new(s))
}

/// Connect to `127.0.0.1:port` in the network namespace of process `pid`,
/// from a thread of its own that ends afterwards (a socket stays in the
/// namespace it was made in).
fn connect_in_netns(pid: i64, port: u16) -> std::io::Result<StdTcpStream> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            // SAFETY: setns(2) with a namespace descriptor we hold, for this thread only
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            StdTcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                CONNECT_TIMEOUT,
            )
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
    })
}
