//! WebAssembly extensions through the real path: the `interlink-cri` binary
//! with an extension folder, the real `interlink` API server, and a plugin
//! served by the real plugin kit that records what it receives and reports
//! Slurm-like states. CRI calls over the host's socket; assertions on what the
//! plugin receives and what kubelet (ContainerStatus) sees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interlink_test_harness::cri::{self as h, EXITED, RUNNING, cri};
use interlink_test_harness::extensions::{install, write_atomic};
use interlink_test_harness::recording::RecordingEnv;
use k8s_openapi::api::core::v1::Pod;

/// The recording environment with an extension folder.
struct Env {
    inner: RecordingEnv,
    ext: PathBuf,
}

impl std::ops::Deref for Env {
    type Target = RecordingEnv;
    fn deref(&self) -> &RecordingEnv {
        &self.inner
    }
}

impl Env {
    /// `prepare` fills the extension folder before the host starts.
    async fn start(prepare: impl FnOnce(&Path)) -> Result<Env> {
        Env::start_with("", prepare).await
    }

    /// Same, with more keys under `Extensions:` (e.g. "  CallTimeout: 200ms\n").
    async fn start_with(extensions: &str, prepare: impl FnOnce(&Path)) -> Result<Env> {
        let mut ext = PathBuf::new();
        let inner = RecordingEnv::start(|d| {
            ext = d.join("extensions");
            std::fs::create_dir_all(&ext).expect("extension folder");
            prepare(&ext);
            format!("Extensions:\n  Dir: {}\n{extensions}", ext.display())
        })
        .await?;
        Ok(Env { inner, ext })
    }
}

/// A change to the extension folder: what, how, the mark expected after it.
type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, Option<&'a str>);

fn container(name: &str, image: &str) -> cri::ContainerConfig {
    let mut c = h::sh(name, "sleep 1");
    c.image = Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    });
    c
}

fn limits(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .map(|l| l.iter().map(|(k, q)| (k.clone(), q.0.clone())).collect())
        .unwrap_or_default()
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_guest_changes_what_the_plugin_receives_and_kubelet_sees() -> Result<()> {
    let env = Env::start(|ext| {
        install(
            ext,
            "resources",
            "10-accelerators.wasm",
            "accelerator_resources",
            None,
        );
        install(
            ext,
            "annotations",
            "10-slurm.wasm",
            "slurm_annotations",
            None,
        );
        install(ext, "state", "10-slurm.wasm", "slurm_state", None);
        install(
            ext,
            "admission",
            "10-registries.wasm",
            "registry_admission",
            Some(r#"{"allowed_registries": ["docker.io"]}"#),
        );
    })
    .await?;
    let mut rt = env.rt().await?;

    // resources + annotations: what the plugin receives
    let sb = env.sandbox(
        "gpu-job",
        &[
            ("interlink.io/partition", "gpu"),
            ("interlink.io/qos", "high"),
        ],
    );
    let mut c = container("main", "busybox");
    c.annotations.insert("custom-resource".into(), "2".into());
    c.cdi_devices = vec![cri::CdiDevice {
        name: "nvidia.com/gpu=0".into(),
    }];
    env.run(&mut rt, &sb, c).await?;
    let pod = env.wait_created("gpu-job").await?;
    let l = limits(&pod);
    assert_eq!(
        l.get("example.com/gpu").map(String::as_str),
        Some("2"),
        "{l:?}"
    );
    assert_eq!(
        l.get("nvidia.com/gpu").map(String::as_str),
        Some("1"),
        "{l:?}"
    );
    assert_eq!(
        annotation(&pod, "slurm-job.vk.io/flags").as_deref(),
        Some("--partition=gpu --qos=high")
    );

    // state: a Slurm TIMEOUT is what kubelet sees as a readable exit
    let sb = env.sandbox("timeout-job", &[]);
    let id = env.run(&mut rt, &sb, container("main", "busybox")).await?;
    let s = h::wait_state(&mut rt, &id, EXITED, Duration::from_secs(20)).await?;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (124, "DeadlineExceeded"),
        "{s:?}"
    );
    assert!(s.message.contains("time limit"), "{s:?}");

    // a queued job: running, the Slurm reason as message
    let sb = env.sandbox("queued-job", &[]);
    let id = env.run(&mut rt, &sb, container("main", "busybox")).await?;
    let s = h::wait_state(&mut rt, &id, RUNNING, Duration::from_secs(20)).await?;
    let end = Instant::now() + Duration::from_secs(10);
    let mut s = s;
    while !s.message.contains("Priority") && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = h::status(&mut rt, &id).await?;
    }
    assert!(
        s.message.contains("queued") && s.message.contains("Priority"),
        "{s:?}"
    );

    // admission: an image from elsewhere never reaches the plugin
    let sb = env.sandbox("miner", &[]);
    let outcome = env
        .run(&mut rt, &sb, container("main", "ghcr.io/evil/miner:latest"))
        .await;
    match outcome {
        Err(e) => {
            let status = e.downcast_ref::<tonic::Status>().context("a gRPC error")?;
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            assert!(
                status.message().contains("not from an allowed registry"),
                "{status:?}"
            );
        }
        Ok(id) => {
            let s = h::wait_state(&mut rt, &id, EXITED, Duration::from_secs(20)).await?;
            assert!(s.message.contains("not from an allowed registry"), "{s:?}");
            assert!(s.message.contains("10-registries.wasm"), "{s:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.recorder.pod("miner").is_none(),
        "a denied pod reached the plugin"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_modules_do_not_hurt_the_host() -> Result<()> {
    // a debug build needs ~20 ms to fill 16 MiB: a bound long enough for the
    // memory bomb to hit the memory limit first
    let env = Env::start_with("  CallTimeout: 200ms\n", |ext| {
        for (i, mode) in ["loop", "bomb", "trap", "huge"].iter().enumerate() {
            install(
                ext,
                "resources",
                &format!("{i}-{mode}.wasm"),
                "hostile",
                Some(&format!(r#"{{"mode": "{mode}", "trigger": "evil"}}"#)),
            );
        }
        install(ext, "annotations", "garbage.wasm", "hostile", None);
        std::fs::write(ext.join("annotations/garbage.wasm"), b"\0asm garbage").unwrap();
        install(ext, "annotations", "missing.wasm", "missing_import", None);
    })
    .await?;
    let mut rt = env.rt().await?;

    let sb = env.sandbox("evil-pod", &[]);
    env.run(&mut rt, &sb, container("main", "busybox")).await?;
    let pod = env.wait_created("evil-pod").await?;
    let l = limits(&pod);
    assert!(
        !l.contains_key("example.com/huge") && !l.contains_key("example.com/mark"),
        "{l:?}"
    );

    // still serving, the same modules work for the next pod
    let sb = env.sandbox("fine-pod", &[]);
    env.run(&mut rt, &sb, container("main", "busybox")).await?;
    let pod = env.wait_created("fine-pod").await?;
    assert_eq!(
        limits(&pod).get("example.com/mark").map(String::as_str),
        Some("1")
    );

    let log = env.host_log();
    for (module, what) in [
        ("resources/0-loop.wasm", "timeout"),
        ("resources/1-bomb.wasm", "memory"),
        ("resources/2-trap.wasm", "trap"),
        ("resources/3-huge.wasm", "invalid"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(module) && l.contains(what)),
            "{module}: no {what} line in the host log"
        );
    }
    for module in ["annotations/garbage.wasm", "annotations/missing.wasm"] {
        assert!(
            log.lines()
                .any(|l| l.contains(module) && l.contains("rejected")),
            "{module}: no rejection in the host log"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_fails_no_call() -> Result<()> {
    let env = Env::start(|ext| {
        install(
            ext,
            "annotations",
            "mark.wasm",
            "hostile",
            Some(r#"{"mark": "v1"}"#),
        );
    })
    .await?;
    let mut rt = env.rt().await?;
    let ext = env.ext.clone();

    // the changes, each with the mark pods must carry once it is in force
    // (None: no mark annotation at all)
    let steps: Vec<Step> = vec![
        (
            "configuration changed",
            Box::new(|| write_atomic(&ext.join("annotations/mark.json"), br#"{"mark": "v2"}"#)),
            Some("v2"),
        ),
        (
            "broken version dropped over it",
            Box::new(|| write_atomic(&ext.join("annotations/mark.wasm"), b"not wasm at all")),
            Some("v2"),
        ),
        (
            "replaced by a good version",
            Box::new(|| {
                install(
                    &ext,
                    "annotations",
                    "mark.wasm",
                    "hostile",
                    Some(r#"{"mark": "v3"}"#),
                );
            }),
            Some("v3"),
        ),
        (
            "a second module added after it",
            Box::new(|| {
                install(
                    &ext,
                    "annotations",
                    "zz-mark.wasm",
                    "hostile",
                    Some(r#"{"mark": "v4"}"#),
                );
            }),
            Some("v4"),
        ),
        (
            "a trapping module dropped in",
            Box::new(|| {
                install(
                    &ext,
                    "annotations",
                    "zzz-trap.wasm",
                    "hostile",
                    Some(r#"{"mode": "trap"}"#),
                );
            }),
            Some("v4"),
        ),
        (
            "both removed",
            Box::new(|| {
                for f in ["mark.wasm", "zz-mark.wasm", "zzz-trap.wasm"] {
                    let _ = std::fs::remove_file(ext.join("annotations").join(f));
                }
            }),
            None,
        ),
    ];

    let mut n = 0;
    let mut calls = 0;
    for (what, change, want) in steps {
        let written = Instant::now();
        change();
        // pods started more than 1 s after the write must show the new behaviour;
        // every CRI call must succeed meanwhile
        let mut seen_after = None;
        loop {
            n += 1;
            let name = format!("load-{n}");
            let started = Instant::now();
            let sb = env.sandbox(&name, &[]);
            env.run(&mut rt, &sb, container("main", "busybox"))
                .await
                .with_context(|| format!("CRI call failed during '{what}'"))?;
            calls += 3;
            let pod = env.wait_created(&name).await?;
            let mark = annotation(&pod, "hostile.example/mark");
            if want.is_some() {
                // a mark module is in force throughout: old or new, never none
                assert!(
                    mark.is_some(),
                    "'{what}': pod {name} got no module's answer"
                );
            }
            if mark.as_deref() == want {
                seen_after.get_or_insert(started.duration_since(written));
            }
            if started.duration_since(written) > Duration::from_millis(1000) {
                assert_eq!(
                    mark.as_deref(),
                    want,
                    "'{what}': pod {name} started 1 s after the change"
                );
                break;
            }
        }
        // (the annotation step runs when the pod is sent, after the batch window)
        println!(
            "{what}: first pod with the new behaviour started {:?} after the write",
            seen_after.unwrap_or_default()
        );
    }
    println!("{calls} CRI calls, none failed");
    let log = env.host_log();
    assert!(
        log.contains("annotations/mark.wasm") && log.contains("previous version keeps serving")
    );
    assert!(
        log.lines()
            .any(|l| l.contains("annotations/zzz-trap.wasm") && l.contains("rejected"))
    );
    Ok(())
}
