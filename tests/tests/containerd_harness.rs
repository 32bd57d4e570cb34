//! The containerd harness (tests/src/containerd.rs) against containerd itself,
//! over CRI: a pod, a busybox container that prints and exits, its CRI log, and
//! a containerd restart the pod survives. Skips when scripts/containerd-setup.sh
//! has not run (fails instead with INTERLINK_REQUIRE_BACKENDS=1).

use std::time::{Duration, Instant};

use interlink_test_harness::containerd::Containerd;
use interlink_test_harness::cri::*;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_containerd_and_survives_its_restart() -> anyhow::Result<()> {
    let Some(mut ctrd) = Containerd::start()? else {
        return Ok(());
    };
    let logs = tempfile::tempdir()?;
    let mut rt = ctrd.rt().await?;

    let t = Instant::now();
    let sb = sandbox_config("ctrd-hello", logs.path());
    std::fs::create_dir_all(&sb.log_directory)?; // kubelet makes the pod's log directory
    let pod = run_pod(&mut rt, &sb).await?;
    eprintln!("RunPodSandbox: {:?}", t.elapsed());

    // a container that prints and exits, with the image named as kubelet would
    let t = Instant::now();
    let id = create(&mut rt, &pod, &sb, sh("hello", "echo hello; sleep 1")).await?;
    start(&mut rt, &id).await?;
    eprintln!("CreateContainer + StartContainer: {:?}", t.elapsed());
    let st = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(st.exit_code, 0, "{st:?}");
    assert_eq!(
        st.image.as_ref().map(|i| i.image.as_str()),
        Some(ctrd.busybox_image()),
        "{st:?}"
    );
    let content = wait_file(&log_file(&sb, "hello"), "hello", T).await?;
    assert_eq!(log_lines(&content)?, vec!["hello"], "{content}");
    let listed = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    assert!(listed.iter().any(|c| c.id == id), "{listed:?}");

    // a second container keeps running across the restart, under its shim
    let long = create(&mut rt, &pod, &sb, sh("long", "sleep 300")).await?;
    start(&mut rt, &long).await?;
    wait_state(&mut rt, &long, RUNNING, T).await?;

    let old = ctrd.pid();
    ctrd.restart()?;
    assert_ne!(ctrd.pid(), old);
    let mut rt = ctrd.rt().await?;
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let p = pods.iter().find(|p| p.id == pod);
    assert_eq!(
        p.map(|p| p.state),
        Some(cri::PodSandboxState::SandboxReady as i32),
        "{pods:?}"
    );
    assert_eq!(status(&mut rt, &long).await?.state, RUNNING);
    assert_eq!(status(&mut rt, &id).await?.exit_code, 0);

    let t = Instant::now();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    let stop = t.elapsed();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    eprintln!(
        "StopPodSandbox: {stop:?}, RemovePodSandbox: {:?}",
        t.elapsed() - stop
    );
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    Ok(())
}
