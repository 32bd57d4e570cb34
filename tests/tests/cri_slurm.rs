//! A full CRI lifecycle on real Slurm: kubelet's calls over the CRI socket, the
//! real host, the real API server and the Slurm plugin submitting real jobs
//! (`container_runtime: none`: commands run directly on the node). Skipped when
//! no Slurm controller answers, unless INTERLINK_REQUIRE_BACKENDS=1.

use std::process::Command;
use std::time::Duration;

use interlink_test_harness::cri::*;
use interlink_test_harness::slurm::slurm_conf;

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_on_slurm() -> anyhow::Result<()> {
    let Some(conf) = slurm_conf("CRI on Slurm") else {
        return Ok(());
    };
    let env = CriEnv::start_slurm(&conf, "StatusInterval: 500ms\n")?;
    let (mut rt, mut img) = env.connect().await?;
    img.pull_image(cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    let sb = env.pod("on-slurm");
    let pod = run_pod(&mut rt, &sb).await?;
    let ok = create(
        &mut rt,
        &pod,
        &sb,
        sh(
            "worker",
            "echo hello from slurm job $SLURM_JOB_ID; sleep 1; echo done",
        ),
    )
    .await?;
    let bad = create(&mut rt, &pod, &sb, sh("failer", "echo failing; exit 4")).await?;
    start(&mut rt, &ok).await?;
    start(&mut rt, &bad).await?;
    // queued or running in Slurm: never CREATED
    assert_eq!(status(&mut rt, &ok).await?.state, RUNNING);

    let s = wait_state(&mut rt, &bad, EXITED, T).await?;
    assert_eq!(s.exit_code, 4, "{s:?}");
    let s = wait_state(&mut rt, &ok, EXITED, T).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    let job = info(&mut rt, &ok).await?["jobID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        job.chars().all(|c| c.is_ascii_digit()) && !job.is_empty(),
        "Slurm job id {job:?}"
    );
    let content = wait_file(&log_file(&sb, "worker"), "done", T).await?;
    assert!(
        log_lines(&content)?
            .iter()
            .any(|l| l.starts_with("hello from slurm job")),
        "{content}"
    );

    // a long job stopped through the CRI is cancelled in Slurm
    let sb2 = env.pod("on-slurm-long");
    let pod2 = run_pod(&mut rt, &sb2).await?;
    let long = create(
        &mut rt,
        &pod2,
        &sb2,
        sh("sleeper", "echo started; sleep 300"),
    )
    .await?;
    start(&mut rt, &long).await?;
    wait_file(&log_file(&sb2, "sleeper"), "started", T).await?;
    let job = info(&mut rt, &long).await?["jobID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    rt.stop_container(cri::StopContainerRequest {
        container_id: long.clone(),
        timeout: 2,
    })
    .await?;
    assert_eq!(status(&mut rt, &long).await?.state, EXITED);
    // squeue ignores -j on Slurm 22.05: ask scontrol about this job
    let end = std::time::Instant::now() + T;
    loop {
        let q = Command::new("scontrol")
            .args(["-o", "show", "job", &job])
            .env("SLURM_CONF", &conf)
            .output()?;
        let out = String::from_utf8_lossy(&q.stdout).to_string();
        if !out.contains("JobState=RUNNING") && !out.contains("JobState=PENDING") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "job {job} still queued: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for p in [pod, pod2] {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.clone(),
        })
        .await?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: p })
            .await?;
    }
    Ok(())
}
