//! What the streaming server runs sessions on: [`StreamBackend`]. The real one
//! goes through the interLink API's exec extension; tests plug in doubles.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A terminal size, as the resize stream carries it (`{"Width":80,"Height":24}`):
/// the exec extension's own type.
pub use interlink::exec::TermSize;

/// A command to run in a running container.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecTarget {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    /// `ExecSync`'s timeout: past it the backend stops the command, waits
    /// (bounded) until it is gone, and answers [`BackendError::TimedOut`].
    pub timeout: Option<std::time::Duration>,
}

/// The streams of one exec or attach session. A `None` stream was not asked
/// for. `stdin` ends (the channel closes) at the client's EOF; the backend
/// drops `stdout`/`stderr` when the process's output has ended.
pub struct ExecIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// A connection to a port in a pod.
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortStream for T {}

/// Why a session could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Started, but its remote pod is not created yet (the batch window, the
    /// `/create` in flight), or the plugin says the container does not run
    /// yet (409): worth waiting for.
    #[error("{0}")]
    NotYetRemote(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Failed(String),
    /// The command ran past its timeout and was stopped.
    #[error("{0}")]
    TimedOut(String),
}

impl From<BackendError> for tonic::Status {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound(m) => tonic::Status::not_found(m),
            BackendError::FailedPrecondition(m) | BackendError::NotYetRemote(m) => {
                tonic::Status::failed_precondition(m)
            }
            BackendError::Unimplemented(m) => tonic::Status::unimplemented(m),
            BackendError::Failed(m) => tonic::Status::unavailable(m),
            BackendError::TimedOut(m) => tonic::Status::deadline_exceeded(m),
        }
    }
}

/// Runs exec, attach and port-forward sessions. Each call returns when the
/// session is over: exec/attach with the process's exit code.
pub trait StreamBackend: Send + Sync + 'static {
    /// Can sessions run at all? Asked before a URL is handed out, so a peer
    /// without exec gets `Unimplemented` from the CRI call itself.
    fn available(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn exec(&self, target: ExecTarget, io: ExecIo) -> BoxFuture<'_, Result<i32, BackendError>>;
    /// Attach to the main process of `container_id`.
    fn attach(
        &self,
        container_id: &str,
        tty: bool,
        io: ExecIo,
    ) -> BoxFuture<'_, Result<i32, BackendError>>;
    /// Connect to `port` in the pod of `sandbox_id`.
    fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn PortStream>, BackendError>>;
}
