//! The real [`StreamBackend`]: sessions through the interLink API server's
//! `exec` extension (`interlink::client::Client::exec/attach/port_forward`).
//! A CRI container maps to its remote pod (the store's `RemotePod`: UID,
//! namespace, name) and the container's remote name; a sandbox to its running
//! remote pod. A server (or plugin) without the extension answers
//! `Unimplemented` naming it.

use std::sync::{Arc, Weak};

use interlink::client::{Client, ClientError, ExecEvent, ExecSession};
use interlink::exec::{AttachRequest, ExecRequest, ExitStatus, PortForwardRequest, Target};

use super::backend::{BackendError, BoxFuture, ExecIo, ExecTarget, PortStream, StreamBackend};
use crate::states::ContainerState;
use crate::store::{Kind, Phase, Store};

/// Where CRI containers and sandboxes run remotely (the runtime answers from
/// its store: see `cri::exec`).
pub trait Targets: Send + Sync {
    /// The remote pod and container name of a running container.
    fn container(&self, id: &str) -> Result<(Target, String), BackendError>;
    /// The running remote pod of a sandbox.
    fn sandbox(&self, id: &str) -> Result<Target, BackendError>;
}

pub struct InterlinkExec {
    pub client: Client,
    pub targets: Weak<dyn Targets>,
}

impl InterlinkExec {
    pub fn new(client: Client, targets: Weak<dyn Targets>) -> InterlinkExec {
        InterlinkExec { client, targets }
    }

    fn targets(&self) -> Result<Arc<dyn Targets>, BackendError> {
        self.targets
            .upgrade()
            .ok_or_else(|| BackendError::Failed("the runtime is shutting down".into()))
    }
}

fn map_err(e: ClientError) -> BackendError {
    if e.is_unimplemented() {
        return BackendError::Unimplemented(e.to_string());
    }
    match e.status() {
        Some(404) => BackendError::NotFound(e.to_string()),
        // the exec extension's "not running (yet)": the caller knows it started
        Some(409) => BackendError::NotYetRemote(e.to_string()),
        Some(400) => BackendError::FailedPrecondition(e.to_string()),
        _ => BackendError::Failed(e.to_string()),
    }
}

/// The remote pod and container name of a running CRI container.
pub fn container_target(store: &Store, id: &str) -> Result<(Target, String), BackendError> {
    let st = store.read();
    let c = st
        .containers
        .get(id)
        .ok_or_else(|| BackendError::NotFound(format!("container {id:?} not found")))?;
    if c.state != ContainerState::Running {
        return Err(BackendError::FailedPrecondition(format!(
            "container {id:?} is not running"
        )));
    }
    let r = c
        .remote_uid
        .as_ref()
        .and_then(|u| st.remotes.get(u))
        .ok_or_else(|| {
            BackendError::FailedPrecondition(format!("container {id:?} has no remote pod"))
        })?;
    if matches!(r.phase, Phase::Collecting | Phase::Sending) {
        return Err(BackendError::NotYetRemote(format!(
            "container {id:?} is not running remotely yet (its pod is {:?})",
            r.phase
        )));
    }
    if r.phase != Phase::Created {
        return Err(BackendError::FailedPrecondition(format!(
            "container {id:?} does not run remotely (its pod is {:?})",
            r.phase
        )));
    }
    let name = c
        .spec
        .as_ref()
        .map(|s| s.container.name.clone())
        .unwrap_or_else(|| {
            crate::names::dns_label(
                c.config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.as_str())
                    .unwrap_or(""),
            )
        });
    Ok((
        Target {
            pod_uid: r.uid.clone(),
            namespace: r.namespace.clone(),
            pod_name: r.name.clone(),
        },
        name,
    ))
}

/// The remote pod serving a sandbox's ports: its regular containers' pod that
/// was created and still runs.
pub fn sandbox_target(store: &Store, sandbox_id: &str) -> Result<Target, BackendError> {
    let st = store.read();
    let r = st
        .remotes
        .values()
        .filter(|r| r.sandbox_id == sandbox_id && r.phase == Phase::Created && !r.finished)
        .max_by_key(|r| r.kind == Kind::Regular)
        .ok_or_else(|| {
            let started = st.remotes.values().any(|r| {
                r.sandbox_id == sandbox_id && matches!(r.phase, Phase::Collecting | Phase::Sending)
            });
            let m = format!("pod sandbox {sandbox_id:?} has no running remote pod");
            if started {
                BackendError::NotYetRemote(m)
            } else {
                BackendError::FailedPrecondition(m)
            }
        })?;
    Ok(Target {
        pod_uid: r.uid.clone(),
        namespace: r.namespace.clone(),
        pod_name: r.name.clone(),
    })
}

/// How long a session for a started container waits for its remote pod
/// (kubelet and critest exec right after `StartContainer`, inside the batch
/// window).
pub const REMOTE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `attempt` (look the target up, open the session) until it answers
/// something else than "not remote yet": the remote pod is still in its batch
/// window, or the plugin says its container is not running yet (409: just
/// created, a job still queued). For at most [`REMOTE_WAIT`]; each attempt
/// looks the container up again, so one that ended meanwhile fails at once.
async fn when_remote<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, BackendError>
where
    F: std::future::Future<Output = Result<T, BackendError>>,
{
    let deadline = tokio::time::Instant::now() + REMOTE_WAIT;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match attempt().await {
            Err(BackendError::NotYetRemote(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// Open a session on a started container's remote side with `open`
/// (target, container name), waiting for it as [`when_remote`] does.
async fn on_container<T, Fut>(
    targets: &dyn Targets,
    id: &str,
    open: impl Fn(Target, String) -> Fut,
) -> Result<T, BackendError>
where
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    when_remote(|| {
        let opened = targets
            .container(id)
            .map(|(target, container)| open(target, container));
        async move { opened?.await.map_err(map_err) }
    })
    .await
}

/// How long a command stopped at its timeout has to be gone (the peer
/// answers its status once it is; one without the cancel is left then).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Relay `io` to and from a session until its exit status; past `timeout`,
/// cancel the session and wait (at most [`STOP_GRACE`]) for its end.
async fn relay(
    session: ExecSession,
    io: ExecIo,
    timeout: Option<std::time::Duration>,
) -> Result<i32, BackendError> {
    let ExecSession { input, mut output } = session;
    let cancel = input.clone();
    let ExecIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = io;
    let i = input.clone();
    let stdin_task = tokio::spawn(async move {
        if let Some(mut rx) = stdin {
            while let Some(b) = rx.recv().await {
                if i.stdin(b).await.is_err() {
                    return;
                }
            }
            let _ = i.close_stdin().await;
        }
    });
    let resize_task = tokio::spawn(async move {
        if let Some(mut rx) = resize {
            while let Some(size) = rx.recv().await {
                if input.resize(size).await.is_err() {
                    return;
                }
            }
        }
    });
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let r = loop {
        let ev = tokio::select! {
            ev = output.next() => ev,
            _ = &mut expired => {
                let t = timeout.unwrap_or_default();
                let _ = cancel.cancel().await;
                // the rest of the output, then the status: the command is gone
                let _ = tokio::time::timeout(STOP_GRACE, async {
                    while output.next().await.is_some() {}
                }).await;
                break Err(BackendError::TimedOut(format!(
                    "the command timed out after {}s and was stopped",
                    t.as_secs_f64()
                )));
            }
        };
        match ev {
            Some(Ok(ExecEvent::Stdout(b))) => {
                if let Some(tx) = &stdout {
                    let _ = tx.send(b).await;
                }
            }
            Some(Ok(ExecEvent::Stderr(b))) => {
                if let Some(tx) = stderr.as_ref().or(stdout.as_ref()) {
                    let _ = tx.send(b).await;
                }
            }
            Some(Ok(ExecEvent::Exit(st))) => {
                break match st {
                    ExitStatus::Success => Ok(0),
                    ExitStatus::ExitCode(c) => Ok(c),
                    ExitStatus::Failure(m) => Err(BackendError::Failed(m)),
                };
            }
            Some(Err(e)) => break Err(BackendError::Failed(e.to_string())),
            None => {
                break Err(BackendError::Failed(
                    "the exec stream ended without an exit status".into(),
                ));
            }
        }
    };
    stdin_task.abort();
    resize_task.abort();
    r
}

impl StreamBackend for InterlinkExec {
    fn available(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            // unreachable now: let the session itself report it later
            let Ok(ext) = self.client.extensions().await else {
                return Ok(());
            };
            if ext.has(interlink::extensions::EXEC) {
                Ok(())
            } else {
                Err(BackendError::Unimplemented(
                    "exec, attach and port-forward need the \"exec\" extension of the interLink API server and its plugin; GET /extensions does not list it".into(),
                ))
            }
        })
    }

    fn exec(&self, t: ExecTarget, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>> {
        Box::pin(async move {
            let targets = self.targets()?;
            let stdin = io.stdin.is_some();
            let client = &self.client;
            let s = on_container(&*targets, &t.container_id, |target, container| {
                let req = ExecRequest {
                    target,
                    container,
                    command: t.cmd.clone(),
                    tty: t.tty,
                    stdin,
                };
                async move { client.exec(&req).await }
            })
            .await?;
            relay(s, io, t.timeout).await
        })
    }

    fn attach(
        &self,
        container_id: &str,
        tty: bool,
        io: ExecIo,
    ) -> BoxFuture<'_, Result<i32, BackendError>> {
        let id = container_id.to_string();
        Box::pin(async move {
            let targets = self.targets()?;
            let stdin = io.stdin.is_some();
            let client = &self.client;
            let s = on_container(&*targets, &id, |target, container| {
                let req = AttachRequest {
                    target,
                    container,
                    tty,
                    stdin,
                };
                async move { client.attach(&req).await }
            })
            .await?;
            relay(s, io, None).await
        })
    }

    fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn PortStream>, BackendError>> {
        let id = sandbox_id.to_string();
        Box::pin(async move {
            let targets = self.targets()?;
            let client = &self.client;
            let s = when_remote(|| {
                let found = targets.sandbox(&id);
                async move {
                    client
                        .port_forward(&PortForwardRequest {
                            target: found?,
                            port,
                        })
                        .await
                        .map_err(map_err)
                }
            })
            .await?;
            Ok(Box::new(s) as Box<dyn PortStream>)
        })
    }
}
