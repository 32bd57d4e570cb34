//! `CreateContainer`: validates, converts (resource step through the hooks),
//! runs admission on the pod as it would be sent (a denial is
//! `PermissionDenied`), records the container CREATED.

use std::path::PathBuf;

use tonic::Status;

use super::{Result, resolve_sandbox, validate};
use crate::convert;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Container, Kind, Phase, RemotePod};

/// A container annotation that makes it its own batch, sent at once (init containers
/// are batched alone anyway: kubelet waits for each to exit before the next).
pub const ANN_INIT: &str = "interlink.eu/init-container";

/// The reference the remote side is sent for the container's image. kubelet
/// names the image by the ID `PullImage` answered, with the user's reference in
/// `user_specified_image`: an ID is resolved through the image records to the
/// reference the user wrote, never sent as an image name.
fn resolve_image(rt: &Runtime, spec: Option<&cri::ImageSpec>) -> Result<String> {
    let image = spec.map(|i| i.image.as_str()).unwrap_or("");
    let user = spec.map(|i| i.user_specified_image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(Status::invalid_argument("config.image.image is required"));
    }
    let user_ref = (!user.is_empty())
        .then(|| crate::images::normalize(user))
        .transpose()
        .map_err(|e| Status::invalid_argument(format!("user_specified_image: {e}")))?;
    let st = rt.store.read();
    if crate::images::is_id(image) {
        return match (crate::images::find(&st, image), user_ref) {
            (Some(img), Some(u)) if img.matches(&u) => Ok(u),
            (Some(img), _) => Ok(img.reference.clone()),
            (None, Some(u)) => Ok(u),
            (None, None) => Err(Status::not_found(format!(
                "image {image:?} is not known here: pull it by reference first"
            ))),
        };
    }
    match crate::images::normalize(image) {
        Ok(r) => Ok(r),
        // an ID prefix, as typed into crictl
        Err(e) => match crate::images::find(&st, image) {
            Some(img) => Ok(img.reference.clone()),
            None => Err(Status::invalid_argument(e.to_string())),
        },
    }
}

pub fn create_container(
    rt: &std::sync::Arc<Runtime>,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse> {
    let sandbox_id = resolve_sandbox(rt, &req.pod_sandbox_id)?;
    let cfg = req
        .config
        .ok_or_else(|| Status::invalid_argument("config is required"))?;
    let md = cfg
        .metadata
        .clone()
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    validate::name("config.metadata.name", &md.name)?;
    let image_ref = resolve_image(rt, cfg.image.as_ref())?;
    validate::metadata_size("container", &cfg.labels, &cfg.annotations)?;
    let process: usize = cfg
        .command
        .iter()
        .chain(cfg.args.iter())
        .map(|s| s.len())
        .sum::<usize>()
        + cfg
            .envs
            .iter()
            .map(|e| e.key.len() + e.value.len())
            .sum::<usize>();
    if process > validate::MAX_PROCESS_BYTES {
        return Err(Status::invalid_argument(format!(
            "command, args and env are {process} bytes (max {})",
            validate::MAX_PROCESS_BYTES
        )));
    }
    if let Some(sc) = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref())
        && sc.run_as_group.is_some()
        && sc.run_as_user.is_none()
        && sc.run_as_username.is_empty()
    {
        return Err(Status::invalid_argument(
            "security_context.run_as_group is set without run_as_user: a group needs a user",
        ));
    }
    validate::field("working_dir", &cfg.working_dir)?;
    validate::field("log_path", &cfg.log_path)?;
    for m in &cfg.mounts {
        validate::field("mounts.container_path", &m.container_path)?;
        validate::field("mounts.host_path", &m.host_path)?;
        if m.container_path.is_empty() {
            return Err(Status::invalid_argument(
                "mounts.container_path must not be empty",
            ));
        }
    }
    if cfg.log_path.starts_with('/') || cfg.log_path.split('/').any(|p| p == "..") {
        return Err(Status::invalid_argument(format!(
            "log_path {:?} must be relative to the sandbox's log_directory",
            cfg.log_path
        )));
    }
    let (sandbox_cfg, ready, sb_snapshot) = {
        let st = rt.store.read();
        let sb = st
            .sandboxes
            .get(&sandbox_id)
            .ok_or_else(|| Status::not_found(format!("pod sandbox {sandbox_id:?} not found")))?;
        (sb.config.clone(), sb.ready, sb.clone())
    };
    if !ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {sandbox_id} is not ready (stopped)"
        )));
    }
    let sb_for_convert = req
        .sandbox_config
        .as_ref()
        .filter(|s| s.metadata.is_some())
        .unwrap_or(&sandbox_cfg);
    let spec = convert::convert_container(
        sb_for_convert,
        &cfg,
        &image_ref,
        rt.cfg.empty_dir_host_path(),
        rt.hooks.as_ref(),
    );
    let kind = if cfg.annotations.get(ANN_INIT).is_some_and(|v| v == "true") {
        Kind::Init
    } else {
        Kind::Regular
    };
    let log_file = (!sandbox_cfg.log_directory.is_empty() && !cfg.log_path.is_empty())
        .then(|| PathBuf::from(&sandbox_cfg.log_directory).join(&cfg.log_path));
    let id = crate::ids::new_id();
    let mut c = Container {
        id: id.clone(),
        sandbox_id: sandbox_id.clone(),
        kind,
        image_id: crate::images::image_id(&image_ref),
        image_ref,
        created_at: crate::now_ns(),
        started_at: 0,
        finished_at: 0,
        state: crate::states::ContainerState::Created,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        remote_uid: None,
        spec: Some(Box::new(spec)),
        log_file,
        log_offset: 0,
        log_done: false,
        stop_requested: false,
        remote_seen: 0,
        rev: 0,
        admitted: None,
        config: cfg,
    };
    // admission sees the remote pod this container would be sent in
    let trial = RemotePod {
        uid: sb_snapshot.uid.clone(),
        sandbox_id: sandbox_id.clone(),
        name: crate::names::pod_name(
            sandbox_cfg
                .metadata
                .as_ref()
                .map(|m| m.name.as_str())
                .unwrap_or_default(),
        ),
        namespace: crate::names::dns_label(
            sandbox_cfg
                .metadata
                .as_ref()
                .map(|m| m.namespace.as_str())
                .unwrap_or_default(),
        ),
        kind,
        containers: vec![id.clone()],
        phase: Phase::Collecting,
        job_id: String::new(),
        grace_seconds: None,
        send_after: 0,
        finished: false,
    };
    let mut pod = convert::build_create(
        &sb_snapshot,
        &trial,
        &[&c],
        rt.hooks.as_ref(),
        &rt.cfg.plugin_config,
    )
    .pod;
    if let Some(real) = rt
        .pod_specs
        .get(&sandbox_cfg.metadata.clone().unwrap_or_default().uid)
    {
        convert::apply_pod_spec(&mut pod, &real);
    }
    if let Err(reason) = rt.hooks.admit(&pod) {
        return Err(Status::permission_denied(format!(
            "admission denied container {:?}: {reason}",
            md.name
        )));
    }
    // sent alone in this very pod, it is not judged again (see `dispatch`)
    c.admitted = Some(crate::dispatch::admission_fingerprint(&pod));
    let window = rt.cfg.batch_window.as_nanos() as i64;
    crate::effects::change(rt, |ch| ch.create_container(c, window))?;
    Ok(cri::CreateContainerResponse { container_id: id })
}
