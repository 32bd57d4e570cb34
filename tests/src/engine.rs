//! The container engine of scripts/engine-setup.sh for the tests: rootful
//! podman whose settings (`CONTAINERS_CONF`, ..., `ENGINE_IMAGE`) are exported
//! by `$ENGINE_DIR/env.sh` (default `/tmp/engine/env.sh`), and its
//! Docker-compatible service on a private socket.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::plugin::PodBuilder;
use crate::{Proc, backends_required, wait_for_unix_socket};

/// The engine's environment and the image its setup made.
pub struct Engine {
    /// The variables `env.sh` exports, for every `podman` the test runs.
    pub env: BTreeMap<String, String>,
    /// `ENGINE_IMAGE` (default `localhost/mini:latest`).
    pub image: String,
}

impl Engine {
    /// The environment as pairs, for `Command::envs` or a plugin's environment.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Run `podman <args>` with the engine's `env`; its stdout, trimmed.
pub fn podman(env: &BTreeMap<String, String>, args: &[&str]) -> String {
    let o = Command::new("podman")
        .envs(env)
        .args(args)
        .output()
        .expect("podman");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Ids of the engine's containers (any state) of the pod `uid` with the
/// `interlink.role` label `role` (`init`, `container` or `infra`).
pub fn containers_of(env: &BTreeMap<String, String>, uid: &str, role: &str) -> Vec<String> {
    podman(
        env,
        &[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=interlink.pod-uid={uid}"),
            "--filter",
            &format!("label=interlink.role={role}"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Remove every container of the pod `uid`, whatever its state: those joined
/// to an infra container first, then the infra container.
pub fn remove_pod_containers(env: &BTreeMap<String, String>, uid: &str) {
    for role in ["init", "container", "infra"] {
        let ids = containers_of(env, uid, role);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(ids.iter().map(String::as_str));
            podman(env, &args);
        }
    }
}

/// Make every container and init container of `b` use `image`.
pub fn use_image(b: &mut PodBuilder, image: &str) {
    let spec = b.pod.spec.as_mut().unwrap();
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.image = Some(image.to_string());
    }
}

/// Start `podman system service` with the engine's `env` on the Unix socket
/// `sock` (output appended to `log`) and wait up to `timeout` for it; stopped
/// when dropped.
pub fn start_service(
    env: &BTreeMap<String, String>,
    sock: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<Proc> {
    let mut cmd = Command::new("podman");
    cmd.envs(env)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", sock.display()));
    let proc = Proc::spawn("podman-service", cmd, log)?;
    wait_for_unix_socket(sock, timeout).context("podman service socket")?;
    Ok(proc)
}

/// An `interlink-docker` config: listening on the Unix socket `plugin_sock`,
/// data under `data`, the engine at `engine_sock`, its infra containers from
/// `image` (never pulled), then `extra` (lines indented under `docker:`).
pub fn docker_plugin_config(
    plugin_sock: &Path,
    data: &Path,
    engine_sock: &Path,
    image: &str,
    extra: &str,
) -> String {
    format!(
        "listen: unix://{}\ndata_root: {}\ndocker:\n  docker_host: unix://{}\n  infra_image: {image}\n  infra_command: [sleep, \"2147483647\"]\n  image_pull_policy: IfNotPresent\n{extra}",
        plugin_sock.display(),
        data.display(),
        engine_sock.display(),
    )
}

/// The engine prepared by scripts/engine-setup.sh, if its env file is there
/// and podman has its image.
///
/// Otherwise: panics when backends are required (`INTERLINK_REQUIRE_BACKENDS=1`),
/// else prints `SKIP: <what>: <why>` and gives `None`.
pub fn engine(what: &str) -> Option<Engine> {
    let dir = std::env::var("ENGINE_DIR").unwrap_or_else(|_| "/tmp/engine".into());
    let file = Path::new(&dir).join("env.sh");
    let why = match std::fs::read_to_string(&file) {
        Err(e) => format!(
            "no engine env file {} ({e}): run scripts/engine-setup.sh as root",
            file.display()
        ),
        Ok(text) => {
            let env: BTreeMap<String, String> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("export ")?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            let image = env
                .get("ENGINE_IMAGE")
                .cloned()
                .unwrap_or_else(|| "localhost/mini:latest".into());
            match Command::new("podman")
                .args(["image", "exists", &image])
                .envs(&env)
                .output()
            {
                Ok(o) if o.status.success() => return Some(Engine { env, image }),
                Ok(o) => format!(
                    "podman has no image {image}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => format!("podman is not installed: {e}"),
            }
        }
    };
    if backends_required() {
        panic!(
            "the container engine is required (INTERLINK_REQUIRE_BACKENDS=1) but unavailable: {why}"
        );
    }
    eprintln!("SKIP: {what}: {why}");
    None
}
