//! Operating the host: the embedded default, config errors, `--help`, metrics and
//! health, log rotation with `ReopenContainerLog`.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use interlink_test_harness::cri::*;
use interlink_test_harness::{Proc, bin, free_port, wait_for_tcp};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_runs_a_pod_with_no_config() -> anyhow::Result<()> {
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
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock)?.permissions()) & 0o777;
    assert_eq!(mode, 0o660);

    let uid = uuid_like("embedded");
    let sb = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "embedded".into(),
            namespace: "default".into(),
            uid: uid.clone(),
            attempt: 0,
        }),
        log_directory: dir.path().join("logs").display().to_string(),
        ..Default::default()
    };
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        sh("hello", "echo hello from the embedded backend; exit 2"),
    )
    .await?;
    start(&mut rt, &id).await?;
    let s = wait_state(&mut rt, &id, EXITED, T).await?;
    assert_eq!(s.exit_code, 2, "{s:?}");
    let content = wait_file(&log_file(&sb, "hello"), "embedded backend", T).await?;
    assert_eq!(
        log_lines(&content)?,
        vec!["hello from the embedded backend"]
    );
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert!(st.status.unwrap().conditions.iter().all(|c| c.status));
    stop_and_remove_pod(&mut rt, &pod).await?;
    Ok(())
}

#[test]
fn config_errors_and_help() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "CRI:\n  SocketPath: /tmp/x.sock\nStatusIntervall: 1s\n",
    )?;
    let out = Command::new(bin("interlink-cri"))
        .arg("--config")
        .arg(&cfg)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("StatusIntervall"), "{err}");

    let out = Command::new(bin("interlink-cri"))
        .env("INTERLINK_CRI_CONFIG", dir.path().join("missing.yaml"))
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));

    // one host per data root
    let env = CriEnv::start("")?;
    let out = Command::new(bin("interlink-cri"))
        .arg("--config")
        .arg(&env.host_config)
        .arg("--socket")
        .arg(dir.path().join("other.sock"))
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another interlink-cri"));
    drop(env);

    let out = Command::new(bin("interlink-cri")).arg("--help").output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    for key in [
        "InterlinkAddress",
        "SocketPath",
        "RuntimeHandler",
        "StatusInterval",
        "BatchWindow",
        "MetricsAddress",
        "VK_TOKEN_FILE",
        "INTERLINK_CRI_DEBUG",
        "Extensions",
    ] {
        assert!(help.contains(key), "--help does not mention {key}");
    }
    Ok(())
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_log_reopen() -> anyhow::Result<()> {
    let port = free_port();
    let env = CriEnv::start(&format!("MetricsAddress: 127.0.0.1:{port}\n"))?;
    wait_for_tcp(port, T)?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("rotate");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(
        &mut rt,
        &pod,
        &sb,
        sh(
            "talker",
            "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); sleep 0.1; done",
        ),
    )
    .await?;
    start(&mut rt, &id).await?;
    let file = log_file(&sb, "talker");
    wait_file(&file, "line 3", T).await?;
    // kubelet's rotation: rename, then ReopenContainerLog
    let rotated = file.with_extension("log.1");
    std::fs::rename(&file, &rotated)?;
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await?;
    assert!(file.exists());
    let fresh = wait_file(&file, "line", T).await?;
    let old = std::fs::read_to_string(&rotated)?;
    let first_new = log_lines(&fresh)?.first().cloned().unwrap();
    assert!(
        !old.contains(&format!(" {first_new}\n")),
        "line {first_new:?} in both files"
    );

    let m = http_get(port, "/metrics")?;
    assert!(m.contains("200 OK"), "{m}");
    assert!(
        m.contains("interlink_cri_cri_calls_total{method=\"StartContainer\",code=\"Ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("interlink_cri_interlink_requests_total{call=\"create\",outcome=\"ok\"}"),
        "{m}"
    );
    assert!(
        m.contains("interlink_cri_containers{state=\"running\"} 1"),
        "{m}"
    );
    // the extension system's metrics are served too (no module loaded: only totals)
    assert!(
        m.contains("# TYPE interlink_cri_extension_reloads counter"),
        "{m}"
    );
    let h = http_get(port, "/healthz")?;
    assert!(h.contains("200 OK") && h.ends_with("ok"), "{h}");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await?;
    Ok(())
}
