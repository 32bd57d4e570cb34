//! The last output of a container stopped gracefully reaches its CRI log file:
//! a container that traps TERM and prints a last line ("bye") before exiting,
//! stopped with `StopContainer` and a grace period, has that line at the end of
//! its log. Real binaries: `interlink-cri` on its embedded default (API server
//! and local plugin in-process), and the three-process setup.

use std::process::Command;
use std::time::Duration;

use interlink_test_harness::cri::*;
use interlink_test_harness::{Proc, bin};

const T: Duration = Duration::from_secs(30);

/// Traps TERM, prints its last lines after a short pause (as a service
/// flushing on shutdown does), then exits.
const TRAPPER: &str = "trap 'sleep 0.3; echo closing; echo bye; exit 0' TERM; \
                       echo ready; while true; do sleep 0.05; done";

/// Start the trapping container, stop it with a grace period, and check the
/// log file ends with "bye".
async fn stop_and_check_last_line(rt: &mut Rt, sb: &cri::PodSandboxConfig) -> anyhow::Result<()> {
    let pod = run_pod(rt, sb).await?;
    let id = create(rt, &pod, sb, sh("svc", TRAPPER)).await?;
    start(rt, &id).await?;
    let file = log_file(sb, "svc");
    wait_file(&file, "ready", T).await?;
    // the follow stream is set up and idle before the stop
    tokio::time::sleep(Duration::from_millis(500)).await;
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await?;
    let s = status(rt, &id).await?;
    assert_eq!(s.state, EXITED, "{s:?}");
    // the host may still be writing what the stream delivered: a few seconds at most
    let content = match wait_file(&file, "bye", Duration::from_secs(10)).await {
        Ok(c) => c,
        Err(e) => anyhow::bail!("the last line of the stopped container is missing: {e}"),
    };
    let lines = log_lines(&content)?;
    // the shell may also report its TERM-ed `sleep` ("Terminated") before the trap runs
    assert_eq!(
        lines.first().map(String::as_str),
        Some("ready"),
        "{lines:?}"
    );
    assert_eq!(
        lines[lines.len().saturating_sub(2)..],
        ["closing", "bye"],
        "the trap's lines last, in order: {lines:?}"
    );
    for l in &lines {
        assert_eq!(
            lines.iter().filter(|x| *x == l).count(),
            1,
            "{l:?} written twice: {lines:?}"
        );
    }
    // nothing is appended later (no line written twice by a second fetch)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(std::fs::read_to_string(&file)?, content);
    stop_and_remove_pod(rt, &pod).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_keeps_the_last_line_on_the_embedded_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("cri.sock");
    let mut cmd = Command::new(bin("interlink-cri"));
    cmd.arg("--socket")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.path().join("data"));
    cmd.env_remove("INTERLINK_CRI_CONFIG");
    let _host = Proc::spawn(
        "interlink-cri (embedded)",
        cmd,
        &dir.path().join("host.log"),
    )?;
    interlink_test_harness::wait_for_unix_socket(&sock, T)?;
    let ch = connect(&sock).await?;
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(ch);
    let sb = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "lastline".into(),
            namespace: "default".into(),
            uid: uuid_like("lastline-embedded"),
            attempt: 0,
        }),
        log_directory: dir.path().join("logs").display().to_string(),
        ..Default::default()
    };
    stop_and_check_last_line(&mut rt, &sb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_keeps_the_last_line_through_the_api_server() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("lastline");
    stop_and_check_last_line(&mut rt, &sb).await
}
