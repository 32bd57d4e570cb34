//! `RunPodSandbox`: records the sandbox. Nothing is sent remotely until its first
//! container starts (a remote pod needs containers).

use tonic::Status;

use super::{Result, validate};
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Sandbox;

/// The remote UID of a sandbox: the pod UID when it is a lowercase UUID (as the
/// interLink API server requires), else a UUID derived from it.
pub fn remote_uid(uid: &str) -> String {
    match uuid::Uuid::parse_str(uid) {
        Ok(u) if u.hyphenated().to_string() == uid => uid.to_string(),
        _ => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, uid.as_bytes()).to_string(),
    }
}

pub fn run_pod_sandbox(
    rt: &Runtime,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("config is required"))?;
    let md = config
        .metadata
        .clone()
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    validate::name("metadata.name", &md.name)?;
    validate::name("metadata.namespace", &md.namespace)?;
    validate::uid("metadata.uid", &md.uid)?;
    validate::metadata_size("pod sandbox", &config.labels, &config.annotations)?;
    validate::field("hostname", &config.hostname)?;
    validate::field("log_directory", &config.log_directory)?;
    let handler = if req.runtime_handler.is_empty() {
        rt.cfg.cri.runtime_handler.clone()
    } else {
        req.runtime_handler.clone()
    };
    if handler != rt.cfg.cri.runtime_handler {
        return Err(Status::invalid_argument(format!(
            "runtime handler {handler:?} is not served here (this runtime serves {:?})",
            rt.cfg.cri.runtime_handler
        )));
    }
    let host_network = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
    let cidr = (!host_network).then(|| rt.pod_cidr());
    let id = crate::ids::new_id();
    let sb = Sandbox {
        ip: String::new(),
        id: id.clone(),
        uid: remote_uid(&md.uid),
        config,
        created_at: crate::now_ns(),
        ready: true,
        runtime_handler: handler,
        batches: 0,
        main_used: false,
    };
    crate::lifecycle::change(&rt.store, |ch| ch.create_sandbox(sb, cidr.as_ref())).0?;
    tracing::info!(sandbox = %id, pod = %format!("{}/{}", md.namespace, md.name), "sandbox ready");
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}
