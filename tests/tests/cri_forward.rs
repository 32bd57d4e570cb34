//! interlink-cri in forwarding mode (`LocalRuntime`) in front of a real
//! containerd (tests/src/containerd.rs): one CRI socket, a pod of the default
//! handler runs on containerd, a pod of handler `interlink` is offloaded to the
//! embedded-style API server + local plugin, side by side; lifecycle, logs,
//! lists, stats, events, exec, status, and restarts or an outage of either side.
//! Skips when scripts/containerd-setup.sh has not run (fails instead with
//! INTERLINK_REQUIRE_BACKENDS=1).

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use interlink_test_harness::containerd::Containerd;
use interlink_test_harness::cri::*;

const T: Duration = Duration::from_secs(30);

fn forward_config(ctrd: &Containerd) -> String {
    format!("LocalRuntime:\n  Endpoint: {}\n", ctrd.endpoint())
}

async fn run_pod_with(
    rt: &mut Rt,
    cfg: &cri::PodSandboxConfig,
    handler: &str,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(&cfg.log_directory)?; // kubelet makes the pod's log directory
    Ok(rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: handler.into(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// Create and start a container in `pod`; returns its ID once it is RUNNING.
async fn running(
    rt: &mut Rt,
    pod: &str,
    sb: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> anyhow::Result<String> {
    let id = create(rt, pod, sb, c).await?;
    start(rt, &id).await?;
    wait_state(rt, &id, RUNNING, T).await?;
    Ok(id)
}

async fn sandbox_ids(rt: &mut Rt) -> anyhow::Result<Vec<String>> {
    Ok(rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items
        .into_iter()
        .map(|s| s.id)
        .collect())
}

async fn container_ids(
    rt: &mut Rt,
    filter: Option<cri::ContainerFilter>,
) -> anyhow::Result<Vec<String>> {
    Ok(rt
        .list_containers(cri::ListContainersRequest { filter })
        .await?
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect())
}

fn condition(st: &cri::StatusResponse, t: &str) -> Option<cri::RuntimeCondition> {
    st.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == t)
        .cloned()
}

async fn exec_out(rt: &mut Rt, id: &str, cmd: &[&str]) -> anyhow::Result<String> {
    let r = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        r.exit_code == 0,
        "exec {cmd:?} exit {}: {}",
        r.exit_code,
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_remote_pods_side_by_side() -> anyhow::Result<()> {
    let Some(ctrd) = Containerd::start()? else {
        return Ok(());
    };
    let env = CriEnv::start(&forward_config(&ctrd))?;
    let (mut rt, _img) = env.connect().await?;
    let mut direct = ctrd.rt().await?;

    // the event stream is open before anything happens
    let mut events = rt
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();

    let local_sb = env.pod("fwd-local");
    let remote_sb = env.pod("fwd-remote");
    let local_pod = run_pod_with(&mut rt, &local_sb, "").await?;
    let remote_pod = run_pod_with(&mut rt, &remote_sb, "interlink").await?;

    // containerd has the default handler's pod, and only it
    let theirs = sandbox_ids(&mut direct).await?;
    assert!(theirs.contains(&local_pod), "{theirs:?}");
    assert!(!theirs.contains(&remote_pod), "{theirs:?}");
    // the local pod got its address from containerd's CNI bridge
    let local_status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: local_pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    let ip = local_status.network.map(|n| n.ip).unwrap_or_default();
    let (_, subnet) = ctrd.network();
    let prefix = subnet.rsplit_once('.').map(|(p, _)| p).unwrap_or(subnet);
    assert!(
        ip.starts_with(prefix),
        "local pod ip {ip:?} not in {subnet}"
    );

    let local_c = running(
        &mut rt,
        &local_pod,
        &local_sb,
        sh("main", "echo hello-local; sleep 300"),
    )
    .await?;
    let remote_c = running(
        &mut rt,
        &remote_pod,
        &remote_sb,
        sh("main", "echo hello-remote; sleep 300"),
    )
    .await?;

    // logs where kubelet reads them, from each side
    let l = wait_file(&log_file(&local_sb, "main"), "hello-local", T).await?;
    assert_eq!(log_lines(&l)?, vec!["hello-local"], "{l}");
    let r = wait_file(&log_file(&remote_sb, "main"), "hello-remote", T).await?;
    assert_eq!(log_lines(&r)?, vec!["hello-remote"], "{r}");

    // lists: the merge, and one side when the filter names a pod
    let all = sandbox_ids(&mut rt).await?;
    assert!(
        all.contains(&local_pod) && all.contains(&remote_pod),
        "{all:?}"
    );
    let all = container_ids(&mut rt, None).await?;
    assert!(all.contains(&local_c) && all.contains(&remote_c), "{all:?}");
    for (pod, c, other) in [
        (&local_pod, &local_c, &remote_c),
        (&remote_pod, &remote_c, &local_c),
    ] {
        let one = container_ids(
            &mut rt,
            Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        )
        .await?;
        assert!(one.contains(c) && !one.contains(other), "{one:?}");
    }
    let labelled = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("app".to_string(), "fwd-local".to_string())].into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .items;
    assert_eq!(
        labelled.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&local_pod]
    );

    // exec reaches each container on its own side
    let out = exec_out(&mut rt, &local_c, &["sh", "-c", "cat /proc/[0-9]*/cmdline"]).await?;
    // the pod's pause process is visible: a containerd pod (shared PID namespace)
    assert!(out.contains("/pause"), "{out:?}");
    let out = exec_out(&mut rt, &remote_c, &["sh", "-c", "echo remote-$((6*7))"]).await?;
    assert_eq!(out.trim(), "remote-42");
    // exec (streaming): the local pod's URL is containerd's own server
    let url = rt
        .exec(cri::ExecRequest {
            container_id: local_c.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // stats of both sides
    let stats = rt
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await?
        .into_inner()
        .stats;
    let ids: Vec<_> = stats
        .iter()
        .filter_map(|s| s.attributes.as_ref())
        .map(|a| a.id.clone())
        .collect();
    assert!(ids.contains(&local_c), "{ids:?}");
    assert!(ids.contains(&remote_c), "{ids:?}");

    // status: ready, each side with a condition of its own; both handlers listed
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    for t in [
        "RuntimeReady",
        "NetworkReady",
        "InterlinkReady",
        "LocalRuntimeReady",
        "LocalNetworkReady",
    ] {
        let c = condition(&st, t).with_context(|| format!("no {t}: {st:?}"))?;
        assert!(c.status, "{c:?}");
    }
    let handlers: Vec<_> = st
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(
        handlers.contains(&"") && handlers.contains(&"interlink"),
        "{handlers:?}"
    );

    // RuntimeConfig (kubelet's cgroup driver) is containerd's answer, as it is
    // (containerd 1.6 has none: kubelet then keeps its own setting)
    let fwd_cfg = rt.runtime_config(cri::RuntimeConfigRequest {}).await;
    let direct_cfg = direct.runtime_config(cri::RuntimeConfigRequest {}).await;
    match (&fwd_cfg, &direct_cfg) {
        (Ok(f), Ok(d)) => assert_eq!(f.get_ref(), d.get_ref()),
        (Err(f), Err(d)) => assert_eq!(f.code(), d.code(), "{f:?} vs {d:?}"),
        _ => panic!("RuntimeConfig differs: {fwd_cfg:?} vs {direct_cfg:?}"),
    }

    // a handler neither side serves is refused by containerd, by name
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(env.pod("fwd-nohandler")),
            runtime_handler: "no-such-handler".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("no-such-handler"), "{err:?}");

    // both sides' events reach the one stream (containerd 1.6 has no
    // GetContainerEvents: then only interLink's side can be seen)
    let local_events = match direct.get_container_events(cri::GetEventsRequest {}).await {
        Err(e) if e.code() == tonic::Code::Unimplemented => false,
        Err(e) => return Err(e.into()),
        Ok(_) => true,
    };
    let mut seen = std::collections::HashSet::new();
    let end = tokio::time::Instant::now() + T;
    while !(seen.contains(&remote_c) && (!local_events || seen.contains(&local_c))) {
        let e = tokio::time::timeout_at(end, events.next())
            .await
            .with_context(|| format!("events seen for {seen:?} only"))?
            .context("event stream ended")??;
        seen.insert(e.container_id);
    }

    // images: kubelet's pull for the offloaded pod is interLink's (only recorded:
    // the backend pulls), for the containerd pod it is containerd's (no registry
    // here: it fails there, by containerd's word)
    let mut img = _img;
    let remote_only = "registry.example.invalid/remote-only:1";
    let pull = |sb: &cri::PodSandboxConfig| cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: remote_only.into(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: Some(sb.clone()),
    };
    let err = img.pull_image(pull(&local_sb)).await.unwrap_err();
    assert!(err.message().contains("remote-only"), "{err:?}");
    let reference = img
        .pull_image(pull(&remote_sb))
        .await?
        .into_inner()
        .image_ref;
    assert!(!reference.is_empty());
    let images = img
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    let tags: Vec<_> = images
        .iter()
        .flat_map(|i| i.repo_tags.iter().cloned())
        .collect();
    assert!(tags.iter().any(|t| t == ctrd.busybox_image()), "{tags:?}");
    assert!(tags.iter().any(|t| t == remote_only), "{tags:?}");
    let st = img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: ctrd.busybox_image().into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    // containerd's own answer: the real size of the imported image
    assert!(
        st.image.as_ref().is_some_and(|i| i.size > 100_000),
        "{st:?}"
    );

    // the end: stop and remove through the one socket, each side for its own
    stop_and_remove_pod(&mut rt, &local_pod).await?;
    stop_and_remove_pod(&mut rt, &remote_pod).await?;
    assert!(sandbox_ids(&mut direct).await?.is_empty());
    assert!(sandbox_ids(&mut rt).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_an_outage_lose_nothing() -> anyhow::Result<()> {
    let Some(mut ctrd) = Containerd::start()? else {
        return Ok(());
    };
    let mut env = CriEnv::start(&forward_config(&ctrd))?;
    let (mut rt, _img) = env.connect().await?;

    let local_sb = env.pod("fwdr-local");
    let remote_sb = env.pod("fwdr-remote");
    let local_pod = run_pod_with(&mut rt, &local_sb, "").await?;
    let remote_pod = run_pod_with(&mut rt, &remote_sb, "interlink").await?;
    let local_c = running(&mut rt, &local_pod, &local_sb, sh("main", "sleep 300")).await?;
    let remote_c = running(&mut rt, &remote_pod, &remote_sb, sh("main", "sleep 300")).await?;

    // kubelet lists every second: the forwarder keeps the local runtime's list
    let all = sandbox_ids(&mut rt).await?;
    assert!(
        all.contains(&local_pod) && all.contains(&remote_pod),
        "{all:?}"
    );
    let all = container_ids(&mut rt, None).await?;
    assert!(all.contains(&local_c) && all.contains(&remote_c), "{all:?}");

    // interlink-cri restarts: routing comes back from its own state alone
    env.kill_host();
    env.start_host()?;
    let (mut rt, _img) = env.connect().await?;
    assert_eq!(status(&mut rt, &local_c).await?.state, RUNNING);
    assert_eq!(status(&mut rt, &remote_c).await?.state, RUNNING);
    let out = exec_out(&mut rt, &local_c, &["echo", "after-restart"]).await?;
    assert_eq!(out.trim(), "after-restart");

    // containerd restarts: its container runs on under its shim
    ctrd.restart()?;
    assert_eq!(
        wait_state(&mut rt, &local_c, RUNNING, T).await?.state,
        RUNNING
    );

    // containerd is down for a while
    ctrd.stop();
    let err = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: local_c.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("local runtime"), "{err:?}");
    // ... its pods are still listed as they were (kubelet must not recreate them)
    let all = sandbox_ids(&mut rt).await?;
    assert!(
        all.contains(&local_pod) && all.contains(&remote_pod),
        "{all:?}"
    );
    let all = container_ids(&mut rt, None).await?;
    assert!(all.contains(&local_c) && all.contains(&remote_c), "{all:?}");
    // ... the node stays ready; the outage is a condition of its own
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert!(
        condition(&st, "RuntimeReady").is_some_and(|c| c.status),
        "{st:?}"
    );
    let down = condition(&st, "LocalRuntimeReady").context("no LocalRuntimeReady")?;
    assert!(!down.status && !down.reason.is_empty(), "{down:?}");
    // ... and interLink's pod works on
    assert_eq!(status(&mut rt, &remote_c).await?.state, RUNNING);
    let out = exec_out(&mut rt, &remote_c, &["echo", "still-here"]).await?;
    assert_eq!(out.trim(), "still-here");
    running(
        &mut rt,
        &remote_pod,
        &remote_sb,
        sh("late", "echo late; sleep 300"),
    )
    .await?;

    // containerd is back: the local pod is as it was
    ctrd.start_again()?;
    assert_eq!(
        wait_state(&mut rt, &local_c, RUNNING, T).await?.state,
        RUNNING
    );
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert!(
        condition(&st, "LocalRuntimeReady").is_some_and(|c| c.status),
        "{st:?}"
    );

    stop_and_remove_pod(&mut rt, &local_pod).await?;
    stop_and_remove_pod(&mut rt, &remote_pod).await?;
    assert!(sandbox_ids(&mut rt).await?.is_empty());
    Ok(())
}
