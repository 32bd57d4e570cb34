//! The WebAssembly extension system at library level: the real guest modules
//! (guests/, built for wasm32-wasip2 by scripts/build-guests.sh) loaded from a
//! real folder by `interlink_cri::extensions`, called through the `Hooks` seam.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interlink_cri::extensions::{ExtensionSettings, Extensions, Hook};
use interlink_cri::hooks::{
    AnnotationInput, CriState, Device, Hooks, RemoteState, ResourceInput, ResourceRequirements,
    StateDecision, StateInput,
};
use interlink_test_harness::extensions::{guest, install, write_atomic};
use interlink_test_harness::wait_until;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext};

// ---------------------------------------------------------------- log capture

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

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
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

/// A change to the extension folder: what, how, the mark expected after it.
type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, Option<&'a str>);

// ---------------------------------------------------------------- fixtures

fn start(dir: &Path) -> Arc<Extensions> {
    capture_logs();
    Extensions::start(ExtensionSettings {
        dir: dir.to_path_buf(),
        ..Default::default()
    })
    .expect("extensions start")
}

/// With a call bound long enough for a memory bomb to reach the memory bound
/// first in a debug build (filling 16 MiB takes ~20 ms there).
fn start_patient(dir: &Path) -> Arc<Extensions> {
    capture_logs();
    Extensions::start(ExtensionSettings {
        dir: dir.to_path_buf(),
        call_timeout: Duration::from_millis(150),
        ..Default::default()
    })
    .expect("extensions start")
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

fn state_input(
    pod: &str,
    remote: RemoteState,
    reason: &str,
    message: &str,
    code: i32,
) -> StateInput {
    let default = match remote {
        RemoteState::Terminated => StateDecision {
            state: CriState::Exited,
            exit_code: code,
            reason: "Error".into(),
            message: message.into(),
        },
        _ => StateDecision {
            state: CriState::Running,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        },
    };
    StateInput {
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        container_name: "main".into(),
        job_id: "4242".into(),
        remote,
        remote_reason: reason.into(),
        remote_message: message.into(),
        remote_exit_code: code,
        default,
    }
}

fn pod(name: &str, image: &str, privileged: bool) -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                security_context: privileged.then(|| SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn names(ext: &Extensions, hook: Hook) -> Vec<String> {
    ext.modules()
        .into_iter()
        .filter(|m| m.hook == hook)
        .map(|m| m.name)
        .collect()
}

// ---------------------------------------------------------------- the guests

#[test]
fn accelerator_mapper_adds_extended_resources() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "resources",
        "10-accelerators.wasm",
        "accelerator_resources",
        None,
    );
    let ext = start(dir.path());
    assert_eq!(
        names(&ext, Hook::Resources),
        ["10-accelerators.wasm"],
        "{:?}",
        ext.rejections()
    );

    // the seeds' site annotation
    let mut input = resource_input("annotated");
    input
        .annotations
        .insert("custom-resource".into(), "2".into());
    let out = ext.map_resources(&input);
    assert_eq!(
        out.limits.get("example.com/gpu").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        out.requests.get("example.com/gpu").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        out.limits.get("memory").map(String::as_str),
        Some("256Mi"),
        "default kept"
    );

    // CDI GPU devices and device nodes
    let mut input = resource_input("cdi");
    input.cdi_devices = vec![
        "nvidia.com/gpu=0".into(),
        "nvidia.com/gpu=1".into(),
        "amd.com/gpu=all".into(),
    ];
    let out = ext.map_resources(&input);
    assert_eq!(
        out.limits.get("nvidia.com/gpu").map(String::as_str),
        Some("2")
    );
    assert_eq!(out.limits.get("amd.com/gpu").map(String::as_str), Some("1"));
    let mut input = resource_input("nodes");
    input.devices = vec![Device {
        container_path: "/dev/nvidia0".into(),
        host_path: "/dev/nvidia0".into(),
        permissions: "rwm".into(),
    }];
    assert_eq!(
        ext.map_resources(&input)
            .limits
            .get("nvidia.com/gpu")
            .map(String::as_str),
        Some("1")
    );

    // nothing to map: the default unchanged
    assert_eq!(
        ext.map_resources(&resource_input("plain")),
        default_requirements()
    );

    // a bad annotation: the module answers an error, the host keeps the default
    let mut input = resource_input("bad-annotation");
    input
        .annotations
        .insert("custom-resource".into(), "lots".into());
    assert_eq!(ext.map_resources(&input), default_requirements());
    assert!(
        !log_lines(&["resources/10-accelerators.wasm", "not a quantity"]).is_empty(),
        "the module's error is logged with its name"
    );
}

#[test]
fn annotation_handler_writes_slurm_flags() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "annotations",
        "slurm.wasm",
        "slurm_annotations",
        None,
    );
    let ext = start(dir.path());

    let mut input = AnnotationInput {
        pod_name: "job".into(),
        pod_namespace: "hpc".into(),
        ..Default::default()
    };
    input
        .pod_annotations
        .insert("interlink.io/plugin".into(), "slurm".into());
    input
        .pod_annotations
        .insert("interlink.io/partition".into(), "gpu".into());
    input
        .pod_annotations
        .insert("interlink.io/qos".into(), "high".into());
    input
        .pod_annotations
        .insert("slurm-job.vk.io/flags".into(), "--mem=4G -p debug".into());
    let changes = ext.handle_annotations(&input);
    assert_eq!(
        changes
            .set_annotations
            .get("slurm-job.vk.io/flags")
            .map(String::as_str),
        Some("--mem=4G --partition=gpu --qos=high"),
        "existing flags kept, the old partition replaced"
    );

    // another plugin: untouched
    input
        .pod_annotations
        .insert("interlink.io/plugin".into(), "docker".into());
    assert!(ext.handle_annotations(&input).set_annotations.is_empty());

    // a container annotation counts too; an unsafe value is refused
    let mut input = AnnotationInput::default();
    input.container_annotations.insert(
        "main".into(),
        BTreeMap::from([("interlink.io/partition".to_string(), "cpu".to_string())]),
    );
    assert_eq!(
        ext.handle_annotations(&input)
            .set_annotations
            .get("slurm-job.vk.io/flags")
            .map(String::as_str),
        Some("--partition=cpu")
    );
    let mut input = AnnotationInput::default();
    input
        .pod_annotations
        .insert("interlink.io/qos".into(), "high; rm -rf /".into());
    assert!(ext.handle_annotations(&input).set_annotations.is_empty());
}

#[test]
fn state_mapper_makes_slurm_states_readable() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "state", "slurm.wasm", "slurm_state", None);
    let ext = start(dir.path());

    let queued = ext.map_state(&state_input(
        "q",
        RemoteState::Waiting,
        "PENDING",
        "Resources",
        0,
    ));
    assert_eq!(queued.state, CriState::Running);
    assert_eq!(queued.reason, "SlurmQueued");
    assert!(
        queued.message.contains("4242") && queued.message.contains("Resources"),
        "{queued:?}"
    );

    for (slurm, reason, code) in [
        ("TIMEOUT", "DeadlineExceeded", 124),
        ("PREEMPTED", "Preempted", 143),
        ("NODE_FAIL", "NodeFailure", 135),
        ("OUT_OF_MEMORY", "OOMKilled", 137),
    ] {
        let d = ext.map_state(&state_input("t", RemoteState::Terminated, slurm, "", 1));
        assert_eq!(d.state, CriState::Exited, "{slurm}");
        assert_eq!(d.reason, reason, "{slurm}");
        assert_eq!(d.exit_code, code, "{slurm}");
        assert!(
            d.message.contains(slurm) && d.message.contains("4242"),
            "{d:?}"
        );
    }
    // found in the message as well
    let d = ext.map_state(&state_input(
        "m",
        RemoteState::Terminated,
        "Error",
        "job state: TIMEOUT",
        1,
    ));
    assert_eq!(d.reason, "DeadlineExceeded");

    // an ordinary completion is left as the host decided
    let input = state_input("ok", RemoteState::Terminated, "Completed", "", 0);
    assert_eq!(ext.map_state(&input), input.default);
    let input = state_input("run", RemoteState::Running, "", "", 0);
    assert_eq!(ext.map_state(&input), input.default);
}

#[test]
fn admission_policy_follows_its_own_config() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "admission",
        "registries.wasm",
        "registry_admission",
        Some(r#"{"allowed_registries": ["docker.io", "ghcr.io/good-org"]}"#),
    );
    let ext = start(dir.path());

    assert_eq!(ext.admit(&pod("a", "busybox:1.36", false)), Ok(()));
    assert_eq!(
        ext.admit(&pod("b", "ghcr.io/good-org/app:1", false)),
        Ok(())
    );
    let denied = ext
        .admit(&pod("c", "ghcr.io/evil-org/miner:latest", false))
        .unwrap_err();
    assert!(
        denied.contains("ghcr.io/evil-org/miner") && denied.contains("registries.wasm"),
        "{denied}"
    );
    let denied = ext.admit(&pod("d", "busybox", true)).unwrap_err();
    assert!(denied.contains("privileged"), "{denied}");

    // the configuration changes: the module reloads with it
    let generation = ext.generation();
    write_atomic(
        &dir.path().join("admission/registries.json"),
        br#"{"allowed_registries": ["quay.io"], "allow_privileged": true}"#,
    );
    wait_until(Duration::from_secs(5), "the new configuration", || {
        ext.generation() > generation
    })
    .unwrap();
    assert!(ext.admit(&pod("e", "busybox", false)).is_err());
    assert_eq!(ext.admit(&pod("f", "quay.io/org/app", true)), Ok(()));

    // a broken configuration: the policy denies everything, saying why
    write_atomic(&dir.path().join("admission/registries.json"), b"{not json");
    wait_until(Duration::from_secs(5), "the broken configuration", || {
        ext.admit(&pod("g", "quay.io/org/app", false)).is_err()
    })
    .unwrap();
    let denied = ext.admit(&pod("g", "quay.io/org/app", false)).unwrap_err();
    assert!(denied.contains("configuration is invalid"), "{denied}");
}

#[test]
fn modules_of_one_hook_chain_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "resources",
        "20-mark.wasm",
        "hostile",
        Some(r#"{"mark": "2"}"#),
    );
    install(
        dir.path(),
        "resources",
        "10-accelerators.wasm",
        "accelerator_resources",
        None,
    );
    install(
        dir.path(),
        "resources",
        "30-mark.wasm",
        "hostile",
        Some(r#"{"mark": "3"}"#),
    );
    install(
        dir.path(),
        "annotations",
        "10-slurm.wasm",
        "slurm_annotations",
        None,
    );
    install(
        dir.path(),
        "annotations",
        "20-mark.wasm",
        "hostile",
        Some(r#"{"mark": "m"}"#),
    );
    let ext = start(dir.path());
    assert_eq!(
        names(&ext, Hook::Resources),
        ["10-accelerators.wasm", "20-mark.wasm", "30-mark.wasm"]
    );

    let mut input = resource_input("chain");
    input.cdi_devices = vec!["nvidia.com/gpu=0".into()];
    let out = ext.map_resources(&input);
    assert_eq!(
        out.limits.get("nvidia.com/gpu").map(String::as_str),
        Some("1"),
        "first stage kept"
    );
    assert_eq!(
        out.limits.get("example.com/mark").map(String::as_str),
        Some("3"),
        "last stage wins"
    );

    let mut input = AnnotationInput::default();
    input
        .pod_annotations
        .insert("interlink.io/qos".into(), "low".into());
    let changes = ext.handle_annotations(&input);
    assert_eq!(
        changes
            .set_annotations
            .get("slurm-job.vk.io/flags")
            .map(String::as_str),
        Some("--qos=low")
    );
    assert_eq!(
        changes
            .set_annotations
            .get("hostile.example/mark")
            .map(String::as_str),
        Some("m")
    );
}

// ---------------------------------------------------------------- hostile modules

#[test]
fn hostile_modules_are_contained_at_call_time() {
    let dir = tempfile::tempdir().unwrap();
    // each misbehaves only for pods named evil-*, so each passes its smoke call
    for (i, mode) in ["loop", "bomb", "trap", "huge", "sleep"].iter().enumerate() {
        install(
            dir.path(),
            "resources",
            &format!("{mode}.wasm"),
            "hostile",
            Some(&format!(
                r#"{{"mode": "{mode}", "trigger": "evil", "mark": "{}"}}"#,
                i + 1
            )),
        );
    }
    install(
        dir.path(),
        "state",
        "print.wasm",
        "hostile",
        Some(r#"{"mode": "print", "mark": "printed"}"#),
    );
    let ext = start_patient(dir.path());
    assert_eq!(
        names(&ext, Hook::Resources).len(),
        5,
        "{:?}",
        ext.rejections()
    );

    let started = Instant::now();
    let out = ext.map_resources(&resource_input("evil-1"));
    let took = started.elapsed();
    assert_eq!(
        out,
        default_requirements(),
        "every stage failed: the default stands"
    );
    println!("five hostile stages took {took:?}");

    for (mode, kind) in [
        ("loop", "timeout"),
        ("bomb", "memory"),
        ("trap", "trap"),
        ("huge", "invalid"),
        ("sleep", "trap"),
    ] {
        let module = format!("resources/{mode}.wasm");
        let lines = log_lines(&[&module, "evil-1", &format!("kind=\"{kind}\"")]);
        assert!(!lines.is_empty(), "{module}: no {kind} log line");
    }

    // the instances are recreated: the same modules serve the next pod
    let out = ext.map_resources(&resource_input("good-1"));
    // (applied in name order: bomb huge loop sleep trap; trap.wasm marks "3")
    assert_eq!(
        out.limits.get("example.com/mark").map(String::as_str),
        Some("3")
    );
    assert_eq!(out.limits.get("memory").map(String::as_str), Some("256Mi"));

    // stdout/stderr of a module go to the log, the call succeeds
    let d = ext.map_state(&state_input("p", RemoteState::Running, "", "", 0));
    assert_eq!(d.message, "printed");
    assert!(!log_lines(&["state/print.wasm", "writing to stderr"]).is_empty());
}

#[test]
fn broken_modules_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("garbage.wasm"),
        b"\0asm\x0d\0\x01\0this is not a component",
    )
    .unwrap();
    std::fs::write(res.join("empty.wasm"), b"").unwrap();
    install(
        dir.path(),
        "resources",
        "missing-import.wasm",
        "missing_import",
        None,
    );
    install(
        dir.path(),
        "resources",
        "wrong-world.wasm",
        "slurm_state",
        None,
    );
    install(
        dir.path(),
        "resources",
        "always-loops.wasm",
        "hostile",
        Some(r#"{"mode": "loop"}"#),
    );
    install(
        dir.path(),
        "resources",
        "always-bombs.wasm",
        "hostile",
        Some(r#"{"mode": "bomb"}"#),
    );
    install(
        dir.path(),
        "resources",
        "ok.wasm",
        "accelerator_resources",
        None,
    );
    let ext = start_patient(dir.path());

    assert_eq!(names(&ext, Hook::Resources), ["ok.wasm"]);
    let rejections = ext.rejections();
    let reason = |name: &str| {
        rejections
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.reason.clone())
            .unwrap_or_else(|| panic!("{name} not rejected: {rejections:?}"))
    };
    assert!(
        reason("garbage.wasm").contains("does not compile"),
        "{}",
        reason("garbage.wasm")
    );
    assert!(reason("empty.wasm").contains("does not compile"));
    assert!(
        reason("missing-import.wasm").contains("test:missing/secrets"),
        "{}",
        reason("missing-import.wasm")
    );
    assert!(
        reason("wrong-world.wasm").contains("resource-mapping"),
        "{}",
        reason("wrong-world.wasm")
    );
    assert!(
        reason("always-loops.wasm").contains("timed out"),
        "{}",
        reason("always-loops.wasm")
    );
    assert!(
        reason("always-bombs.wasm").contains("memory"),
        "{}",
        reason("always-bombs.wasm")
    );
    for name in ["garbage.wasm", "missing-import.wasm", "always-loops.wasm"] {
        assert!(
            !log_lines(&[&format!("resources/{name}"), "rejected"]).is_empty(),
            "{name}: rejection not logged"
        );
    }
    // the good module works regardless
    let mut input = resource_input("x");
    input.cdi_devices = vec!["nvidia.com/gpu=0".into()];
    assert_eq!(
        ext.map_resources(&input)
            .limits
            .get("nvidia.com/gpu")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn a_broken_new_version_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(
        dir.path(),
        "resources",
        "gpu.wasm",
        "accelerator_resources",
        None,
    );
    let ext = start(dir.path());
    let generation = ext.generation();
    let mut input = resource_input("x");
    input.cdi_devices = vec!["nvidia.com/gpu=0".into()];
    assert_eq!(
        ext.map_resources(&input)
            .limits
            .get("nvidia.com/gpu")
            .map(String::as_str),
        Some("1")
    );

    write_atomic(&path, b"garbage");
    wait_until(Duration::from_secs(5), "the rejection", || {
        ext.rejections().iter().any(|r| r.name == "gpu.wasm")
    })
    .unwrap();
    assert_eq!(ext.generation(), generation, "nothing swapped");
    assert_eq!(names(&ext, Hook::Resources), ["gpu.wasm"]);
    assert_eq!(
        ext.map_resources(&input)
            .limits
            .get("nvidia.com/gpu")
            .map(String::as_str),
        Some("1")
    );
    assert!(!log_lines(&["resources/gpu.wasm", "previous version keeps serving"]).is_empty());
}

#[test]
fn admission_failures_are_fail_closed_by_default_or_open_when_set() {
    for fail_open in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        install(
            dir.path(),
            "admission",
            "flaky.wasm",
            "hostile",
            Some(r#"{"mode": "trap", "trigger": "evil"}"#),
        );
        capture_logs();
        let ext = Extensions::start(ExtensionSettings {
            dir: dir.path().to_path_buf(),
            admission_fail_open: fail_open,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ext.admit(&pod("good", "busybox", false)), Ok(()));
        let verdict = ext.admit(&pod("evil-pod", "busybox", false));
        if fail_open {
            assert_eq!(verdict, Ok(()));
        } else {
            let reason = verdict.unwrap_err();
            assert!(
                reason.contains("flaky.wasm") && reason.contains("fail-closed"),
                "{reason}"
            );
        }
    }
}

#[test]
fn no_modules_means_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ext = start(dir.path());
    for hook in ["resources", "annotations", "state", "admission"] {
        assert!(dir.path().join(hook).is_dir(), "{hook}/ created");
    }
    assert_eq!(
        ext.map_resources(&resource_input("x")),
        default_requirements()
    );
    assert!(
        ext.handle_annotations(&AnnotationInput::default())
            .set_annotations
            .is_empty()
    );
    let input = state_input("x", RemoteState::Running, "", "", 0);
    assert_eq!(ext.map_state(&input), input.default);
    assert_eq!(ext.admit(&pod("x", "anything", true)), Ok(()));
    let _ = guest("hostile");
}

#[test]
fn metrics_count_calls_errors_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "state",
        "metered.wasm",
        "hostile",
        Some(r#"{"mode": "trap", "trigger": "evil"}"#),
    );
    std::fs::write(dir.path().join("state/metered-broken.wasm"), b"nope").unwrap();
    // counts, not timing: a call bound that a loaded debug build cannot turn
    // the trap into a timeout with (seen once in CI at the default 10 ms)
    let ext = start_patient(dir.path());
    for pod in ["a", "b", "evil"] {
        ext.map_state(&state_input(pod, RemoteState::Running, "", "", 0));
    }
    let mut registry = prometheus_client::registry::Registry::with_prefix("interlink_cri");
    interlink_cri::extensions::register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    // 3 calls + the smoke call
    assert!(
        line(r#"interlink_cri_extension_calls_total{hook="state",module="metered.wasm"}"#)
            .ends_with(" 4")
    );
    assert!(line(r#"interlink_cri_extension_errors_total{hook="state",module="metered.wasm",kind="trap"}"#).ends_with(" 1"));
    assert!(
        line(
            r#"interlink_cri_extension_rejections_total{hook="state",module="metered-broken.wasm"}"#
        )
        .ends_with(" 1")
    );
    line(
        r#"interlink_cri_extension_call_duration_seconds_count{hook="state",module="metered.wasm"}"#,
    );
}

// ---------------------------------------------------------------- hot reload

#[test]
fn hot_reload_under_load_fails_no_call() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("resources");
    install(
        dir.path(),
        "resources",
        "mark.wasm",
        "hostile",
        Some(r#"{"mark": "1"}"#),
    );
    let ext = start(dir.path());

    // callers: every call must carry a mark while a mark module is in force
    let stop = Arc::new(AtomicBool::new(false));
    let expect_mark = Arc::new(AtomicBool::new(true));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (ext, stop, expect, calls, failed) = (
                ext.clone(),
                stop.clone(),
                expect_mark.clone(),
                calls.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let must = expect.load(Ordering::SeqCst);
                    let out = ext.map_resources(&resource_input("load"));
                    if must && !out.limits.contains_key("example.com/mark") {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    // busy callers, but leaving the reload thread some CPU on a
                    // two-core machine
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        })
        .collect();

    let mark = |ext: &Extensions| {
        ext.map_resources(&resource_input("probe"))
            .limits
            .get("example.com/mark")
            .cloned()
    };
    let steps: Vec<Step> = vec![
        (
            "configuration changed",
            Box::new(|| write_atomic(&res.join("mark.json"), br#"{"mark": "2"}"#)),
            Some("2"),
        ),
        (
            "broken version dropped over it",
            Box::new(|| write_atomic(&res.join("mark.wasm"), b"\0asm\x0d\0\x01\0garbage")),
            Some("2"),
        ),
        (
            "replaced by a good version",
            Box::new(|| {
                install(
                    dir.path(),
                    "resources",
                    "mark.wasm",
                    "hostile",
                    Some(r#"{"mark": "3"}"#),
                );
            }),
            Some("3"),
        ),
        (
            "a module added after it",
            Box::new(|| {
                install(
                    dir.path(),
                    "resources",
                    "zz-mark.wasm",
                    "hostile",
                    Some(r#"{"mark": "4"}"#),
                );
            }),
            Some("4"),
        ),
        (
            "a trapping module added",
            Box::new(|| {
                install(
                    dir.path(),
                    "resources",
                    "zzz-trap.wasm",
                    "hostile",
                    Some(r#"{"mode": "trap"}"#),
                );
            }),
            Some("4"),
        ),
    ];
    for (what, change, want) in steps {
        let written = Instant::now();
        change();
        wait_until(Duration::from_secs(5), what, || {
            mark(&ext).as_deref() == want
        })
        .unwrap();
        // how long it took is printed, not asserted (a loaded CI machine is no
        // clock): the wait above bounds it
        println!("{what}: new behaviour after {:?}", written.elapsed());
        // and it stays so (a rejected version must not swap anything)
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(mark(&ext).as_deref(), want, "{what}");
    }
    // removal: no mark any more
    expect_mark.store(false, Ordering::SeqCst);
    let written = Instant::now();
    for f in ["mark.wasm", "zz-mark.wasm", "zzz-trap.wasm"] {
        std::fs::remove_file(res.join(f)).unwrap();
    }
    wait_until(Duration::from_secs(5), "removal", || mark(&ext).is_none()).unwrap();
    println!("removal: no mark after {:?}", written.elapsed());

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let (calls, failed) = (
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!("{calls} calls during the reloads, {failed} failed");
    assert!(calls > 100, "the load ran ({calls} calls)");
    assert_eq!(
        failed, 0,
        "calls that found no module while one was in force"
    );
    assert!(
        ext.rejections().is_empty(),
        "rejections of removed files are forgotten"
    );
}
