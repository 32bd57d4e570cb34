//! The host killed with SIGKILL mid-lifecycle and restarted, and the API server
//! going away and coming back: nothing is created twice, nothing is lost.

use std::time::{Duration, Instant};

use interlink_test_harness::cri::*;

const T: Duration = Duration::from_secs(40);

/// A container that records each run in a host directory (mount rewritten by the
/// local plugin), so a second `/create` would show as a second line.
fn counted(env: &CriEnv, name: &str, script: &str) -> cri::ContainerConfig {
    let dir = env.path(&format!("marks-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = sh(name, &format!("echo run >> /marks/runs; {script}"));
    c.mounts.push(cri::Mount {
        container_path: "/marks".into(),
        host_path: dir.display().to_string(),
        ..Default::default()
    });
    c
}

fn runs(env: &CriEnv, name: &str) -> usize {
    std::fs::read_to_string(env.path(&format!("marks-{name}/runs")))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_while_a_pod_runs_resumes_it() -> anyhow::Result<()> {
    let mut env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("survivor");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        counted(&env, "work", "echo first; sleep 2; echo second; exit 5"),
    )
    .await?;
    start(&mut rt, &id).await?;
    let file = log_file(&sb, "work");
    wait_file(&file, "first", T).await?;

    env.kill_host();
    env.start_host()?;
    let (mut rt, _) = env.connect().await?;
    // the state came back from disk, answered at once
    let s = status(&mut rt, &id).await?;
    assert_ne!(s.state, CREATED, "{s:?}");
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 5, "{s:?}");
    let content = wait_file(&file, "second", T).await?;
    let lines = log_lines(&content)?;
    assert_eq!(
        lines.iter().filter(|l| *l == "first").count(),
        1,
        "log line written twice: {lines:?}"
    );
    assert_eq!(runs(&env, "work"), 1, "the remote pod was created twice");
    let sandboxes = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    assert_eq!(sandboxes.len(), 1);

    stop_and_remove_pod(&mut rt, &pod).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_inside_the_batch_window_sends_the_batch_once() -> anyhow::Result<()> {
    let mut env = CriEnv::start("BatchWindow: 2s\n")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("batch");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, counted(&env, "late", "echo made it")).await?;
    start(&mut rt, &id).await?;
    // killed before the window closed: nothing was sent yet
    env.kill_host();
    assert_eq!(runs(&env, "late"), 0);
    env.start_host()?;
    let (mut rt, _) = env.connect().await?;
    assert_eq!(status(&mut rt, &id).await?.state, RUNNING);
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    wait_file(&log_file(&sb, "late"), "made it", T).await?;
    assert_eq!(runs(&env, "late"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_after_stop_still_deletes_the_remote_pod() -> anyhow::Result<()> {
    let mut env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("orphan");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        counted(&env, "long", "echo up; sleep 60"),
    )
    .await?;
    start(&mut rt, &id).await?;
    wait_file(&log_file(&sb, "long"), "up", T).await?;
    // the API server is away while the pod is stopped: the deletion must survive a crash
    env.stop_api();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    env.kill_host();
    env.start_api()?;
    env.start_host()?;
    // the remote pod is deleted after all: its process gets TERM and the host forgets it
    let state = env.path("host/state/remote-pods");
    let end = Instant::now() + T;
    while std::fs::read_dir(&state)?.count() > 0 {
        assert!(
            Instant::now() < end,
            "remote pod record still there: {:?}\n{}",
            std::fs::read_dir(&state)?.collect::<Vec<_>>(),
            env.host_output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_and_back() -> anyhow::Result<()> {
    let mut env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let ready = |s: &cri::StatusResponse, t: &str| {
        s.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == t)
            .unwrap()
            .clone()
    };
    let s = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert!(ready(&s, "RuntimeReady").status, "{s:?}");
    assert!(ready(&s, "NetworkReady").status);

    env.stop_api();
    // RuntimeReady turns false with a reason after PingTimeout (2s here)
    let end = Instant::now() + T;
    loop {
        let s = rt
            .status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner();
        let c = ready(&s, "RuntimeReady");
        if !c.status {
            assert_eq!(c.reason, "InterLinkUnreachable");
            assert!(c.message.contains("pinglink"), "{c:?}");
            break;
        }
        assert!(Instant::now() < end, "RuntimeReady stayed true");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // CRI calls keep working while the server is away; the start is queued
    let sb = env.pod("patient");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, counted(&env, "queued", "echo finally")).await?;
    let t0 = Instant::now();
    start(&mut rt, &id).await?;
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(status(&mut rt, &id).await?.state, RUNNING);
    tokio::time::sleep(Duration::from_secs(1)).await;

    env.start_api()?;
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    wait_file(&log_file(&sb, "queued"), "finally", T).await?;
    assert_eq!(runs(&env, "queued"), 1);
    let end = Instant::now() + T;
    while !ready(
        &rt.status(cri::StatusRequest { verbose: false })
            .await?
            .into_inner(),
        "RuntimeReady",
    )
    .status
    {
        assert!(Instant::now() < end, "RuntimeReady did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
