//! The exec extension on the Docker plugin, end to end over the real
//! binaries: the `interlink` API server in front of `interlink-docker`, which
//! drives real podman (scripts/engine-setup.sh) through its Docker-compatible
//! service. exec (stdout/stderr on their channels, exit code, the container's
//! env and working dir, stdin, tty with resize), attach (output from now on,
//! stdin of a container started with it), port-forward into the pod's network
//! namespace (network `none`), refusals, and the latency of exec `true`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use interlink::client::{Client, ClientError};
use interlink::exec::ExitStatus;
use interlink::extensions::EXEC;
use interlink_test_harness::apiserver::{ApiServer, Listen, start_interlink};
use interlink_test_harness::engine::{
    Engine, docker_plugin_config, engine, remove_pod_containers, start_service, use_image,
};
use interlink_test_harness::exec_checks::*;
use interlink_test_harness::plugin::PodBuilder;
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};

const T: Duration = Duration::from_secs(60);

/// The echo server the port-forward checks expect: `echo:` and each line.
const ECHO: &[&str] = &[
    "nc",
    "-ll",
    "-p",
    "8080",
    "-e",
    "sh",
    "-c",
    "while IFS= read -r l; do echo \"echo:$l\"; done",
];

struct World {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    image: String,
    _engine: Proc,
    plugin: Option<Proc>,
    _server: ApiServer,
    client: Client,
    uids: Vec<String>,
}

impl World {
    fn new() -> Option<World> {
        let Engine { env, image } = engine("docker exec test")?;
        let dir = tempfile::Builder::new()
            .prefix("il-dexec-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let engine_sock = d.join("engine.sock");
        let engine = start_service(&env, &engine_sock, &d.join("engine.log"), T).unwrap();
        let plugin_sock = d.join("plugin.sock");
        std::fs::write(
            d.join("plugin.yaml"),
            docker_plugin_config(&plugin_sock, &d.join("data"), &engine_sock, &image, ""),
        )
        .unwrap();
        let mut cmd = Command::new(bin("interlink-docker"));
        cmd.arg("--config").arg(d.join("plugin.yaml"));
        cmd.env("RUST_LOG", "info,interlink_plugin_docker=debug");
        let plugin = Proc::spawn("interlink-docker", cmd, &d.join("plugin.log")).unwrap();
        wait_for_unix_socket(&plugin_sock, T).unwrap();
        let server = start_interlink(
            d,
            "interlink",
            &Listen::Tcp,
            &format!("unix://{}", plugin_sock.display()),
            "",
        )
        .unwrap();
        let client = Client::new(server.client_config()).unwrap();
        Some(World {
            dir,
            env,
            image,
            _engine: engine,
            plugin: Some(plugin),
            _server: server,
            client,
            uids: vec![],
        })
    }

    fn pod(&mut self, mut b: PodBuilder) -> PodBuilder {
        use_image(&mut b, &self.image);
        self.uids.push(b.uid().to_string());
        b
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(5));
        }
        for uid in &self.uids {
            remove_pod_containers(&self.env, uid);
        }
        if std::thread::panicking() {
            for name in ["plugin.log", "interlink.log"] {
                let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("----- last lines of {name} -----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// exec: channels, exit codes, stdin, the container's env and working dir,
/// a tty that follows resizes; port-forward into the pod's namespace; an
/// ended container and an unknown one refused with JSON; exec latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exec_tty_port_forward_and_refusals() {
    let Some(mut w) = World::new() else { return };
    assert!(w.client.extensions().await.unwrap().has(EXEC));
    let b = PodBuilder::new("dexec")
        .grace(1)
        .container("main", &["sleep", "600"])
        .env("main", "GREETING", "hello from the pod")
        .with_container("main", |c| c.working_dir = Some("/tmp".into()))
        .container("echo", ECHO)
        .container("once", &["true"]);
    let b = w.pod(b);
    run_pod(&w.client, &b, "main", T).await;
    let c = &w.client;

    check_streams_and_stdin(c, &b, "main").await;
    let o = run(c, &b, "main", &["sh", "-c", "echo \"$GREETING\"; pwd"]).await;
    assert_eq!(text(&o.stdout), "hello from the pod\n/tmp\n", "{o:?}");
    // busybox is the image's stty
    check_tty(c, &b, "main", "busybox stty").await;

    check_port_forward(c, &b, 8080, 8081).await;
    check_interrupted_exec_stops(c, &b, "main").await;

    // an ended container: 400 with a message, before anything runs
    let e = refused(c.exec(&exec_req(&b, "once", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 409, message } if message.contains("not running")),
        "{e:?}"
    );
    check_unknown_refused(c, &b).await;
    // a program the image lacks: the runtime's refusal, naming it, never a hang
    match c
        .exec(&exec_req(&b, "main", &["no-such-program-anywhere"]))
        .await
    {
        Err(e) => assert!(e.to_string().contains("no-such-program-anywhere"), "{e:?}"),
        Ok(s) => {
            let o = collect(s, T).await;
            assert!(matches!(o.status, ExitStatus::ExitCode(126 | 127)), "{o:?}");
            assert!(
                text(&o.stderr).contains("no-such-program-anywhere"),
                "{o:?}"
            );
        }
    }

    let (p50, p99) = exec_latency(c, &b, "main", 20, "docker (podman)").await;
    assert!(p50 <= p99);

    c.delete(&b.pod).await.unwrap();
    let e = refused(c.exec(&exec_req(&b, "main", &["true"]))).await;
    assert!(matches!(&e, ClientError::NotFound(_)), "{e:?}");
}

/// attach: the container's output from now on, stdout and stderr on their
/// channels, until it ends; stdin of a container started with `stdin: true`;
/// refused (400) for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_attach_output_and_stdin() {
    let Some(mut w) = World::new() else { return };
    let b = PodBuilder::new("dattach")
        .grace(1)
        .container(
            "talk",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 60 ]; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.1; done",
            ],
        )
        .container("sh", &["sh"])
        .with_container("sh", |c| c.stdin = Some(true))
        .container("idle", &["sleep", "600"]);
    let b = w.pod(b);
    run_pod(&w.client, &b, "talk", T).await;
    let c = &w.client;

    let s = c.attach(&attach_req(&b, "talk", false)).await.unwrap();
    let o = collect(s, T).await;
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status, ExitStatus::Success, "{o:?}");
    assert!(out.contains("tick 59\n"), "{out:?}");
    assert!(err.contains("tock 59\n"), "{err:?}");
    assert!(
        !out.contains("tock") && !err.contains("tick"),
        "{out:?} {err:?}"
    );
    // from now on: not from the start
    assert!(!out.starts_with("tick 0\n"), "{out:?}");

    let e = refused(c.attach(&attach_req(&b, "idle", true))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 400, message } if message.contains("stdin")),
        "{e:?}"
    );

    check_attach_stdin(c, &b, "sh").await;
    w.client.delete(&b.pod).await.unwrap();
}
