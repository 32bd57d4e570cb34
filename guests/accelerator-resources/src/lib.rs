//! Resource mapper for accelerators (hook `resources/`).
//!
//! Adds extended resources to a container's requests and limits:
//! - the site annotation `custom-resource: "<quantity>"` (annotation name and
//!   resource name configurable) → `example.com/gpu: <quantity>`;
//! - CDI devices (`nvidia.com/gpu=0`, `amd.com/gpu=1`, `nvidia.com/gpu=all`) →
//!   one unit of the vendor's resource per device (`nvidia.com/gpu: "2"`);
//! - plain device nodes `/dev/nvidiaN` → `nvidia.com/gpu` too.
//!
//! Configuration (optional), `accelerator-resources.json` next to the `.wasm`:
//! ```json
//! { "annotation": "custom-resource", "annotation_resource": "example.com/gpu",
//!   "cdi_kinds": { "nvidia.com/gpu": "nvidia.com/gpu" }, "all_count": 1 }
//! ```

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "resource-mapping",
    path: "../../wit",
});

use interlink::extensions::host::{Level, config, log};

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Annotation holding a quantity for `annotation_resource`.
    annotation: String,
    /// Resource set from that annotation.
    annotation_resource: String,
    /// CDI device kind (vendor/class) -> extended resource name.
    cdi_kinds: BTreeMap<String, String>,
    /// How many units `<kind>=all` counts as.
    all_count: u32,
}

impl Default for Config {
    fn default() -> Self {
        let cdi_kinds = [
            ("nvidia.com/gpu", "nvidia.com/gpu"),
            ("amd.com/gpu", "amd.com/gpu"),
            ("intel.com/gpu", "gpu.intel.com/i915"),
            ("habana.ai/gaudi", "habana.ai/gaudi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config {
            annotation: "custom-resource".into(),
            annotation_resource: "example.com/gpu".into(),
            cdi_kinds,
            all_count: 1,
        }
    }
}

interlink_guest_sdk::config!(Config, config);

/// A Kubernetes quantity: digits with an optional fraction and suffix.
fn is_quantity(s: &str) -> bool {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && matches!(
            suffix,
            "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
        )
}

fn set(map: &mut Vec<(String, String)>, name: &str, value: String) {
    match map.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => map.push((name.to_string(), value)),
    }
}

struct Mapper;

impl Guest for Mapper {
    fn map_resources(input: ResourceInput) -> Result<ResourceRequirements, String> {
        with_config(|cfg| map(cfg, input))?
    }
}

fn map(cfg: &Config, input: ResourceInput) -> Result<ResourceRequirements, String> {
    let mut out = input.current;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();

    for dev in &input.cdi_devices {
        let Some((kind, name)) = dev.split_once('=') else {
            continue;
        };
        if let Some(resource) = cfg.cdi_kinds.get(kind) {
            let n = if name == "all" { cfg.all_count } else { 1 };
            *counts.entry(resource.clone()).or_default() += n;
        }
    }
    for dev in &input.devices {
        let node = dev.host_path.strip_prefix("/dev/nvidia").unwrap_or("");
        if !node.is_empty() && node.chars().all(|c| c.is_ascii_digit()) {
            *counts.entry("nvidia.com/gpu".into()).or_default() += 1;
        }
    }
    for (resource, n) in &counts {
        set(&mut out.requests, resource, n.to_string());
        set(&mut out.limits, resource, n.to_string());
    }

    if let Some((_, quantity)) = input.annotations.iter().find(|(k, _)| *k == cfg.annotation) {
        if !is_quantity(quantity) {
            return Err(format!(
                "annotation {}={quantity:?} is not a quantity",
                cfg.annotation
            ));
        }
        // extended resources: request == limit
        set(
            &mut out.requests,
            &cfg.annotation_resource,
            quantity.trim().into(),
        );
        set(
            &mut out.limits,
            &cfg.annotation_resource,
            quantity.trim().into(),
        );
        counts.insert(cfg.annotation_resource.clone(), 0);
    }

    if !counts.is_empty() {
        let mapped: Vec<(String, String)> = counts
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    out.limits
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        log(
            Level::Debug,
            "accelerators mapped",
            &[
                vec![
                    (
                        "pod".to_string(),
                        format!("{}/{}", input.pod_namespace, input.pod_name),
                    ),
                    ("container".to_string(), input.container_name.clone()),
                ],
                mapped,
            ]
            .concat(),
        );
    }
    Ok(out)
}

export!(Mapper);
