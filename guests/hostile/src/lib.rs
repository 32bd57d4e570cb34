//! A test module that misbehaves on purpose (tests and benchmarks only).
//!
//! Implements every hook, so it may go into any hook folder. Its configuration
//! (`<name>.json` next to the `.wasm`) picks what it does:
//! ```json
//! { "mode": "loop", "trigger": "evil", "mark": "v1" }
//! ```
//! - `mode`: `none` (behave: add the marker), `loop` (spin forever), `bomb`
//!   (allocate until memory runs out), `trap` (panic), `huge` (return a result of
//!   several MiB), `sleep` (block on a clock), `print` (write to stdout/stderr,
//!   then behave), `deny` (admission: deny), `leak` (create host pollables
//!   and never drop them, without end), `leak-some` (leak 100 pollables, then
//!   behave).
//! - `trigger`: misbehave only for pods whose name starts with this (default:
//!   every pod, which makes the module fail its smoke call at load).
//! - `mark`: the marker a well-behaved call leaves: resource `example.com/mark`,
//!   annotation `hostile.example/mark`, state message, so tests see which
//!   version of the module answered.

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

use std::cell::OnceCell;

use serde::Deserialize;

wit_bindgen::generate!({
    world: "all-hooks",
    path: "../../wit",
});

use interlink::extensions::host::{Level, config, log};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    mode: String,
    trigger: String,
    mark: String,
}

thread_local! {
    static CONFIG: OnceCell<Config> = const { OnceCell::new() };
}

fn cfg<R>(f: impl FnOnce(&Config) -> R) -> R {
    CONFIG.with(|cell| f(cell.get_or_init(|| serde_json::from_str(&config()).unwrap_or_default())))
}

/// Misbehave if configured to for this pod; returns normally only for the
/// modes that do not diverge.
fn misbehave(pod_name: &str) -> Option<String> {
    let (mode, triggered) = cfg(|c| {
        (
            c.mode.clone(),
            c.trigger.is_empty() || pod_name.starts_with(&c.trigger),
        )
    });
    if !triggered {
        return None;
    }
    match mode.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("hostile module trapping on purpose"),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(5));
            None
        }
        "print" => {
            println!("hostile module writing to stdout");
            eprintln!("hostile module writing to stderr");
            None
        }
        "huge" => Some("x".repeat(4 << 20)),
        "deny" => Some("denied by the hostile test module".into()),
        "leak" => loop {
            leak_pollable();
        },
        "leak-some" => {
            for _ in 0..100 {
                leak_pollable();
            }
            None
        }
        _ => None,
    }
}

/// A host pollable (a clock timer) the module never drops: host memory the
/// module's own memory bound does not see.
fn leak_pollable() {
    let p = wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000);
    std::mem::forget(p);
}

fn mark() -> String {
    cfg(|c| {
        if c.mark.is_empty() {
            "hostile".into()
        } else {
            c.mark.clone()
        }
    })
}

struct Hostile;

impl Guest for Hostile {
    fn map_resources(input: ResourceInput) -> Result<ResourceRequirements, String> {
        let mut out = input.current;
        match misbehave(&input.pod_name) {
            Some(huge) if huge.len() > 1024 => {
                out.limits.push(("example.com/huge".into(), huge));
            }
            _ => {
                out.limits.retain(|(k, _)| k != "example.com/mark");
                let m = mark();
                // resources want quantities: a non-numeric mark counts as 1
                let q = if m.chars().all(|c| c.is_ascii_digit()) {
                    m
                } else {
                    "1".into()
                };
                out.limits.push(("example.com/mark".into(), q));
            }
        }
        Ok(out)
    }

    fn handle_annotations(input: AnnotationInput) -> Result<MetadataChanges, String> {
        let mut set_annotations = vec![("hostile.example/mark".to_string(), mark())];
        if let Some(huge) = misbehave(&input.pod_name) {
            set_annotations.push(("hostile.example/huge".into(), huge));
        }
        Ok(MetadataChanges {
            set_labels: vec![],
            remove_labels: vec![],
            set_annotations,
            remove_annotations: vec![],
        })
    }

    fn map_state(input: StateInput) -> Result<StateDecision, String> {
        let mut out = input.current;
        out.message = match misbehave(&input.pod_name) {
            Some(huge) => huge,
            None => mark(),
        };
        Ok(out)
    }

    fn admit(pod: PodSummary) -> AdmissionDecision {
        log(Level::Debug, "judging", &[("pod".into(), pod.name.clone())]);
        match misbehave(&pod.name) {
            Some(reason) => AdmissionDecision::Deny(reason),
            None => AdmissionDecision::Allow,
        }
    }
}

export!(Hostile);
