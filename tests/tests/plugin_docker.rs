//! The Docker plugin (`interlink-docker`) through its HTTP API, against a real
//! engine: podman's Docker-compatible service (`podman system service`), set up
//! by scripts/engine-setup.sh (rootful podman, no network, local image
//! `localhost/mini:latest` made without a registry).
//!
//! Each test starts its own podman service on a private socket and its own
//! plugin, and removes every container labelled with its pods' UIDs at the end,
//! even when it fails. Without the engine the tests print why and pass, unless
//! `INTERLINK_REQUIRE_BACKENDS=1` (scripts/test.sh sets it when the setup ran):
//! then they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interlink::ContainerLogOpts;
use interlink_test_harness::engine::{
    Engine, docker_plugin_config, engine, podman, remove_pod_containers, start_service, use_image,
};
use interlink_test_harness::plugin::{
    PluginClient, PodBuilder, all_terminated, container_status, exit_code, is_running, log_req,
    message, reason,
};
use interlink_test_harness::{Proc, bin, wait_for_unix_socket, wait_until};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const T: Duration = Duration::from_secs(30);

/// One test's world: a podman service, the plugin, and the pods to clean up.
struct World {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    image: String,
    engine_sock: PathBuf,
    engine: Option<Proc>,
    plugin: Option<Proc>,
    client: PluginClient,
    uids: Vec<String>,
}

impl World {
    fn new() -> Option<World> {
        World::with_docker_settings("")
    }

    /// A world whose plugin config has `extra` (lines indented under `docker:`).
    fn with_docker_settings(extra: &str) -> Option<World> {
        let Engine { env, image } = engine("docker plugin test")?;
        let dir = tempfile::Builder::new()
            .prefix("il-docker-")
            .tempdir()
            .unwrap();
        let engine_sock = dir.path().join("engine.sock");
        let client = PluginClient::unix(&dir.path().join("plugin.sock"));
        let mut w = World {
            dir,
            env,
            image,
            engine_sock,
            engine: None,
            plugin: None,
            client,
            uids: vec![],
        };
        w.start_engine();
        let cfg = w.dir.path().join("plugin.yaml");
        std::fs::write(
            &cfg,
            docker_plugin_config(
                &w.dir.path().join("plugin.sock"),
                &w.dir.path().join("data"),
                &w.engine_sock,
                &w.image,
                extra,
            ),
        )
        .unwrap();
        w.start_plugin();
        Some(w)
    }

    fn start_engine(&mut self) {
        let log = self.dir.path().join("engine.log");
        self.engine = Some(start_service(&self.env, &self.engine_sock, &log, T).unwrap());
    }

    fn stop_engine(&mut self) {
        if let Some(mut p) = self.engine.take() {
            p.stop(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(&self.engine_sock);
    }

    fn start_plugin(&mut self) {
        let sock = self.dir.path().join("plugin.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = Command::new(bin("interlink-docker"));
        cmd.arg("--config").arg(self.dir.path().join("plugin.yaml"));
        cmd.env("RUST_LOG", "info,interlink_plugin_docker=debug");
        let p = Proc::spawn("interlink-docker", cmd, &self.dir.path().join("plugin.log")).unwrap();
        self.plugin = Some(p);
        wait_for_unix_socket(&sock, T).expect("plugin socket");
    }

    /// A pod whose containers all use the engine's image.
    fn pod(&mut self, mut b: PodBuilder) -> PodBuilder {
        use_image(&mut b, &self.image);
        self.uids.push(b.uid().to_string());
        b
    }

    fn podman(&self, args: &[&str]) -> String {
        podman(&self.env, args)
    }

    /// Engine container ids of a pod (all states).
    fn containers_of(&self, uid: &str) -> Vec<String> {
        self.podman(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=interlink.pod-uid={uid}"),
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn logs(&self, pod: &Pod, container: &str, opts: ContainerLogOpts) -> String {
        let r = self.client.logs(&log_req(pod, container, opts)).unwrap();
        assert_eq!(r.status, 200, "logs of {container}: {}", r.text());
        r.text()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(5));
        }
        // remove every container of this test's pods, whatever happened: those
        // joined to an infra container first, then the infra containers
        for uid in &self.uids {
            remove_pod_containers(&self.env, uid);
        }
        // a failed test leaves its pods: their subPath binds must not outlive it
        let _ = interlink_plugin_kit::subpath::unmount_under(self.dir.path());
        if std::thread::panicking() {
            for name in ["plugin.log", "engine.log"] {
                let p = self.dir.path().join(name);
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("----- last lines of {name} -----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        self.stop_engine();
    }
}

fn quantity(q: &str) -> Quantity {
    Quantity(q.to_string())
}

#[test]
fn single_container_with_env_limits_and_files() {
    let Some(mut w) = World::new() else { return };
    let b = PodBuilder::new("single")
        .container("main", &["sh", "-c", "echo FOO=$FOO; echo $(cat /etc/cfg/greeting); echo $(cat /etc/sec/token); touch /scratch/x"])
        .env("main", "FOO", "bar")
        .config_map("cfg", "settings", &[("greeting", "hello from a configmap")], "main", "/etc/cfg")
        .secret("sec", "creds", &[("token", "s3cret")], "main", "/etc/sec")
        .empty_dir("scratch", &["main"], "/scratch")
        .with_container("main", |c| {
            c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some([("cpu".to_string(), quantity("500m")), ("memory".to_string(), quantity("64Mi"))].into()),
                ..Default::default()
            })
        });
    let b = w.pod(b);
    let created = w.client.create_ok(&b.data()).unwrap();
    assert_eq!(created.pod_uid, b.uid());
    assert!(
        !created.pod_jid.is_empty(),
        "the job id is the infra container's id"
    );

    let st = w
        .client
        .wait_status(&b.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(st.pod_uid, b.uid());
    assert_eq!(st.job_id, created.pod_jid);
    assert_eq!(exit_code(&st, "main"), Some(0));
    assert_eq!(reason(&st, "main").as_deref(), Some("Completed"));
    let term = container_status(&st, "main")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    let (start, end) = (term.started_at.unwrap().0, term.finished_at.unwrap().0);
    assert!(start <= end, "started {start} finished {end}");
    assert!(
        container_status(&st, "main")
            .unwrap()
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("docker://")
    );

    let out = w.logs(&b.pod, "main", ContainerLogOpts::default());
    assert_eq!(
        out, "FOO=bar\nhello from a configmap\ns3cret\n",
        "logs: {out:?}"
    );

    // the limits reached the engine
    let id = container_status(&st, "main")
        .unwrap()
        .container_id
        .clone()
        .unwrap()
        .replace("docker://", "");
    let limits = w.podman(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
        &id,
    ]);
    assert_eq!(limits, format!("500000000 {}", 64 << 20));

    // bounded logs: the last line only, then a byte limit
    let tail = w.logs(
        &b.pod,
        "main",
        ContainerLogOpts {
            tail: 1,
            ..Default::default()
        },
    );
    assert_eq!(tail, "s3cret\n");
    let bytes = w.logs(
        &b.pod,
        "main",
        ContainerLogOpts {
            limit_bytes: 4,
            ..Default::default()
        },
    );
    assert_eq!(bytes, "FOO=");

    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
    assert!(
        w.containers_of(b.uid()).is_empty(),
        "every container of the pod is removed"
    );
}

/// The DNS kubelet computed (sent by the CRI host as `dnsConfig` with
/// `dnsPolicy: None`) is each container's /etc/resolv.conf.
#[test]
fn dns_config_becomes_the_containers_resolv_conf() {
    let Some(mut w) = World::new() else { return };
    let b = PodBuilder::new("dns").container("main", &["cat", "/etc/resolv.conf"]);
    let mut b = w.pod(b);
    let spec = b.pod.spec.as_mut().unwrap();
    spec.dns_policy = Some("None".into());
    spec.dns_config = Some(
        serde_json::from_value(serde_json::json!({
            "nameservers": ["10.96.0.10"],
            "searches": ["default.svc.cluster.local", "svc.cluster.local"],
            "options": [{"name": "ndots", "value": "5"}]
        }))
        .unwrap(),
    );
    w.client.create_ok(&b.data()).unwrap();
    let st = w
        .client
        .wait_status(&b.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(0));
    let out = w.logs(&b.pod, "main", ContainerLogOpts::default());
    assert_eq!(
        out,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
    );
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
}

#[test]
fn several_containers_share_one_network_namespace() {
    let Some(mut w) = World::new() else { return };
    let cmd = [
        "sh",
        "-c",
        "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net); sleep 1",
    ];
    let a = w.pod(
        PodBuilder::new("pair")
            .container("a", &cmd)
            .container("b", &cmd),
    );
    let other = w.pod(PodBuilder::new("other").container("c", &cmd));
    w.client.create_ok(&a.data()).unwrap();
    w.client.create_ok(&other.data()).unwrap();
    // both run at once
    w.client
        .wait_status(&a.pod, T, "a and b running", |s| {
            (is_running(s, "a") || exit_code(s, "a").is_some())
                && (is_running(s, "b") || exit_code(s, "b").is_some())
        })
        .unwrap();
    let st = w
        .client
        .wait_status(&a.pod, T, "a and b to finish", all_terminated)
        .unwrap();
    assert_eq!(
        (exit_code(&st, "a"), exit_code(&st, "b")),
        (Some(0), Some(0))
    );
    w.client
        .wait_status(&other.pod, T, "c to finish", all_terminated)
        .unwrap();

    let la = w.logs(&a.pod, "a", Default::default());
    let lb = w.logs(&a.pod, "b", Default::default());
    let lc = w.logs(&other.pod, "c", Default::default());
    let net = |l: &str| {
        l.lines()
            .find_map(|x| x.strip_prefix("net="))
            .map(str::to_string)
            .unwrap()
    };
    assert!(
        la.contains("host=pair\n"),
        "the pod's hostname is its name: {la:?}"
    );
    assert!(lb.contains("host=pair\n"), "{lb:?}");
    assert_eq!(
        net(&la),
        net(&lb),
        "containers of one pod share the network namespace"
    );
    assert_ne!(net(&la), net(&lc), "another pod has its own");
    // status of both pods in one request, plus a pod the plugin never saw
    let unknown = PodBuilder::new("ghost");
    let all = w
        .client
        .status(&[a.pod.clone(), other.pod.clone(), unknown.pod.clone()])
        .unwrap();
    let uids: Vec<&str> = all.iter().map(|s| s.pod_uid.as_str()).collect();
    assert_eq!(
        uids,
        vec![a.uid(), other.uid()],
        "unknown pods are left out"
    );
}

#[test]
fn init_containers_run_first_in_order_and_a_failing_one_stops_the_pod() {
    let Some(mut w) = World::new() else { return };
    let ok = w.pod(
        PodBuilder::new("inits")
            .init_container("one", &["sh", "-c", "sleep 0.3; echo one >> /work/order"])
            .init_container("two", &["sh", "-c", "echo two >> /work/order"])
            .container(
                "main",
                &["sh", "-c", "echo main >> /work/order; cat /work/order"],
            )
            .empty_dir("work", &["one", "two", "main"], "/work"),
    );
    w.client.create_ok(&ok.data()).unwrap();
    let st = w
        .client
        .wait_status(&ok.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(st.init_containers.len(), 2);
    assert_eq!(
        (
            exit_code(&st, "one"),
            exit_code(&st, "two"),
            exit_code(&st, "main")
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(
        w.logs(&ok.pod, "main", Default::default()),
        "one\ntwo\nmain\n"
    );

    let bad = w.pod(
        PodBuilder::new("bad-init")
            .init_container("fails", &["sh", "-c", "echo no; exit 7"])
            .init_container("never", &["true"])
            .container("main", &["echo", "must not run"]),
    );
    w.client.create_ok(&bad.data()).unwrap();
    let st = w
        .client
        .wait_status(&bad.pod, T, "the init container to fail", |s| {
            exit_code(s, "fails").is_some()
        })
        .unwrap();
    assert_eq!(exit_code(&st, "fails"), Some(7));
    assert_eq!(reason(&st, "fails").as_deref(), Some("Error"));
    // give a wrongly started container time to show up, then look again
    std::thread::sleep(Duration::from_millis(500));
    let st = w.client.status_of(&bad.pod).unwrap();
    assert_eq!(reason(&st, "never").as_deref(), Some("PodInitializing"));
    assert_eq!(reason(&st, "main").as_deref(), Some("PodInitializing"));
    assert_eq!(w.logs(&bad.pod, "fails", Default::default()), "no\n");
}

#[test]
fn non_zero_exit_code_is_reported_per_container() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("exits")
            .container("ok", &["true"])
            .container("bad", &["sh", "-c", "echo oops >&2; exit 3"]),
    );
    w.client.create_ok(&b.data()).unwrap();
    let st = w
        .client
        .wait_status(&b.pod, T, "both to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "ok"), Some(0));
    assert_eq!(exit_code(&st, "bad"), Some(3));
    assert_eq!(reason(&st, "bad").as_deref(), Some("Error"));
    assert_eq!(
        w.logs(&b.pod, "bad", Default::default()),
        "oops\n",
        "stderr is in the logs"
    );
}

#[test]
fn delete_of_a_running_pod_removes_all_its_containers() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("runner")
            .container(
                "loop",
                &[
                    "sh",
                    "-c",
                    "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
                ],
            )
            .container("sleeper", &["sleep", "1000"])
            .grace(2),
    );
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "both running", |s| {
            is_running(s, "loop") && is_running(s, "sleeper")
        })
        .unwrap();
    assert_eq!(w.containers_of(b.uid()).len(), 3, "infra + two containers");
    let t = Instant::now();
    let r = w.client.delete(&b.pod).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "delete took {:?}",
        t.elapsed()
    );
    assert!(
        w.containers_of(b.uid()).is_empty(),
        "containers left: {:?}",
        w.containers_of(b.uid())
    );
    assert!(
        w.client
            .status(std::slice::from_ref(&b.pod))
            .unwrap()
            .is_empty(),
        "the pod is forgotten"
    );
    assert!(
        !w.dir.path().join("data/pods").join(b.uid()).exists(),
        "its files are removed"
    );
    // deleting again (or an unknown pod) succeeds
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
}

#[test]
fn delete_waits_a_grace_period_longer_than_the_request_timeout() {
    // engine requests time out after 2 s; stopping a container that ignores
    // TERM takes the pod's 4 s grace period, and must still succeed
    let Some(mut w) = World::with_docker_settings("  request_timeout_seconds: 2\n") else {
        return;
    };
    let b = w.pod(
        PodBuilder::new("stubborn")
            .container(
                "deaf",
                &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
            )
            .grace(4),
    );
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "running", |s| is_running(s, "deaf"))
        .unwrap();
    let t = Instant::now();
    let r = w.client.delete(&b.pod).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(3), "delete took {took:?}");
    assert!(
        w.containers_of(b.uid()).is_empty(),
        "containers left: {:?}",
        w.containers_of(b.uid())
    );
}

#[test]
fn logs_follow_while_the_container_runs() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("talker")
            .container(
                "main",
                &[
                    "sh",
                    "-c",
                    "echo first; while [ ! -e /sig/go ]; do sleep 0.05; done; echo second",
                ],
            )
            .empty_dir("sig", &["main"], "/sig"),
    );
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "running", |s| is_running(s, "main"))
        .unwrap();
    let mut s = w
        .client
        .logs_stream(&log_req(
            &b.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(s.status, 200);
    s.wait_for("first\n", T).unwrap();
    assert!(!s.text().contains("second"), "second is not printed yet");
    // release the container through its emptyDir (a directory of the plugin's data root)
    let sig = w
        .dir
        .path()
        .join("data/pods")
        .join(b.uid())
        .join("volumes/sig/go");
    std::fs::write(&sig, "").unwrap();
    s.wait_for("second\n", T).unwrap();
    s.read_to_end(T).unwrap();
    assert_eq!(s.text(), "first\nsecond\n");

    // timestamps on request
    let ts = w.logs(
        &b.pod,
        "main",
        ContainerLogOpts {
            timestamps: true,
            ..Default::default()
        },
    );
    let first = ts.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{first:?}");
    assert_eq!(text, "first");

    // unknown container / pod
    let r = w
        .client
        .logs(&log_req(&b.pod, "nope", Default::default()))
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let r = w
        .client
        .logs(&log_req(
            &PodBuilder::new("ghost").pod,
            "main",
            Default::default(),
        ))
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.error().unwrap().contains("not known"), "{}", r.text());
}

#[test]
fn plugin_restart_keeps_tracking_and_finishes_starting_the_pod() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("survivor")
            .init_container(
                "slow-init",
                &["sh", "-c", "sleep 2; echo init-done > /w/flag"],
            )
            .container("main", &["sh", "-c", "cat /w/flag; sleep 1000"])
            .empty_dir("w", &["slow-init", "main"], "/w")
            .grace(1),
    );
    let created = w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "the init container running", |s| {
            is_running(s, "slow-init")
        })
        .unwrap();
    // crash the plugin while the init container runs: nothing would start main
    w.plugin.as_mut().unwrap().kill9();
    w.plugin = None;
    std::thread::sleep(Duration::from_millis(300));
    w.start_plugin();
    let st = w
        .client
        .wait_status(&b.pod, T, "main running after the restart", |s| {
            is_running(s, "main")
        })
        .unwrap();
    assert_eq!(st.job_id, created.pod_jid, "same pod, same infra container");
    assert_eq!(exit_code(&st, "slow-init"), Some(0));
    wait_until(T, "main's output", || {
        w.logs(&b.pod, "main", Default::default()) == "init-done\n"
    })
    .unwrap();
    // and a second, graceful restart while main runs
    w.plugin.as_mut().unwrap().stop(Duration::from_secs(5));
    w.start_plugin();
    let st = w.client.status_of(&b.pod).unwrap();
    assert!(is_running(&st, "main"), "{st:?}");
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
    assert!(w.containers_of(b.uid()).is_empty());
}

#[test]
fn unknown_image_is_refused_with_a_reason() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(PodBuilder::new("noimage").container("main", &["true"]));
    let b = b.with_container("main", |c| {
        c.image = Some("docker.io/library/interlink-no-such-image:0.0.0".into())
    });
    let t = Instant::now();
    let r = w.client.create(&b.data()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    let err = r.error().unwrap();
    assert!(
        err.contains("interlink-no-such-image") && err.contains("pull"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        w.containers_of(b.uid()).is_empty(),
        "nothing is left behind"
    );
    // the pod's status says why
    let st = w.client.status_of(&b.pod).unwrap();
    assert_eq!(reason(&st, "main").as_deref(), Some("ErrImagePull"));
    assert!(
        message(&st, "main")
            .unwrap()
            .contains("interlink-no-such-image")
    );

    // a ConfigMap that was not sent: refused before anything is created
    let b2 = w.pod(
        PodBuilder::new("nocm")
            .container("main", &["true"])
            .config_map("cfg", "x", &[], "main", "/cfg"),
    );
    let mut data = b2.data();
    for c in &mut data.containers {
        c.config_maps.clear();
    }
    let r = w.client.create(&data).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.error().unwrap().contains("ConfigMap \"x\" was not sent"),
        "{}",
        r.text()
    );
    let st = w.client.status_of(&b2.pod).unwrap();
    assert_eq!(
        reason(&st, "main").as_deref(),
        Some("CreateContainerConfigError")
    );

    // a malformed body
    let r = w
        .client
        .request("POST", "/create", Some(b"{not json"))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().is_some());
    // deleting the refused pods works and forgets them
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
    assert!(
        w.client
            .status(std::slice::from_ref(&b.pod))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn engine_stopped_then_restarted() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("steady")
            .container("main", &["sleep", "1000"])
            .grace(1),
    );
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "running", |s| is_running(s, "main"))
        .unwrap();
    assert_eq!(w.client.ping().unwrap().status, 200);

    w.stop_engine();
    let r = w
        .client
        .request(
            "GET",
            "/status",
            Some(&serde_json::to_vec(std::slice::from_ref(&b.pod)).unwrap()),
        )
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    let err = r.error().unwrap();
    assert!(
        err.contains("unreachable") && err.contains("engine.sock"),
        "{err}"
    );
    let r = w.client.ping().unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    let other = w.pod(PodBuilder::new("late").container("main", &["true"]));
    let t = Instant::now();
    let r = w.client.create(&other.data()).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        t.elapsed()
    );

    // the engine comes back: the running container was never touched
    w.start_engine();
    let st = w
        .client
        .wait_status(&b.pod, T, "status again", |s| is_running(s, "main"))
        .unwrap();
    assert!(is_running(&st, "main"));
    assert_eq!(w.client.ping().unwrap().status, 200);
    // the refused pod can now be created
    w.client.create_ok(&other.data()).unwrap();
    w.client
        .wait_status(&other.pod, T, "late pod done", all_terminated)
        .unwrap();
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
    assert_eq!(w.client.delete(&other.pod).unwrap().status, 200);
    assert!(w.containers_of(b.uid()).is_empty() && w.containers_of(other.uid()).is_empty());
}

// ------------------------------------------------------------ security: subPath

/// CVE-2017-1002101's pattern: an init container swaps a directory of an emptyDir
/// for a link to `/`; the main container mounts it with `subPath`. The plugin
/// opens the subPath at the moment of use without following links: the main
/// container does not start, says why, and nothing on the host is touched.
#[test]
fn security_subpath_symlink_swapped_by_an_init_container_is_refused() {
    let Some(mut w) = World::new() else { return };
    let marker = format!("il-subpath-escape-{}", std::process::id());
    let host_marker = Path::new("/tmp").join(&marker);
    let _ = std::fs::remove_file(&host_marker);
    let b = w.pod(
        PodBuilder::new("subpath-escape")
            .init_container(
                "swap",
                &[
                    "sh",
                    "-c",
                    "mkdir -p /data/d && ln -s / /data/escape && ln -s / /data/d/x",
                ],
            )
            .container(
                "main",
                &[
                    "sh",
                    "-c",
                    &format!("ls /host; touch /host/tmp/{marker} /deep/{marker}"),
                ],
            )
            .empty_dir("data", &["swap"], "/data")
            .sub_path_mount("main", "data", "escape", "/host")
            .sub_path_mount("main", "data", "d/x/tmp", "/deep"),
    );
    w.client.create_ok(&b.data()).unwrap();
    let st = w
        .client
        .wait_status(&b.pod, T, "main to be refused", |s| {
            reason(s, "main").as_deref() == Some("CreateContainerConfigError")
        })
        .unwrap();
    assert_eq!(exit_code(&st, "swap"), Some(0));
    let msg = message(&st, "main").unwrap_or_default();
    assert!(
        msg.contains("\"escape\"") && msg.contains("symbolic link"),
        "{msg}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let st = w.client.status_of(&b.pod).unwrap();
    assert!(!is_running(&st, "main") && exit_code(&st, "main").is_none());
    assert!(!host_marker.exists(), "the container reached the host's /");
    // the plugin's own mount points are gone with the pod
    let data = w.dir.path().join("data/pods").join(b.uid());
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
    assert!(!data.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(b.uid()), "a subPath bind outlived its pod");
}

/// The legitimate use: subPaths of an emptyDir that an init container filled
/// (a directory and a file), and of a ConfigMap volume, in the main container.
#[test]
fn subpaths_of_real_directories_and_files_work() {
    let Some(mut w) = World::new() else { return };
    let b = w.pod(
        PodBuilder::new("subpath-ok")
            .init_container(
                "fill",
                &["sh", "-c", "mkdir -p /data/sub/dir && echo deep > /data/sub/dir/f && echo top > /data/file"],
            )
            .container(
                "main",
                &["sh", "-c", "cat /mnt/dir/dir/f /mnt/one; echo $(cat /etc/greeting); ls /mnt/dir; touch /mnt/new/x && echo wrote"],
            )
            .empty_dir("data", &["fill"], "/data")
            .config_map("cfg", "settings", &[("greeting", "hello")], "main", "/etc/cfgdir")
            .sub_path_mount("main", "data", "sub", "/mnt/dir")
            .sub_path_mount("main", "data", "file", "/mnt/one")
            .sub_path_mount("main", "cfg", "greeting", "/etc/greeting")
            .sub_path_mount("main", "data", "made/by/plugin", "/mnt/new"),
    );
    w.client.create_ok(&b.data()).unwrap();
    let st = w
        .client
        .wait_status(&b.pod, T, "main to finish", all_terminated)
        .unwrap();
    let out = w.logs(&b.pod, "main", ContainerLogOpts::default());
    assert_eq!(exit_code(&st, "main"), Some(0), "{out}");
    assert_eq!(out, "deep\ntop\nhello\ndir\nwrote\n");
    assert_eq!(w.client.delete(&b.pod).unwrap().status, 200);
}
