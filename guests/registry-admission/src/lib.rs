//! Admission policy (hook `admission/`): images only from allowed registries,
//! no privileged containers.
//!
//! Configuration, `registry-admission.json` next to the `.wasm`:
//! ```json
//! { "allowed_registries": ["docker.io", "ghcr.io/my-org"], "allow_privileged": false }
//! ```
//! - `allowed_registries`: a registry host (`ghcr.io`, `localhost:5000`) allows
//!   every image from it; `host/path` allows images under that path. Images
//!   without a registry (`busybox`, `library/nginx`) come from `docker.io`.
//!   Empty or absent: every registry is allowed.
//! - `allow_privileged` (default false): privileged containers and containers
//!   adding `SYS_ADMIN` are denied unless true.
//!
//! A configuration that does not parse denies every pod (fail closed), saying why.

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

use interlink_guest_sdk::ConfigCell;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "admission-policy",
    path: "../../wit",
});

use interlink::extensions::host::{Level, config, log};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    allowed_registries: Vec<String>,
    allow_privileged: bool,
}

thread_local! {
    static CONFIG: ConfigCell<Config> = const { ConfigCell::new() };
}

/// `registry/path` of an image reference, normalised like Docker does.
fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    // drop the tag (a ':' after the last '/')
    let name = match (name.rfind(':'), name.rfind('/')) {
        (Some(c), Some(s)) if c > s => &name[..c],
        (Some(c), None) => &name[..c],
        _ => name,
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let is_registry = first.contains('.') || first.contains(':') || first == "localhost";
    if is_registry {
        format!("{first}/{rest}")
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{name}")
    }
}

fn allowed(repo: &str, allow: &[String]) -> bool {
    allow.is_empty()
        || allow.iter().any(|a| {
            let a = a.trim_end_matches('/');
            repo == a || repo.starts_with(&format!("{a}/"))
        })
}

struct Policy;

impl Guest for Policy {
    fn admit(pod: PodSummary) -> AdmissionDecision {
        CONFIG.with(|cell| match cell.get(config) {
            Ok(cfg) => judge(cfg, &pod),
            Err(e) => {
                AdmissionDecision::Deny(format!("admission policy configuration is invalid: {e}"))
            }
        })
    }
}

fn judge(cfg: &Config, pod: &PodSummary) -> AdmissionDecision {
    for c in &pod.containers {
        let repo = repository(&c.image);
        if !allowed(&repo, &cfg.allowed_registries) {
            return deny(
                pod,
                format!(
                    "image {:?} of container {:?} is not from an allowed registry ({})",
                    c.image,
                    c.name,
                    cfg.allowed_registries.join(", ")
                ),
            );
        }
        if !cfg.allow_privileged {
            if c.privileged {
                return deny(
                    pod,
                    format!(
                        "container {:?} is privileged, which this site does not allow",
                        c.name
                    ),
                );
            }
            if c.capabilities_add
                .iter()
                .any(|cap| cap.trim_start_matches("CAP_") == "SYS_ADMIN")
            {
                return deny(
                    pod,
                    format!(
                        "container {:?} adds SYS_ADMIN, which this site does not allow",
                        c.name
                    ),
                );
            }
        }
    }
    AdmissionDecision::Allow
}

fn deny(pod: &PodSummary, reason: String) -> AdmissionDecision {
    log(
        Level::Info,
        "pod denied",
        &[
            ("pod".into(), format!("{}/{}", pod.namespace, pod.name)),
            ("reason".into(), reason.clone()),
        ],
    );
    AdmissionDecision::Deny(reason)
}

export!(Policy);
