//! The exec extension on the Slurm plugin, end to end over the real binaries
//! and real Slurm (scripts/slurm-start.sh, `container_runtime: none`): the
//! `interlink` API server in front of `interlink-slurm`. exec is a step in
//! the pod's job (`srun --jobid --overlap`): stdout/stderr on their channels,
//! exit code, the container's env and working dir, stdin, a tty (`srun
//! --pty`) that follows resizes; attach follows the container's output;
//! port-forward reaches a server the job runs on its node (its `NodeAddr`); refusals; the
//! latency of exec `true`. Skipped when no Slurm controller answers, unless
//! INTERLINK_REQUIRE_BACKENDS=1.

use std::time::Duration;

use interlink::client::{Client, ClientError};
use interlink::exec::ExitStatus;
use interlink::extensions::EXEC;
use interlink_test_harness::apiserver::{Listen, start_interlink};
use interlink_test_harness::exec_checks::*;
use interlink_test_harness::free_port;
use interlink_test_harness::plugin::PodBuilder;
use interlink_test_harness::slurm::{SlurmPlugin, slurm_conf, start_plugin};

const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slurm_exec_attach_port_forward() {
    let Some(conf) = slurm_conf("Slurm exec test") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("il-sexec-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let SlurmPlugin {
        proc: _plugin,
        port,
    } = start_plugin(&conf, &d.join("plugin"), "  container_runtime: none\n", &[]).unwrap();
    let srv = start_interlink(
        d,
        "interlink",
        &Listen::Tcp,
        &format!("http://127.0.0.1:{port}"),
        "",
    )
    .unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    assert!(client.extensions().await.unwrap().has(EXEC));

    let (echo_port, closed) = (free_port(), free_port());
    let echo = echo_server(echo_port);
    let echo: Vec<&str> = echo.iter().map(String::as_str).collect();
    let b = PodBuilder::new("sexec")
        .grace(1)
        .container("main", &["sleep", "300"])
        .env("main", "GREETING", "hello from the job")
        .with_container("main", |c| c.working_dir = Some("/tmp".into()))
        .container("echo", &echo)
        .container("once", &["true"])
        .container(
            "talk",
            &[
                "sh",
                "-c",
                "sleep 12; i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done",
            ],
        );
    run_pod(&client, &b, "main", T).await;
    let c = &client;

    // attach first: it sees what `talk` writes from now on, then its end
    let attach = c.attach(&attach_req(&b, "talk", false)).await.unwrap();
    let attached = tokio::spawn(collect(attach, T));

    check_streams_and_stdin(c, &b, "main").await;
    let o = run(c, &b, "main", &["sh", "-c", "echo \"$GREETING\"; pwd"]).await;
    assert_eq!(text(&o.stdout), "hello from the job\n/tmp\n", "{o:?}");
    check_tty(c, &b, "main", "stty").await;
    check_port_forward(c, &b, echo_port, closed).await;
    check_interrupted_exec_stops(c, &b, "main").await;

    let o = attached.await.unwrap();
    assert_eq!(o.status, ExitStatus::Success, "{o:?}");
    let out = text(&o.stdout);
    assert!(
        out.contains("tick 0\n") && out.contains("tick 29\n"),
        "{out:?}"
    );

    // a job has no stdin: attach with it is refused
    let e = refused(c.attach(&attach_req(&b, "main", true))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 400, message } if message.contains("stdin")),
        "{e:?}"
    );
    // an ended container: 400 with a message
    let e = refused(c.exec(&exec_req(&b, "once", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 409, message } if message.contains("not running")),
        "{e:?}"
    );
    check_unknown_refused(c, &b).await;

    let (p50, p99) = exec_latency(c, &b, "main", 10, "slurm (runtime none)").await;
    assert!(p50 <= p99);

    c.delete(&b.pod).await.unwrap();
    let e = refused(c.exec(&exec_req(&b, "main", &["true"]))).await;
    assert!(matches!(&e, ClientError::NotFound(_)), "{e:?}");
}
