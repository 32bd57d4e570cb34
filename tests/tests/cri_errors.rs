//! Bad requests get InvalidArgument/NotFound with a message naming the problem;
//! idempotent calls succeed for unknown IDs; the rest of the surface answers.

use std::time::Duration;

use futures::StreamExt;
use interlink_test_harness::cri::*;
use tonic::Code;

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_message() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, mut img) = env.connect().await?;

    let (c, m) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest::default())
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("config"), "{m}");

    let mut sb = env.pod("ok");
    sb.metadata = None;
    let (c, m) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sb),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("metadata"), "{m}");

    let mut sb = env.pod("ok");
    // CRI names are not DNS names (uppercase, long names run), but bounded
    sb.metadata.as_mut().unwrap().name = "Not\u{7}A_Name".into();
    let (c, m) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sb),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.contains("metadata.name") && m.contains("control characters"),
        "{m}"
    );

    let sb = env.pod("ok");
    let (c, m) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sb.clone()),
            runtime_handler: "runc".into(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("runc"), "{m}");

    let mut big = env.pod("big");
    big.annotations
        .insert("huge".into(), "x".repeat(300 * 1024));
    let (c, m) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(big),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("annotations"), "{m}");

    let pod = run_pod(&mut rt, &sb).await?;
    // the same pod attempt twice
    let (c, _) = code(
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sb.clone()),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::AlreadyExists);

    let (c, m) = code(
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "nope".into(),
            config: Some(sh("a", "true")),
            sandbox_config: None,
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    assert!(m.contains("nope"), "{m}");
    let mut no_image = sh("a", "true");
    no_image.image = None;
    let (c, m) = code(
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(no_image),
            sandbox_config: None,
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("image"), "{m}");
    let (c, m) = code(
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(sh(&"n".repeat(2000), "true")),
            sandbox_config: None,
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.contains("config.metadata.name") && m.contains("2000"),
        "{m}"
    );
    let mut huge = sh("huge", "true");
    huge.args = vec!["y".repeat(2 << 20)];
    let (c, m) = code(
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(huge),
            sandbox_config: None,
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("bytes"), "{m}");

    let (c, m) = code(
        rt.container_status(cri::ContainerStatusRequest {
            container_id: "deadbeef".into(),
            verbose: false,
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    assert!(m.contains("deadbeef"), "{m}");
    let (c, _) = code(
        rt.start_container(cri::StartContainerRequest {
            container_id: "deadbeef".into(),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(
        rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "deadbeef".into(),
            verbose: false,
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);

    let id = create(&mut rt, &pod, &sb, sh("once", "sleep 5")).await?;
    start(&mut rt, &id).await?;
    let (c, m) = code(
        rt.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await,
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");

    // exec works through interLink's exec extension (tests/tests/cri_streaming.rs);
    // requests it cannot serve are refused with kubelet's checks
    let (c, m) = code(
        rt.exec(cri::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into()],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("one of stdin, stdout, or stderr"), "{m}");
    let (c, m) = code(
        rt.port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![0],
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");

    let (c, m) = code(
        img.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "no spaces allowed".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_and_the_rest_of_the_surface() -> anyhow::Result<()> {
    let env = CriEnv::start("CgroupDriver: systemd\n")?;
    let (mut rt, mut img) = env.connect().await?;
    // unknown IDs: success
    rt.stop_container(cri::StopContainerRequest {
        container_id: "unknown".into(),
        timeout: 1,
    })
    .await?;
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: "unknown".into(),
    })
    .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: "unknown".into(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: "unknown".into(),
    })
    .await?;
    img.remove_image(cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: "never/pulled".into(),
            ..Default::default()
        }),
    })
    .await?;
    let none = img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: "never/pulled".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    assert!(none.image.is_none());

    let rc = rt
        .runtime_config(cri::RuntimeConfigRequest {})
        .await?
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Systemd as i32
    );
    let st = rt
        .status(cri::StatusRequest { verbose: true })
        .await?
        .into_inner();
    assert!(st.runtime_handlers.iter().any(|h| h.name == "interlink"));
    let fs = img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await?
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);

    let mut events = rt
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();
    let sb = env.pod("surface");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, sh("c", "sleep 30")).await?;
    start(&mut rt, &id).await?;
    let mut kinds = vec![];
    while kinds.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await?
            .unwrap()?;
        assert_eq!(e.container_id, id);
        assert!(
            e.pod_sandbox_status.as_ref().is_some_and(|p| p.id == pod),
            "{e:?}"
        );
        assert!(e.containers_statuses.iter().any(|c| c.id == id), "{e:?}");
        kinds.push(e.container_event_type);
    }
    assert_eq!(
        kinds,
        vec![
            cri::ContainerEventType::ContainerCreatedEvent as i32,
            cri::ContainerEventType::ContainerStartedEvent as i32
        ]
    );

    // stats: one entry per container / sandbox, with timestamps, filters honoured
    let cs = rt
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(cs.stats.len(), 1);
    assert!(cs.stats[0].cpu.as_ref().unwrap().timestamp > 0);
    let other = rt
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                label_selector: [("container".to_string(), "x".to_string())].into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert!(other.stats.is_empty());
    let ps = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await?
        .into_inner();
    assert_eq!(ps.stats[0].linux.as_ref().unwrap().containers.len(), 1);

    // the v0.36 streaming lists answer like the plain ones
    let mut s = rt
        .stream_containers(cri::StreamContainersRequest { filter: None })
        .await?
        .into_inner();
    let first = s.next().await.unwrap()?;
    assert_eq!(first.containers.len(), 1);
    let mut s = img
        .stream_images(cri::StreamImagesRequest { filter: None })
        .await?
        .into_inner();
    assert_eq!(s.next().await.unwrap()?.images.len(), 1);
    rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.clone(),
        overhead: None,
        resources: Some(Default::default()),
    })
    .await?;
    assert_eq!(
        rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await?;

    // stop and remove twice
    for _ in 0..2 {
        rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
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
    }
    Ok(())
}
