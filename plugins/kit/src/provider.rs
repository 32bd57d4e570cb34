//! The trait a plugin implements: one method per plugin endpoint.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use interlink::exec::{AttachRequest, ExecRequest, PortForwardRequest};
use interlink::extensions::{Extensions, PodStats};
use interlink::{CreateStruct, LogStruct, PingResponse, PodRef, PodStatus, RetrievedPodData};
use k8s_openapi::api::core::v1::Pod;

pub use crate::exec_ws::{ExecIo, ExecResult, ExecRun, PortIo, PortStream, exec_run};

/// Log bytes, finite for a bounded request, open while the container runs on `Follow`.
pub type LogStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why a plugin call failed; the kit maps each kind to an HTTP status with a JSON
/// `{"error": message}` body.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The pod or container is not known to this plugin (404).
    #[error("{0}")]
    NotFound(String),
    /// The backend refused the pod: unknown image, invalid flags, sbatch refusal (422).
    #[error("{0}")]
    Rejected(String),
    /// The backend (slurmctld, the container engine) cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The container (or pod) exists but is not running (409): not yet (just
    /// created, a job still queued) or no more. A caller that knows it was
    /// started may try again shortly.
    #[error("{0}")]
    NotRunning(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
    /// This backend cannot do what was asked (501): an extension it lacks.
    #[error("{0}")]
    Unsupported(String),
}

/// A resource kind that runs pods: local processes, Slurm jobs, containers.
pub trait Provider: Send + Sync + 'static {
    /// Start the pod; answer its UID and the job id the backend gave it.
    fn create(
        &self,
        data: RetrievedPodData,
    ) -> impl Future<Output = Result<CreateStruct, PluginError>> + Send;

    /// Stop the pod (grace period from its spec) and forget it. Unknown pods succeed.
    fn delete(&self, pod: Pod) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// Status of many pods in one call, each named by its ids and containers
    /// (the request's `v1.Pod`s decoded no further). Unknown pods are answered
    /// (or left out), never an error.
    fn status(
        &self,
        pods: &[PodRef],
    ) -> impl Future<Output = Result<Vec<PodStatus>, PluginError>> + Send;

    /// Logs of one container, bounded by the options, or following on `Follow`.
    fn logs(&self, req: LogStruct) -> impl Future<Output = Result<LogStream, PluginError>> + Send;

    /// Liveness and, where known, free resources.
    fn ping(&self) -> impl Future<Output = Result<PingResponse, PluginError>> + Send;

    /// The extensions of the upstream contract this provider implements, as
    /// the kit answers them at `GET /extensions` (see [`interlink::extensions`]).
    /// None by default; a provider that implements [`Provider::stats`] lists
    /// `stats` here.
    fn extensions(&self) -> Extensions {
        Extensions::none()
    }

    /// Usage of many pods (extension `stats`): per running container, the
    /// figures the backend knows, each absent when unknown. Unknown pods are
    /// left out. The default answers that the provider has no such extension.
    fn stats(
        &self,
        pods: &[PodRef],
    ) -> impl Future<Output = Result<Vec<PodStats>, PluginError>> + Send {
        let _ = pods;
        async {
            Err(PluginError::NotFound(
                "this plugin has no stats extension".to_string(),
            ))
        }
    }

    /// The feed of status changes (extension `statusWatch`, which a provider
    /// that has it lists in [`Provider::extensions`]): a receiver of a pod's
    /// whole status each time it changes (a container started or ended). The
    /// kit serves `POST /status/watch` from it (see [`crate::status_watch`]).
    /// `None` by default: no such extension.
    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<PodStatus>> {
        None
    }

    /// The status of every pod the provider has (a watch of `[]`, extension
    /// `statusWatch`). The default: unsupported (501).
    fn status_all(&self) -> impl Future<Output = Result<Vec<PodStatus>, PluginError>> + Send {
        async {
            Err(PluginError::Unsupported(format!(
                "this plugin has no {:?} extension",
                interlink::extensions::STATUS_WATCH
            )))
        }
    }

    /// Run a command in a container (extension `exec`, which a provider that
    /// implements this lists in [`Provider::extensions`]). Check the pod and
    /// container here (unknown: [`PluginError::NotFound`]; not running:
    /// [`PluginError::NotRunning`]); the returned run gets the streams once the
    /// client's WebSocket is open and answers the exit code. The kit has
    /// validated the request's names. The default: unsupported (501).
    fn exec(&self, req: ExecRequest) -> impl Future<Output = Result<ExecRun, PluginError>> + Send {
        let _ = req;
        async { Err(no_exec("run commands in containers")) }
    }

    /// Attach to the streams of a container's main process (extension
    /// `exec`), as [`Provider::exec`]. The run ends when the process does
    /// (or the client goes). The default: unsupported (501).
    fn attach(
        &self,
        req: AttachRequest,
    ) -> impl Future<Output = Result<ExecRun, PluginError>> + Send {
        let _ = req;
        async { Err(no_exec("attach to containers")) }
    }

    /// Connect to a port of the pod (extension `exec`): answer the connected
    /// stream; a port that refuses is an error here ([`PluginError::Unavailable`]).
    /// The default: unsupported (501).
    fn port_forward(
        &self,
        req: PortForwardRequest,
    ) -> impl Future<Output = Result<PortStream, PluginError>> + Send {
        let _ = req;
        async { Err(no_exec("forward ports")) }
    }
}

fn no_exec(what: &str) -> PluginError {
    PluginError::Unsupported(format!(
        "this plugin has no {:?} extension: it cannot {what}",
        interlink::extensions::EXEC
    ))
}

/// Check that a log request's `Namespace` and `PodName` are those of the pod
/// registered under its `PodUID` (the names as the plugin received them at
/// `/create`, after any mapping the caller did): a request that names another
/// pod is answered 404, as if the UID were unknown, so a UID alone does not
/// reach a pod's logs under another name.
pub fn check_log_target(req: &LogStruct, namespace: &str, name: &str) -> Result<(), PluginError> {
    if req.namespace == namespace && req.pod_name == name {
        return Ok(());
    }
    Err(PluginError::NotFound(format!(
        "no pod {}/{} with UID {}",
        req.namespace, req.pod_name, req.pod_uid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_target_names_must_match() {
        let req = LogStruct {
            namespace: "team-a".into(),
            pod_uid: "7f0c1f5e-2a9d-4c4e-9a43-8f3c0e2d1b6a".into(),
            pod_name: "web".into(),
            container_name: "main".into(),
            opts: Default::default(),
        };
        check_log_target(&req, "team-a", "web").unwrap();
        for (ns, name) in [("team-b", "web"), ("team-a", "db"), ("", "")] {
            let e = check_log_target(&req, ns, name).unwrap_err();
            assert!(
                matches!(&e, PluginError::NotFound(m) if m.contains("team-a/web")),
                "{e}"
            );
        }
    }
}
