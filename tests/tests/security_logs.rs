//! `/getLogs` with out-of-range numbers answers, and does not disturb other
//! readers: a `SinceSeconds` reaching before the earliest representable time
//! (`400000000000`, `i64::MAX`) used to panic the Slurm plugin's handler on an
//! unchecked subtraction. Each plugin must answer every line (the whole log is
//! "since then") while a follow stream opened before goes on to its end; and
//! `Tail` answers the last lines.
//!
//! The Slurm part runs real jobs on the one-node cluster of scripts/slurm-start.sh
//! (container runtime `none`); without a controller it prints why and passes,
//! unless `INTERLINK_REQUIRE_BACKENDS=1`.
//!
//! `/getLogs` also names the pod twice: by `PodUID` and by `Namespace`/`PodName`. The
//! real `interlink-local` plugin answers only when both name the same pod (the
//! names it got at `/create`); otherwise a 404 with a JSON message, as for an
//! unknown UID, so knowing a UID does not reach its logs under another name.

use std::path::Path;
use std::time::{Duration, Instant};

use interlink::ContainerLogOpts;
use interlink_test_harness::Proc;
use interlink_test_harness::plugin::{
    PluginClient, PodBuilder, ReapLocalPods, all_terminated, log_req, random_uid, start_local,
};
use interlink_test_harness::slurm::{self, SlurmPlugin, slurm_conf};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// The pod: three lines, then (once `go` exists) a last one.
fn pod(go: &Path) -> Value {
    let script = format!(
        "echo line 1; echo line 2; echo line 3; while [ ! -e {} ]; do sleep 0.1; done; echo after",
        go.display()
    );
    json!({
        "metadata": {"name": "huge-since", "namespace": "default", "uid": random_uid()},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:stable", "command": ["sh", "-c", script]}]}
    })
}

fn log_body(pod: &Value, opts: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Namespace": "default", "PodUID": pod["metadata"]["uid"],
        "PodName": pod["metadata"]["name"], "ContainerName": "main", "Opts": opts,
    }))
    .unwrap()
}

fn logs(c: &PluginClient, pod: &Value, opts: Value) -> (u16, String) {
    let r = c
        .request("GET", "/getLogs", Some(&log_body(pod, opts)))
        .unwrap();
    (r.status, r.text())
}

/// The checks, the same for every plugin: `proc` is the plugin, `client` talks to it.
fn huge_since_answers_and_follow_survives(proc: &mut Proc, client: &PluginClient, dir: &Path) {
    let go = dir.join("go");
    let pod = pod(&go);
    let body = serde_json::to_vec(&json!({"pod": pod, "container": [{"name": "main"}]})).unwrap();
    let r = client.request("POST", "/create", Some(&body)).unwrap();
    assert_eq!(r.status, 200, "create: {}", r.text());

    let mut follow = client
        .stream(
            "GET",
            "/getLogs",
            Some(&log_body(&pod, json!({"Follow": true}))),
        )
        .unwrap();
    assert_eq!(follow.status, 200);
    follow.wait_for("line 3\n", T).unwrap();

    for secs in [400_000_000_000i64, i64::MAX] {
        let (code, text) = logs(client, &pod, json!({"SinceSeconds": secs}));
        assert_eq!(code, 200, "SinceSeconds {secs}: {text}");
        assert_eq!(text, "line 1\nline 2\nline 3\n", "SinceSeconds {secs}");
        let (code, text) = logs(client, &pod, json!({"SinceSeconds": secs, "Tail": 1}));
        assert_eq!((code, text.as_str()), (200, "line 3\n"));
    }
    assert!(proc.alive(), "the plugin is still running");

    // the follow stream opened before goes on to the container's end
    std::fs::write(&go, "").unwrap();
    follow.wait_for("after\n", T).unwrap();
    follow.read_to_end(T).unwrap();
    assert_eq!(follow.text(), "line 1\nline 2\nline 3\nafter\n");

    let (code, text) = logs(client, &pod, json!({"Tail": 2}));
    assert_eq!((code, text.as_str()), (200, "line 3\nafter\n"));
    let (code, text) = logs(client, &pod, json!({"Tail": 1, "Timestamps": true}));
    assert_eq!(code, 200);
    assert!(
        text.ends_with(" after\n") && text.len() > "after\n".len() + 20,
        "{text:?}"
    );
    let body = serde_json::to_vec(&pod).unwrap();
    let r = client.request("POST", "/delete", Some(&body)).unwrap();
    assert!(r.status < 300, "delete: {}", r.text());
}

#[test]
fn local_plugin_answers_a_huge_since_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (mut plugin, client) = start_local(dir.path()).unwrap();
    huge_since_answers_and_follow_survives(&mut plugin, &client, dir.path());
}

#[test]
fn slurm_plugin_answers_a_huge_since_seconds() {
    let Some(conf) = slurm_conf("Slurm part of the log test") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("il-slurm-logs-")
        .tempdir()
        .unwrap();
    let SlurmPlugin {
        proc: mut plugin,
        port,
    } = slurm::start_plugin(&conf, dir.path(), "  container_runtime: none\n", &[]).unwrap();
    let mut client = PluginClient::tcp(port);
    client.timeout = Duration::from_secs(90);
    let start = Instant::now();
    huge_since_answers_and_follow_survives(&mut plugin, &client, dir.path());
    assert!(
        !plugin.output().contains("panicked"),
        "the plugin panicked:\n{}",
        plugin.output()
    );
    eprintln!("slurm part took {:?}", start.elapsed());
}

#[test]
fn get_logs_checks_namespace_and_pod_name_against_the_uid() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("owner").container("main", &["sh", "-c", "echo private-output"]);
    c.create_ok(&p.data()).unwrap();
    c.wait_status(
        &p.pod,
        Duration::from_secs(20),
        "main to finish",
        all_terminated,
    )
    .unwrap();

    let good = log_req(&p.pod, "main", ContainerLogOpts::default());
    let r = c.logs(&good).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "private-output\n");

    let cases = [
        ("other-team", "owner", "another namespace"),
        ("default", "intruder", "another pod name"),
        ("", "", "no names"),
        ("default", "", "no pod name"),
    ];
    for (ns, name, case) in cases {
        let mut req = good.clone();
        req.namespace = ns.into();
        req.pod_name = name.into();
        let r = c.logs(&req).unwrap();
        assert_eq!(r.status, 404, "{case}: {}", r.text());
        let msg = r
            .error()
            .unwrap_or_else(|| panic!("{case}: no JSON error: {}", r.text()));
        assert!(msg.contains(p.uid()), "{case}: {msg}");
        assert!(
            !r.text().contains("private-output"),
            "{case}: the log leaked"
        );
    }
    // a follow request is checked the same way, before any stream starts
    let mut req = good.clone();
    req.pod_name = "intruder".into();
    req.opts.follow = true;
    let r = c.logs(&req).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    c.delete(&p.pod).unwrap().ok().unwrap();
}
