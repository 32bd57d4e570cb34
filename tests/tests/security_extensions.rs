//! WebAssembly extension modules and what they hold outside their memory: host
//! resources (pollables, streams) are bounded per instance and per call, and a
//! module importing the withheld `wasi:sockets` loads but traps when it reaches
//! for the network. The real guest modules (guests/, built for wasm32-wasip2 by
//! scripts/build-guests.sh), loaded by `interlink_cri::extensions`.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use interlink_cri::extensions::{ExtensionSettings, Extensions, Hook};
use interlink_cri::hooks::{Hooks, ResourceInput, ResourceRequirements};
use interlink_test_harness::extensions::install;

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn start(dir: &Path) -> Arc<Extensions> {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
    Extensions::start(ExtensionSettings {
        dir: dir.to_path_buf(),
        ..Default::default()
    })
    .expect("extensions start")
}

/// Log lines mentioning every one of `words`.
fn log_lines(words: &[&str]) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

fn default_requirements() -> ResourceRequirements {
    let mut r = ResourceRequirements::default();
    r.requests.insert("cpu".into(), "250m".into());
    r.limits.insert("cpu".into(), "1".into());
    r.limits.insert("memory".into(), "256Mi".into());
    r
}

fn resource_input(pod: &str) -> ResourceInput {
    ResourceInput {
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        container_name: "main".into(),
        default: default_requirements(),
        ..Default::default()
    }
}

fn loaded(ext: &Extensions) -> Vec<String> {
    ext.modules()
        .into_iter()
        .filter(|m| m.hook == Hook::Resources)
        .map(|m| m.name)
        .collect()
}

/// Resident memory of this process (the host side), for the record.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mark(out: &ResourceRequirements) -> Option<&str> {
    out.limits.get("example.com/mark").map(String::as_str)
}

#[test]
fn a_module_leaking_host_resources_traps_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "resources",
        "leak.wasm",
        "hostile",
        Some(r#"{"mode": "leak", "trigger": "evil", "mark": "7"}"#),
    );
    let ext = start(dir.path());
    assert_eq!(loaded(&ext), vec!["leak.wasm"], "{:?}", ext.rejections());

    // without a bound the call would fill the host's memory with pollables
    let before = rss_kib();
    let out = ext.map_resources(&resource_input("evil-1"));
    println!(
        "host RSS around the leaking call: {before} KiB -> {} KiB",
        rss_kib()
    );
    assert_eq!(out, default_requirements(), "the failed stage is skipped");
    let lines = log_lines(&["resources/leak.wasm", "evil-1", "kind=\"memory\""]);
    assert!(
        lines.iter().any(|l| l.contains("host resources")),
        "no clear error: {lines:?}"
    );
    // a fresh instance serves the next pod
    assert_eq!(
        mark(&ext.map_resources(&resource_input("good-1"))),
        Some("7")
    );
}

#[test]
fn host_resources_are_bounded_per_call_not_per_module_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    // leaks 100 pollables per call, then answers: 30 calls leak 3,000, more
    // than one instance may hold, so only a per-call bound keeps it serving
    install(
        dir.path(),
        "resources",
        "drip.wasm",
        "hostile",
        Some(r#"{"mode": "leak-some", "trigger": "drip", "mark": "5"}"#),
    );
    let ext = start(dir.path());
    assert_eq!(loaded(&ext), vec!["drip.wasm"], "{:?}", ext.rejections());
    let before = rss_kib();
    for i in 0..30 {
        let out = ext.map_resources(&resource_input(&format!("drip-{i}")));
        assert_eq!(mark(&out), Some("5"), "call {i}: {out:?}");
    }
    println!(
        "host RSS around 30 calls leaking 100 pollables each: {before} KiB -> {} KiB",
        rss_kib()
    );
    assert!(
        !log_lines(&["resources/drip.wasm", "too many host resources"]).is_empty(),
        "the leaking instance was reused"
    );
}

#[test]
fn a_module_importing_sockets_loads_and_traps_when_it_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "resources", "net.wasm", "socket_import", None);
    let ext = start(dir.path());
    assert_eq!(loaded(&ext), vec!["net.wasm"], "{:?}", ext.rejections());
    assert_eq!(
        mark(&ext.map_resources(&resource_input("plain-1"))),
        Some("1")
    );
    let out = ext.map_resources(&resource_input("net-1"));
    assert_eq!(out, default_requirements(), "the call must not succeed");
    let lines = log_lines(&["resources/net.wasm", "net-1", "kind=\"trap\""]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wasi:sockets") && l.contains("not available")),
        "{lines:?}"
    );
}
