//! Benchmark of the WebAssembly extension system (prints figures):
//! - added cost per hook call with 0, 1 and 3 modules (CreateContainer path:
//!   resources, annotations, admission; status path: state);
//! - reload latency from a file write to the new behaviour, with calls running
//!   meanwhile (failed calls counted);
//! - memory per loaded module.
//!
//! `cargo bench -p interlink-cri --bench extensions` (builds the guests with
//! scripts/build-guests.sh if they are missing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interlink_cri::extensions::{ExtensionSettings, Extensions};
use interlink_cri::hooks::{
    AnnotationInput, CriState, Hooks, RemoteState, ResourceInput, ResourceRequirements,
    StateDecision, StateInput,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

mod common;
use common::rss_bytes;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn guest(name: &str) -> Vec<u8> {
    let path = repo().join(format!("guests/target/wasm32-wasip2/release/{name}.wasm"));
    if !path.is_file() {
        let ok = std::process::Command::new(repo().join("scripts/build-guests.sh"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "building the guests failed: run scripts/build-guests.sh"
        );
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The component with an extra custom section: same behaviour, new content
/// hash (so it is compiled afresh, not taken from the cache).
fn variant(wasm: &[u8], n: u64) -> Vec<u8> {
    let name = b"bench-variant";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

fn put(dir: &Path, hook: &str, file: &str, wasm: &[u8], config: Option<&str>) {
    let d = dir.join(hook);
    std::fs::create_dir_all(&d).unwrap();
    let target = d.join(file);
    if let Some(c) = config {
        atomic_write(&target.with_extension("json"), c.as_bytes());
    }
    atomic_write(&target, wasm);
}

fn atomic_write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start(dir: &Path) -> Arc<Extensions> {
    Extensions::start(ExtensionSettings {
        dir: dir.to_path_buf(),
        ..Default::default()
    })
    .expect("start")
}

fn resource_input() -> ResourceInput {
    let mut default = ResourceRequirements::default();
    default.requests.insert("cpu".into(), "500m".into());
    default.limits.insert("cpu".into(), "1".into());
    default.limits.insert("memory".into(), "1Gi".into());
    let mut input = ResourceInput {
        pod_name: "bench".into(),
        pod_namespace: "default".into(),
        container_name: "main".into(),
        default,
        ..Default::default()
    };
    input.cdi_devices.push("nvidia.com/gpu=0".into());
    input
        .annotations
        .insert("custom-resource".into(), "1".into());
    input
}

fn annotation_input() -> AnnotationInput {
    let mut input = AnnotationInput {
        pod_name: "bench".into(),
        pod_namespace: "default".into(),
        ..Default::default()
    };
    input
        .pod_annotations
        .insert("interlink.io/partition".into(), "gpu".into());
    input
        .pod_annotations
        .insert("interlink.io/qos".into(), "high".into());
    input.pod_labels.insert("app".into(), "bench".into());
    input
}

fn state_input() -> StateInput {
    StateInput {
        pod_name: "bench".into(),
        pod_namespace: "default".into(),
        container_name: "main".into(),
        job_id: "123".into(),
        remote: RemoteState::Terminated,
        remote_reason: "TIMEOUT".into(),
        remote_message: String::new(),
        remote_exit_code: 1,
        default: StateDecision {
            state: CriState::Exited,
            exit_code: 1,
            reason: "Error".into(),
            message: String::new(),
        },
    }
}

fn pod() -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("bench".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("docker.io/library/busybox:1.36".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let mean = all.elapsed() / n as u32;
    samples.sort();
    Stats {
        p50: samples[n / 2],
        p99: samples[n * 99 / 100],
        mean,
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

/// Modules for `hook` (first the real one, then marker modules).
fn install_hook(dir: &Path, hook: &str, count: usize) {
    let (real, config) = match hook {
        "resources" => ("accelerator_resources", None),
        "annotations" => ("slurm_annotations", None),
        "state" => ("slurm_state", None),
        _ => (
            "registry_admission",
            Some(r#"{"allowed_registries": ["docker.io"]}"#),
        ),
    };
    if count >= 1 {
        put(dir, hook, "10-real.wasm", &guest(real), config);
    }
    for i in 1..count {
        put(
            dir,
            hook,
            &format!("{}0-mark.wasm", i + 1),
            &guest("hostile"),
            Some(&format!(r#"{{"mark": "{i}"}}"#)),
        );
    }
}

fn cost_per_hook() {
    println!("\n== cost per hook call (µs; 20000 calls each, one thread) ==");
    println!(
        "{:<12} {:>7} {:>9} {:>9} {:>9}",
        "hook", "modules", "p50", "p99", "mean"
    );
    let calls = 20_000;
    for hook in ["resources", "annotations", "admission", "state"] {
        for count in [0usize, 1, 3] {
            let dir = tempfile::tempdir().unwrap();
            install_hook(dir.path(), hook, count);
            let ext = start(dir.path());
            assert_eq!(ext.modules().len(), count, "{:?}", ext.rejections());
            let (ri, ai, si, p) = (resource_input(), annotation_input(), state_input(), pod());
            let s = match hook {
                "resources" => measure(calls, || {
                    std::hint::black_box(ext.map_resources(&ri));
                }),
                "annotations" => measure(calls, || {
                    std::hint::black_box(ext.handle_annotations(&ai));
                }),
                "admission" => measure(calls, || {
                    let _ = std::hint::black_box(ext.admit(&p));
                }),
                _ => measure(calls, || {
                    std::hint::black_box(ext.map_state(&si));
                }),
            };
            println!(
                "{:<12} {:>7} {:>9} {:>9} {:>9}",
                hook,
                count,
                us(s.p50),
                us(s.p99),
                us(s.mean)
            );
        }
    }
}

fn mark_of(ext: &Extensions, input: &ResourceInput) -> Option<String> {
    ext.map_resources(input)
        .limits
        .get("example.com/mark")
        .cloned()
}

fn reload_latency() {
    println!("\n== reload latency: file written → new behaviour (calls running on 2 threads) ==");
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest("hostile");
    put(
        dir.path(),
        "resources",
        "mark.wasm",
        &wasm,
        Some(r#"{"mark": "1"}"#),
    );
    let ext = start(dir.path());
    let input = resource_input();
    assert_eq!(mark_of(&ext, &input).as_deref(), Some("1"));

    // load: callers that count calls that found no module at all
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (ext, stop, calls, failed, input) = (
                ext.clone(),
                stop.clone(),
                calls.clone(),
                failed.clone(),
                input.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if mark_of(&ext, &input).is_none() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut config_change = Vec::new();
    let mut new_code = Vec::new();
    for round in 0..10u64 {
        for (fresh_code, samples) in [(false, &mut config_change), (true, &mut new_code)] {
            let want = format!("{}", 100 + round * 2 + fresh_code as u64);
            let cfg = format!(r#"{{"mark": "{want}"}}"#);
            let written = Instant::now();
            if fresh_code {
                put(
                    dir.path(),
                    "resources",
                    "mark.wasm",
                    &variant(&wasm, round),
                    Some(&cfg),
                );
            } else {
                atomic_write(&dir.path().join("resources/mark.json"), cfg.as_bytes());
            }
            while mark_of(&ext, &input).as_deref() != Some(want.as_str()) {
                if written.elapsed() > Duration::from_secs(10) {
                    panic!("no reload after 10 s");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            samples.push(written.elapsed());
        }
    }
    // a broken version dropped in: the old one keeps serving
    let before = mark_of(&ext, &input);
    atomic_write(&dir.path().join("resources/mark.wasm"), b"garbage");
    let t = Instant::now();
    while !ext.rejections().iter().any(|r| r.name == "mark.wasm")
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let still = mark_of(&ext, &input);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    for (what, mut s) in [
        ("config changed (cached code)", config_change),
        ("new component (compiled)", new_code),
    ] {
        s.sort();
        println!(
            "{what:<30} median {:>7.1} ms   max {:>7.1} ms   ({} reloads)",
            s[s.len() / 2].as_secs_f64() * 1e3,
            s[s.len() - 1].as_secs_f64() * 1e3,
            s.len()
        );
    }
    println!(
        "broken version dropped in: rejected, still serving the previous version: {}",
        before == still
    );
    println!(
        "calls during the reloads: {}   failed (no module applied): {}",
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    let mut registry = prometheus_client::registry::Registry::with_prefix("interlink_cri");
    interlink_cri::extensions::register_metrics(&mut registry);
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    for line in text
        .lines()
        .filter(|l| l.contains("errors_total{") && l.contains("mark.wasm"))
    {
        println!("  {line}");
    }
}

fn memory_per_module() {
    println!("\n== memory per loaded module (resident set growth) ==");
    let n = 20u64;
    let dir = tempfile::tempdir().unwrap();
    let ext = start(dir.path());
    let wasm = guest("accelerator_resources");
    let before = rss_bytes();
    for i in 0..n {
        put(
            dir.path(),
            "resources",
            &format!("m{i:02}.wasm"),
            &variant(&wasm, 1000 + i),
            None,
        );
    }
    ext.reload();
    assert_eq!(ext.modules().len() as u64, n, "{:?}", ext.rejections());
    let loaded = rss_bytes();
    // one call: every module has an instance in its pool
    ext.map_resources(&resource_input());
    let called = rss_bytes();
    println!(
        "component file {} KiB; per module: {:.0} KiB once loaded (compiled code + the instance its smoke call left in the pool), {:.0} KiB after a call",
        wasm.len() / 1024,
        (loaded.saturating_sub(before)) as f64 / n as f64 / 1024.0,
        (called.saturating_sub(before)) as f64 / n as f64 / 1024.0
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse
    cost_per_hook();
    reload_latency();
    memory_per_module();
}
