//! Annotation handler for the Slurm plugin (hook `annotations/`).
//!
//! Turns the generic scheduling annotations of a pod
//! - `interlink.io/partition: gpu`  → `--partition=gpu`
//! - `interlink.io/qos: high`       → `--qos=high`
//!
//! into the Slurm plugin's `slurm-job.vk.io/flags` annotation (extra `#SBATCH`
//! lines, space separated), keeping flags already there unless they set the same
//! option. `interlink.io/plugin` selects the plugin: when it names another plugin
//! than `slurm` the pod is left alone. Annotations on containers count too (pod
//! annotations win).
//!
//! Configuration (optional), `slurm-annotations.json` next to the `.wasm`:
//! ```json
//! { "default_partition": "batch", "default_qos": "", "plugin": "slurm",
//!   "extra": { "interlink.io/account": "account" } }
//! ```
//! `extra` maps more annotations to sbatch long options.

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "annotation-handling",
    path: "../../wit",
});

use interlink::extensions::host::{Level, config, log};

pub const FLAGS: &str = "slurm-job.vk.io/flags";
const PARTITION: &str = "interlink.io/partition";
const QOS: &str = "interlink.io/qos";
const PLUGIN: &str = "interlink.io/plugin";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    default_partition: String,
    default_qos: String,
    /// The plugin name this handler serves (default "slurm").
    plugin: Option<String>,
    /// annotation -> sbatch long option name (without `--`)
    extra: BTreeMap<String, String>,
}

interlink_guest_sdk::config!(Config, config);

/// A value safe to put on an `#SBATCH` line: no whitespace, quotes or shell
/// metacharacters.
fn safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:=+@/".contains(c))
}

/// The option name of a flag: `--partition=x` → `partition`, `-p` → `p`.
fn option_name(flag: &str) -> &str {
    flag.trim_start_matches('-').split('=').next().unwrap_or("")
}

struct Handler;

impl Guest for Handler {
    fn handle_annotations(input: AnnotationInput) -> Result<MetadataChanges, String> {
        with_config(|cfg| handle(cfg, &input))?
    }
}

fn lookup<'a>(input: &'a AnnotationInput, name: &str) -> Option<&'a str> {
    let pod = input.pod_annotations.iter().find(|(k, _)| k == name);
    let container = || {
        input
            .container_annotations
            .iter()
            .flat_map(|(_, anns)| anns.iter())
            .find(|(k, _)| k == name)
    };
    pod.or_else(container)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn handle(cfg: &Config, input: &AnnotationInput) -> Result<MetadataChanges, String> {
    let mut changes = MetadataChanges {
        set_labels: vec![],
        remove_labels: vec![],
        set_annotations: vec![],
        remove_annotations: vec![],
    };
    let served = cfg.plugin.as_deref().unwrap_or("slurm");
    if lookup(input, PLUGIN).is_some_and(|plugin| plugin != served) {
        return Ok(changes);
    }

    let mut wanted: Vec<(String, String)> = Vec::new();
    let partition = lookup(input, PARTITION).unwrap_or(&cfg.default_partition);
    if !partition.is_empty() {
        wanted.push(("partition".into(), partition.into()));
    }
    let qos = lookup(input, QOS).unwrap_or(&cfg.default_qos);
    if !qos.is_empty() {
        wanted.push(("qos".into(), qos.into()));
    }
    for (annotation, option) in &cfg.extra {
        if let Some(v) = lookup(input, annotation) {
            wanted.push((option.clone(), v.into()));
        }
    }
    if wanted.is_empty() {
        return Ok(changes);
    }
    for (option, value) in &wanted {
        if !safe(value) {
            return Err(format!("refusing unsafe value {value:?} for --{option}"));
        }
    }

    let existing = input
        .pod_annotations
        .iter()
        .find(|(k, _)| k == FLAGS)
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let short = |o: &str| match o {
        "partition" => "p",
        "qos" => "q",
        "account" => "A",
        _ => "",
    };
    // existing flags as (option, whole text): `--qos=x`, `-p gpu`, `--exclusive`
    let tokens: Vec<&str> = existing.split_whitespace().collect();
    let mut flags: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i];
        let mut text = tok.to_string();
        let takes_value = tok.starts_with('-') && !tok.contains('=');
        if takes_value && tokens.get(i + 1).is_some_and(|n| !n.starts_with('-')) {
            text = format!("{tok} {}", tokens[i + 1]);
            i += 1;
        }
        i += 1;
        let name = option_name(tok);
        if !wanted.iter().any(|(o, _)| name == o || name == short(o)) {
            flags.push(text);
        }
    }
    flags.extend(wanted.iter().map(|(o, v)| format!("--{o}={v}")));
    let value = flags.join(" ");

    log(
        Level::Info,
        "slurm flags set",
        &[
            (
                "pod".into(),
                format!("{}/{}", input.pod_namespace, input.pod_name),
            ),
            ("flags".into(), value.clone()),
        ],
    );
    changes.set_annotations.push((FLAGS.into(), value));
    Ok(changes)
}

export!(Handler);
