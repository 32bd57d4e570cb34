//! The CRI host end to end: a real gRPC client over the host's socket, the real
//! `interlink-cri`, `interlink` and `interlink-local` processes.

use std::time::{Duration, Instant};

use interlink_test_harness::cri::*;

const T: Duration = Duration::from_secs(30);

/// A line the container has not finished (a prompt) reaches the CRI log as a
/// partial entry while the container waits, and its end follows as a full one:
/// what kubelet joins into one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_line_is_logged_as_partial_while_the_container_waits() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("prompt");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        sh("main", "printf 'name? '; sleep 2; echo done; sleep 30"),
    )
    .await?;
    start(&mut rt, &id).await?;
    let file = log_file(&sb, "main");
    let content = wait_file(&file, " stdout P name? ", T).await?;
    assert!(!content.contains("done"), "{content}");
    let content = wait_file(&file, " stdout F done", T).await?;
    assert_eq!(log_lines(&content)?, vec!["name? ", "done"], "{content}");
    assert_eq!(status(&mut rt, &id).await?.state, RUNNING);
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_container_runs_logs_exits_and_is_removed() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, mut img) = env.connect().await?;

    let v = rt
        .version(cri::VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(v.runtime_name, "interlink-cri");
    assert_eq!(v.runtime_api_version, "v1");

    let pulled = img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let st = img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    assert_eq!(st.image.as_ref().unwrap().id, pulled.image_ref);
    assert_eq!(
        st.image.unwrap().repo_tags,
        vec!["docker.io/library/busybox:latest"]
    );

    let sb = env.pod("single");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        sh("main", "echo hello; echo oops >&2; sleep 0.5; echo bye"),
    )
    .await?;
    assert_eq!(status(&mut rt, &id).await?.state, CREATED);
    let t0 = Instant::now();
    start(&mut rt, &id).await?;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "StartContainer waited on the remote side: {:?}",
        t0.elapsed()
    );
    // never CREATED after start
    assert_ne!(status(&mut rt, &id).await?.state, CREATED);

    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(s.finished_at >= s.started_at && s.started_at > 0, "{s:?}");

    let file = log_file(&sb, "main");
    let content = wait_file(&file, "bye", T).await?;
    let lines = log_lines(&content)?;
    assert!(
        lines.contains(&"hello".to_string()) && lines.contains(&"oops".to_string()),
        "{lines:?}"
    );
    assert_eq!(s.log_path, file.display().to_string());

    // a short, unique prefix works like containerd's
    let short = &id[..12];
    assert_eq!(status(&mut rt, short).await?.id, id);
    let listed = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod[..10].into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].image.as_ref().unwrap().image,
        "docker.io/library/busybox:latest"
    );

    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 5,
    })
    .await?;
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    let all = rt
        .list_containers(cri::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    assert!(all.is_empty());
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    assert!(pods.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_container_reports_its_exit_code() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("failing");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, sh("bad", "echo about to fail; exit 3")).await?;
    start(&mut rt, &id).await?;
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 3, "{s:?}");
    assert!(!s.reason.is_empty(), "{s:?}");
    wait_file(&log_file(&sb, "bad"), "about to fail", T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_together_go_in_one_remote_pod() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("multi");
    let pod = run_pod(&mut rt, &sb).await?;
    let a = create(&mut rt, &pod, &sb, sh("web", "echo web up; sleep 30")).await?;
    let b = create(&mut rt, &pod, &sb, sh("side", "echo side up; sleep 30")).await?;
    start(&mut rt, &a).await?;
    start(&mut rt, &b).await?;
    wait_file(&log_file(&sb, "web"), "web up", T).await?;
    wait_file(&log_file(&sb, "side"), "side up", T).await?;
    let (ia, ib) = (info(&mut rt, &a).await?, info(&mut rt, &b).await?);
    assert_eq!(ia["remoteUID"], ib["remoteUID"], "{ia} {ib}");
    assert_eq!(ia["remotePhase"], "Created");
    // the first regular batch carries the pod's UID
    assert_eq!(ia["remoteUID"], sb.metadata.as_ref().unwrap().uid.as_str());
    assert_eq!(status(&mut rt, &a).await?.state, RUNNING);

    // stop with grace: TERM reaches the processes, the pod is deleted
    let t0 = Instant::now();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    for id in [&a, &b] {
        let s = status(&mut rt, id).await?;
        assert_eq!(s.state, EXITED, "{s:?}");
    }
    let p = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        p.status.unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    let info: serde_json::Value = serde_json::from_str(&p.info["info"])?;
    assert_eq!(
        info["remotePods"].as_array().unwrap().len(),
        0,
        "remote pods left: {info}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_container_honours_the_grace_period() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("grace");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        sh(
            "svc",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ),
    )
    .await?;
    start(&mut rt, &id).await?;
    let file = log_file(&sb, "svc");
    wait_file(&file, "ready", T).await?;
    let t0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await?;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(9),
        "the container trapped TERM and exited; stop took {took:?}"
    );
    let s = status(&mut rt, &id).await?;
    assert_eq!(s.state, EXITED, "{s:?}");
    // the trap ran: TERM was delivered, not KILL
    wait_file(&file, "got TERM", Duration::from_secs(10)).await?;
    // idempotent
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_share_empty_dir() -> anyhow::Result<()> {
    let env = CriEnv::start("EmptyDirMode: hostPath\n")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("inits");
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let pod = run_pod(&mut rt, &sb).await?;
    let scratch = env.path(&format!(
        "kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/scratch"
    ));
    std::fs::create_dir_all(&scratch)?;
    let with_mount = |mut c: cri::ContainerConfig| {
        c.mounts.push(cri::Mount {
            container_path: "/scratch".into(),
            host_path: scratch.display().to_string(),
            ..Default::default()
        });
        c
    };
    // init 1 writes, init 2 appends (and would fail without init 1's file)
    let i1 = create(
        &mut rt,
        &pod,
        &sb,
        with_mount(sh(
            "init-one",
            "echo one > /scratch/data; echo init one done",
        )),
    )
    .await?;
    start(&mut rt, &i1).await?;
    let s1 = wait_state(&mut rt, &i1, EXITED, T).await?;
    assert_eq!(s1.exit_code, 0, "{s1:?}");
    let i2 = create(
        &mut rt,
        &pod,
        &sb,
        with_mount(sh(
            "init-two",
            "test -f /scratch/data || exit 7; echo two >> /scratch/data",
        )),
    )
    .await?;
    start(&mut rt, &i2).await?;
    let s2 = wait_state(&mut rt, &i2, EXITED, T).await?;
    assert_eq!(
        s2.exit_code, 0,
        "init two did not see init one's file: {s2:?}"
    );
    let main = create(
        &mut rt,
        &pod,
        &sb,
        with_mount(sh("main", "cat /scratch/data")),
    )
    .await?;
    start(&mut rt, &main).await?;
    let s = wait_state(&mut rt, &main, EXITED, T).await?;
    assert_eq!(s.exit_code, 0);
    let content = wait_file(&log_file(&sb, "main"), "two", T).await?;
    assert_eq!(log_lines(&content)?, vec!["one", "two"]);
    // each phase was its own remote pod
    let u1 = info(&mut rt, &i1).await?["remoteUID"].clone();
    let u2 = info(&mut rt, &i2).await?["remoteUID"].clone();
    assert_ne!(u1, u2);

    // a failing init container reports its real code
    let sb2 = env.pod("inits-bad");
    let pod2 = run_pod(&mut rt, &sb2).await?;
    let bad = create(&mut rt, &pod2, &sb2, sh("init-bad", "exit 42")).await?;
    start(&mut rt, &bad).await?;
    assert_eq!(wait_state(&mut rt, &bad, EXITED, T).await?.exit_code, 42);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_files_are_shipped() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("cfg");
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let cm = env.path(&format!(
        "kubelet/pods/{uid}/volumes/kubernetes.io~configmap/settings"
    ));
    std::fs::create_dir_all(&cm)?;
    std::fs::write(cm.join("greeting"), "hello from a configmap")?;
    let pod = run_pod(&mut rt, &sb).await?;
    let mut c = sh(
        "reader",
        "cat /etc/settings/greeting; echo; echo \"$GREETING_ENV\"",
    );
    c.mounts.push(cri::Mount {
        container_path: "/etc/settings".into(),
        host_path: cm.display().to_string(),
        readonly: true,
        ..Default::default()
    });
    c.envs.push(cri::KeyValue {
        key: "GREETING_ENV".into(),
        value: b"from env".to_vec(),
    });
    let id = create(&mut rt, &pod, &sb, c).await?;
    start(&mut rt, &id).await?;
    wait_state(&mut rt, &id, EXITED, T).await?;
    let content = wait_file(&log_file(&sb, "reader"), "from env", T).await?;
    assert!(content.contains("hello from a configmap"), "{content}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_shows_the_error_and_nothing_hangs() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("refused");
    let pod = run_pod(&mut rt, &sb).await?;
    // the local plugin cannot run a container without a command (no image entrypoint)
    let mut c = sh("nocmd", "true");
    c.command.clear();
    let id = create(&mut rt, &pod, &sb, c).await?;
    start(&mut rt, &id).await?;
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_ne!(s.exit_code, 0, "{s:?}");
    assert!(
        !s.reason.is_empty() && !s.message.is_empty(),
        "kubelet must see why: {s:?}"
    );
    stop_and_remove_pod(&mut rt, &pod).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_runs_in_a_new_remote_pod() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("restarts");
    let pod = run_pod(&mut rt, &sb).await?;
    let first = create(&mut rt, &pod, &sb, sh("app", "echo attempt zero; exit 1")).await?;
    start(&mut rt, &first).await?;
    assert_eq!(wait_state(&mut rt, &first, EXITED, T).await?.exit_code, 1);
    // kubelet's restart: the same name with the next attempt, its own log file
    let mut again = sh("app", "echo attempt one");
    again.metadata.as_mut().unwrap().attempt = 1;
    again.log_path = "app/1.log".into();
    let second = create(&mut rt, &pod, &sb, again).await?;
    start(&mut rt, &second).await?;
    assert_eq!(wait_state(&mut rt, &second, EXITED, T).await?.exit_code, 0);
    let f = std::path::PathBuf::from(&sb.log_directory).join("app/1.log");
    wait_file(&f, "attempt one", T).await?;
    let (a, b) = (info(&mut rt, &first).await?, info(&mut rt, &second).await?);
    assert_ne!(a["remoteUID"], b["remoteUID"], "{a} {b}");
    // kubelet garbage-collects the old attempt: its remote pod goes
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: first.clone(),
    })
    .await?;
    let (c, _) = match rt
        .container_status(cri::ContainerStatusRequest {
            container_id: first,
            verbose: false,
        })
        .await
    {
        Err(s) => (s.code(), s.message().to_string()),
        Ok(v) => panic!("removed container still there: {v:?}"),
    };
    assert_eq!(c, tonic::Code::NotFound);
    assert_eq!(status(&mut rt, &second).await?.state, EXITED);
    Ok(())
}
