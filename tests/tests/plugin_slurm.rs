//! The Slurm plugin (`interlink-slurm`) through its HTTP API, running real jobs on
//! the one-node cluster of scripts/slurm-start.sh (container runtime `none`; the
//! podman runtime tests also use the engine of scripts/engine-setup.sh).
//!
//! Without a reachable slurmctld these tests print why and pass, unless
//! `INTERLINK_REQUIRE_BACKENDS=1` (scripts/test.sh sets it when it started Slurm):
//! then they fail.
//!
//! The slurmctld fault test stops the controller; it holds a write lock that the
//! other tests share for reading, so nothing else runs while the controller is away.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use interlink_test_harness::engine::engine;
use interlink_test_harness::plugin::{PluginClient, Response, Streaming, random_uid};
use interlink_test_harness::slurm::{self, SlurmPlugin, slurm_conf};
use interlink_test_harness::{Proc, backends_required, repo_root};
use serde_json::{Value, json};

static CONTROLLER: RwLock<()> = RwLock::new(());

// ---------------------------------------------------------------- HTTP

/// Send JSON with the shared plugin-test client; any status.
fn request(port: u16, method: &str, path: &str, body: &Value) -> Response {
    let body = serde_json::to_vec(body).unwrap();
    let mut client = PluginClient::tcp(port);
    client.timeout = Duration::from_secs(90);
    client
        .request(method, path, Some(&body))
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

// ---------------------------------------------------------------- plugin

struct Plugin {
    proc: Proc,
    port: u16,
    data: PathBuf,
}

fn start_plugin(conf: &Path, data: &Path, extra: &str) -> Plugin {
    start_plugin_env(
        conf,
        data,
        &format!("  container_runtime: none\n{extra}"),
        &[],
    )
}

fn start_plugin_env(conf: &Path, data: &Path, extra: &str, env: &[(String, String)]) -> Plugin {
    let SlurmPlugin { proc, port } = slurm::start_plugin(conf, data, extra, env).unwrap();
    Plugin {
        proc,
        port,
        data: data.to_path_buf(),
    }
}

impl Plugin {
    fn create(&self, pod: &Value) -> (u16, Value) {
        self.create_with(pod, json!([]))
    }

    fn create_with(&self, pod: &Value, containers: Value) -> (u16, Value) {
        let r = request(
            self.port,
            "POST",
            "/create",
            &json!({"pod": pod, "container": containers}),
        );
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    fn status(&self, pods: &[&Value]) -> (u16, Value) {
        let r = request(self.port, "GET", "/status", &json!(pods));
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_else(|_| json!(r.text())),
        )
    }

    fn status_of(&self, pod: &Value) -> Value {
        let (code, body) = self.status(&[pod]);
        assert_eq!(code, 200, "status: {body}");
        body.as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Poll the pod's status until `done` holds for it.
    fn wait(
        &self,
        pod: &Value,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let st = self.status_of(pod);
            if done(&st) {
                return st;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; last status: {st:#}\nplugin log:\n{}",
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn wait_finished(&self, pod: &Value) -> Value {
        self.wait(
            pod,
            "every container terminated",
            Duration::from_secs(60),
            |st| {
                let all = |k: &str| {
                    st[k]
                        .as_array()
                        .is_some_and(|a| a.iter().all(|c| !c["state"]["terminated"].is_null()))
                };
                !st.is_null() && all("containers") && all("initContainers")
            },
        )
    }

    fn wait_running(&self, pod: &Value, container: &str) -> Value {
        self.wait(
            pod,
            &format!("{container} running"),
            Duration::from_secs(60),
            |st| !state(st, container)["running"].is_null(),
        )
    }

    fn log_body(pod: &Value, container: &str, opts: Value) -> Value {
        json!({
            "Namespace": pod["metadata"]["namespace"], "PodUID": pod["metadata"]["uid"],
            "PodName": pod["metadata"]["name"], "ContainerName": container, "Opts": opts,
        })
    }

    fn logs(&self, pod: &Value, container: &str, opts: Value) -> Response {
        request(
            self.port,
            "GET",
            "/getLogs",
            &Self::log_body(pod, container, opts),
        )
    }

    fn follow(&self, pod: &Value, container: &str) -> Streaming {
        let body =
            serde_json::to_vec(&Self::log_body(pod, container, json!({"Follow": true}))).unwrap();
        PluginClient::tcp(self.port)
            .stream("GET", "/getLogs", Some(&body))
            .unwrap()
    }

    fn log_text(&self, pod: &Value, container: &str, opts: Value) -> String {
        let r = self.logs(pod, container, opts);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// Wait until the container's log holds `text` (its trap is set, say).
    fn wait_log(&self, pod: &Value, container: &str, text: &str) {
        interlink_test_harness::wait_until(
            Duration::from_secs(30),
            &format!("{text:?} in the log of {container}"),
            || self.log_text(pod, container, json!({})).contains(text),
        )
        .unwrap();
    }

    fn delete(&self, pod: &Value) -> u16 {
        request(self.port, "POST", "/delete", pod).status
    }

    fn squeue_calls(&self) -> u64 {
        let text = request(self.port, "GET", "/metrics", &Value::Null).text();
        text.lines()
            .find(|l| l.starts_with("interlink_plugin_slurm_squeue_calls_total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no squeue counter in /metrics:\n{text}"))
    }
}

// ---------------------------------------------------------------- pods

fn sh(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script]})
}

fn pod(name: &str, spec: Value, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": random_uid(), "annotations": annotations}, "spec": spec})
}

fn find<'a>(st: &'a Value, name: &str) -> &'a Value {
    for k in ["containers", "initContainers"] {
        if let Some(c) = st[k]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
        {
            return c;
        }
    }
    &Value::Null
}

fn state<'a>(st: &'a Value, name: &str) -> &'a Value {
    &find(st, name)["state"]
}

fn terminated<'a>(st: &'a Value, name: &str) -> &'a Value {
    &state(st, name)["terminated"]
}

fn scontrol_job(conf: &Path, jid: &str) -> String {
    let o = Command::new("scontrol")
        .args(["-o", "show", "job", jid])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("il-slurm-{name}-"))
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------- tests

#[test]
fn single_container_runs_as_a_slurm_job() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("single");
    let p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "single",
        json!({"containers": [sh("main", "echo hello from slurm; echo second line")]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200, "{created}");
    assert_eq!(created["PodUID"], pod["metadata"]["uid"]);
    let jid = created["PodJID"].as_str().unwrap().to_string();
    assert!(jid.parse::<u64>().is_ok(), "job id {jid:?}");
    assert!(
        scontrol_job(&conf, &jid).contains("JobName=default-single"),
        "the job is a real Slurm job"
    );

    let st = p.wait_finished(&pod);
    assert_eq!(st["JID"], jid.as_str());
    let t = terminated(&st, "main");
    assert_eq!(t["exitCode"], 0, "{st:#}");
    assert_eq!(t["reason"], "Completed");
    assert!(
        t["startedAt"].is_string() && t["finishedAt"].is_string(),
        "{t}"
    );
    assert_eq!(find(&st, "main")["image"], "busybox:1.36");

    assert_eq!(
        p.log_text(&pod, "main", json!({})),
        "hello from slurm\nsecond line\n"
    );
    assert_eq!(
        p.log_text(&pod, "main", json!({"Tail": 1})),
        "second line\n"
    );
    assert_eq!(
        p.log_text(&pod, "main", json!({"LimitBytes": 0, "Bytes": 5})),
        "hello"
    );
    let stamped = p.log_text(&pod, "main", json!({"Timestamps": true, "Tail": 1}));
    let (ts, text) = stamped.trim_end().split_once(' ').unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{stamped}");
    assert_eq!(text, "second line");
    let r = p.logs(&pod, "nosuch", json!({}));
    assert_eq!(r.status, 404);
    assert!(r.error().unwrap().contains("nosuch"), "{}", r.text());

    // an unknown pod is answered, not an error
    let stranger = pod_named_unknown();
    let (code, body) = p.status(&[&pod, &stranger]);
    assert_eq!(code, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(p.delete(&pod), 200);
}

fn pod_named_unknown() -> Value {
    pod(
        "stranger",
        json!({"containers": [sh("c", "true")]}),
        json!({}),
    )
}

#[test]
fn several_containers_run_together_with_env_and_configmap() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("several");
    let p = start_plugin(&conf, dir.path(), "");
    let spec = json!({
    "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}],
    "containers": [
        {"name": "a", "image": "busybox", "command": ["sh", "-c", "echo start; sleep 1; echo \"end $GREETING\""],
         "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}]},
        {"name": "b", "image": "busybox", "command": ["sh", "-c", "echo start; sleep 1; echo end $(cat $INTERLINK_VOLUME_CFG/greeting)"],
         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}
    ]});
    let pod = pod("several", spec, json!({}));
    let cm = json!({"metadata": {"name": "settings"}, "data": {"greeting": "bonjour"}});
    let data = json!([{"name": "a", "configMaps": [cm]}, {"name": "b", "configMaps": [cm]}]);
    let (code, body) = p.create_with(&pod, data);
    assert_eq!(code, 200, "{body}");
    let st = p.wait_finished(&pod);
    for c in ["a", "b"] {
        assert_eq!(terminated(&st, c)["exitCode"], 0, "{st:#}");
    }
    let times = |c: &str| -> (jiff::Timestamp, jiff::Timestamp) {
        let text = p.log_text(&pod, c, json!({"Timestamps": true}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{c}: {text}");
        assert!(lines[1].ends_with("end bonjour"), "{c}: {text}");
        let t = |l: &str| {
            l.split(' ')
                .next()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        };
        (t(lines[0]), t(lines[1]))
    };
    let (a0, a1) = times("a");
    let (b0, b1) = times("b");
    assert!(
        a0 < b1 && b0 < a1,
        "containers ran one after the other: a {a0}..{a1}, b {b0}..{b1}"
    );
    assert_eq!(p.delete(&pod), 200);
}

#[test]
fn init_containers_run_in_order_before_the_others() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("init");
    let p = start_plugin(&conf, dir.path(), "");
    let spec = |second_init: &str| {
        json!({
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "initContainers": [
                {"name": "one", "image": "busybox", "command": ["sh", "-c", "echo one >> $INTERLINK_VOLUME_SHARED/order"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                {"name": "two", "image": "busybox", "command": ["sh", "-c", second_init],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
            ],
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "cat $INTERLINK_VOLUME_SHARED/order"],
                            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}]
        })
    };
    let good = pod(
        "init-ok",
        spec("echo two >> $INTERLINK_VOLUME_SHARED/order"),
        json!({}),
    );
    let bad = pod("init-bad", spec("echo failing; exit 5"), json!({}));
    assert_eq!(p.create(&good).0, 200);
    assert_eq!(p.create(&bad).0, 200);

    let st = p.wait_finished(&good);
    assert_eq!(terminated(&st, "one")["exitCode"], 0, "{st:#}");
    assert_eq!(terminated(&st, "two")["exitCode"], 0);
    assert_eq!(terminated(&st, "main")["exitCode"], 0);
    assert_eq!(p.log_text(&good, "main", json!({})), "one\ntwo\n");

    let st = p.wait_finished(&bad);
    assert_eq!(terminated(&st, "two")["exitCode"], 5, "{st:#}");
    assert_eq!(terminated(&st, "two")["reason"], "Error");
    let main = terminated(&st, "main");
    assert_eq!(main["reason"], "NotStarted", "{st:#}");
    assert!(
        main["message"]
            .as_str()
            .unwrap()
            .contains("\"two\" exited with code 5"),
        "{main}"
    );
    assert_eq!(p.log_text(&bad, "main", json!({})), "");
    assert_eq!(p.delete(&good), 200);
    assert_eq!(p.delete(&bad), 200);
}

#[test]
fn failing_container_reports_its_own_exit_code() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("exit");
    let p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "exits",
        json!({"containers": [sh("fine", "echo ok"), sh("broken", "echo bad >&2; exit 3")]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200);
    let st = p.wait_finished(&pod);
    assert_eq!(terminated(&st, "fine")["exitCode"], 0, "{st:#}");
    assert_eq!(terminated(&st, "fine")["reason"], "Completed");
    assert_eq!(terminated(&st, "broken")["exitCode"], 3);
    assert_eq!(terminated(&st, "broken")["reason"], "Error");
    assert_eq!(p.log_text(&pod, "broken", json!({})), "bad\n");
    // Slurm agrees the job failed with that code
    let jid = created["PodJID"].as_str().unwrap();
    let info = scontrol_job(&conf, jid);
    assert!(
        info.contains("JobState=FAILED") && info.contains("ExitCode=3:0"),
        "{info}"
    );
    assert_eq!(p.delete(&pod), 200);
}

#[test]
fn delete_cancels_a_running_pod_and_cleans_up() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("delete");
    let p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "doomed",
        json!({"containers": [sh("sleeper", "echo sleeping; sleep 120")]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200);
    let jid = created["PodJID"].as_str().unwrap().to_string();
    p.wait_running(&pod, "sleeper");
    let pod_dir = p
        .data
        .join("root/pods")
        .join(pod["metadata"]["uid"].as_str().unwrap());
    assert!(pod_dir.join("job.sh").exists());

    assert_eq!(p.delete(&pod), 200);
    // TERM ends `sh` (no trap): the job fails with 143, or is cancelled
    interlink_test_harness::wait_until(Duration::from_secs(30), "the job ended", || {
        let j = scontrol_job(&conf, &jid);
        j.contains("JobState=CANCELLED") || j.contains("JobState=FAILED")
    })
    .unwrap();
    interlink_test_harness::wait_until(
        Duration::from_secs(45),
        "the pod directory removed",
        || !pod_dir.exists(),
    )
    .unwrap();
    let (code, body) = p.status(&[&pod]);
    assert_eq!(
        (code, body.as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    // deleting again is fine
    assert_eq!(p.delete(&pod), 200);
}

#[test]
fn delete_sends_term_and_the_container_ends_by_itself() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("term");
    let p = start_plugin(&conf, dir.path(), "");
    let marker = dir.path().join("got-term");
    let script = format!(
        "trap 'echo got TERM; echo bye > {}; exit 143' TERM; echo ready; while :; do sleep 1; done",
        marker.display()
    );
    // a long grace period: delete must answer at once, not wait it out
    let pod = pod(
        "graceful",
        json!({"terminationGracePeriodSeconds": 600, "containers": [sh("main", &script)]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200, "{created}");
    let jid = created["PodJID"].as_str().unwrap().to_string();
    p.wait_running(&pod, "main");
    p.wait_log(&pod, "main", "ready");
    let started = Instant::now();
    assert_eq!(p.delete(&pod), 200);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "delete waited out the grace period"
    );
    interlink_test_harness::wait_until(Duration::from_secs(30), "the TERM trap ran", || {
        marker.exists()
    })
    .unwrap();
    // the job ended by the script's own exit with the container's code, not by a kill
    interlink_test_harness::wait_until(Duration::from_secs(30), "the job ended", || {
        !scontrol_job(&conf, &jid).contains("JobState=RUNNING")
    })
    .unwrap();
    let job = scontrol_job(&conf, &jid);
    assert!(
        job.contains("JobState=FAILED") && job.contains("ExitCode=143:0"),
        "{job}\nplugin log:\n{}",
        p.proc.output()
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "bye\n");
    // then the pod is forgotten
    interlink_test_harness::wait_until(Duration::from_secs(30), "the pod forgotten", || {
        p.status(&[&pod]).1.as_array().is_some_and(Vec::is_empty)
    })
    .unwrap();
}

#[test]
fn delete_kills_a_pod_that_outlives_its_grace_period_even_across_a_restart() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("kill");
    let mut p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "stubborn",
        json!({"terminationGracePeriodSeconds": 8,
               "containers": [sh("main", "trap '' TERM; echo ready; while :; do sleep 1; done")]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200, "{created}");
    let jid = created["PodJID"].as_str().unwrap().to_string();
    p.wait_running(&pod, "main");
    p.wait_log(&pod, "main", "ready");
    assert_eq!(p.delete(&pod), 200);
    // TERM is ignored: the pod is still there, terminating, during its grace period
    let st = p.status_of(&pod);
    assert!(!state(&st, "main")["running"].is_null(), "{st:#}");
    // deleting again changes nothing
    assert_eq!(p.delete(&pod), 200);
    // the plugin crashes during the grace period: the restarted one finishes the delete
    p.proc.kill9();
    let p = start_plugin(&conf, dir.path(), "");
    interlink_test_harness::wait_until(Duration::from_secs(40), "the job killed", || {
        let j = scontrol_job(&conf, &jid);
        j.contains("JobState=CANCELLED") || j.contains("JobState=FAILED")
    })
    .unwrap();
    interlink_test_harness::wait_until(Duration::from_secs(30), "the pod forgotten", || {
        p.status(&[&pod]).1.as_array().is_some_and(Vec::is_empty)
    })
    .unwrap();
    let log = p.proc.output();
    assert!(
        log.contains("killed at the end of its grace period"),
        "{log}"
    );
}

#[test]
fn logs_follow_while_the_container_runs() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("follow");
    let p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "talker",
        json!({"containers": [sh("talk", "echo line1; sleep 1.5; echo line2; sleep 1.5; echo line3")]}),
        json!({}),
    );
    assert_eq!(p.create(&pod).0, 200);
    p.wait_running(&pod, "talk");
    let mut r = p.follow(&pod, "talk");
    assert_eq!(r.status, 200);
    r.wait_for("line1\n", Duration::from_secs(10)).unwrap();
    assert!(
        !r.text().contains("line3") && !r.done,
        "the first line came only at the end: {:?}",
        r.text()
    );
    r.read_to_end(Duration::from_secs(30)).unwrap();
    let all = r.text();
    assert_eq!(all, "line1\nline2\nline3\n");
    let st = p.wait_finished(&pod);
    assert_eq!(terminated(&st, "talk")["exitCode"], 0);
    assert_eq!(p.delete(&pod), 200);
}

#[test]
fn plugin_restart_keeps_tracking_a_running_pod() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("restart");
    let mut p = start_plugin(&conf, dir.path(), "");
    let pod = pod(
        "survivor",
        json!({"containers": [sh("work", "echo begin; sleep 3; echo finished")]}),
        json!({}),
    );
    let (code, created) = p.create(&pod);
    assert_eq!(code, 200);
    p.wait_running(&pod, "work");
    p.proc.kill9(); // a crash, not a clean stop
    let p2 = start_plugin(&conf, dir.path(), "");
    let st = p2.status_of(&pod);
    assert_eq!(st["JID"], created["PodJID"], "{st:#}");
    assert!(
        !state(&st, "work")["running"].is_null() || !state(&st, "work")["terminated"].is_null(),
        "{st:#}"
    );
    let st = p2.wait_finished(&pod);
    assert_eq!(terminated(&st, "work")["exitCode"], 0, "{st:#}");
    assert_eq!(p2.log_text(&pod, "work", json!({})), "begin\nfinished\n");
    assert_eq!(p2.delete(&pod), 200);
}

#[test]
fn refused_pods_get_a_clear_error_and_status() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("refused");
    let p = start_plugin(
        &conf,
        dir.path(),
        // the admin lists the partition, so that sbatch is the one to refuse it
        "  flavors:\n    small: { cpus: 1, memory_mib: 64 }\n  allowed_partitions: [nosuchpartition]\n",
    );
    let c = json!({"containers": [sh("c", "true")]});

    // sbatch itself refuses the flags: its message comes back with a 422
    let bad_partition = pod(
        "badpart",
        c.clone(),
        json!({"slurm-job.vk.io/flags": "--partition=nosuchpartition"}),
    );
    let (code, body) = p.create(&bad_partition);
    assert_eq!(code, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("sbatch") && msg.to_lowercase().contains("partition"),
        "{msg}"
    );
    let st = p.status_of(&bad_partition);
    assert_eq!(terminated(&st, "c")["reason"], "SubmitFailed", "{st:#}");
    assert!(
        terminated(&st, "c")["message"]
            .as_str()
            .unwrap()
            .contains("partition")
    );

    let bogus = pod(
        "bogus",
        c.clone(),
        json!({"slurm-job.vk.io/flags": "--no-such-option=1"}),
    );
    let (code, body) = p.create(&bogus);
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no-such-option"),
        "{body}"
    );

    // refused before sbatch: not a flag, unknown flavor
    let not_flag = pod(
        "notflag",
        c.clone(),
        json!({"slurm-job.vk.io/flags": "debug"}),
    );
    let (code, body) = p.create(&not_flag);
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not a flag"),
        "{body}"
    );
    let flavor = pod(
        "flavor",
        c.clone(),
        json!({"slurm-job.vk.io/flavor": "huge"}),
    );
    let (code, body) = p.create(&flavor);
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("huge")
            && body["error"].as_str().unwrap().contains("small")
    );

    // a pod without a command cannot run without a container runtime
    let no_cmd = pod(
        "nocmd",
        json!({"containers": [{"name": "c", "image": "busybox"}]}),
        json!({}),
    );
    let (code, body) = p.create(&no_cmd);
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("entrypoint"),
        "{body}"
    );

    // malformed input is a 400
    let r = request(
        p.port,
        "POST",
        "/create",
        &json!({"pod": {"metadata": {"name": "x"}}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    for pd in [&bad_partition, &bogus, &not_flag, &flavor, &no_cmd] {
        assert_eq!(p.delete(pd), 200);
    }
}

#[test]
fn pending_jobs_wait_with_slurms_reason_and_status_is_one_squeue() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("pending");
    // a long cache window: concurrent requests share one squeue answer
    let p = start_plugin(&conf, dir.path(), "  status_cache_ms: 1500\n");
    let pods: Vec<Value> = (0..4)
        .map(|i| {
            pod(
                &format!("held-{i}"),
                json!({"containers": [sh("c", "true")]}),
                json!({"slurm-job.vk.io/flags": "--hold"}),
            )
        })
        .collect();
    for pd in &pods {
        assert_eq!(p.create(pd).0, 200);
    }
    let refs: Vec<&Value> = pods.iter().collect();
    let before = p.squeue_calls();
    let (code, body) = p.status(&refs);
    assert_eq!(
        p.squeue_calls() - before,
        1,
        "one squeue for {} pods",
        pods.len()
    );
    assert_eq!(code, 200, "{body}");
    for st in body.as_array().unwrap() {
        let w = &state(st, "c")["waiting"];
        assert_eq!(w["reason"], "JobHeldUser", "{st:#}");
        assert!(w["message"].as_str().unwrap().contains("pending"), "{w}");
    }
    let before = p.squeue_calls();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| p.status(&refs))).collect();
        for h in handles {
            assert_eq!(h.join().unwrap().0, 200);
        }
    });
    assert!(
        p.squeue_calls() - before <= 1,
        "concurrent status requests share squeue answers"
    );
    // cancelled while pending: terminated with a readable reason
    let jid = p.status_of(&pods[0])["JID"].as_str().unwrap().to_string();
    let o = Command::new("scancel")
        .arg(&jid)
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    assert!(o.status.success());
    let st = p.wait(&pods[0], "cancelled", Duration::from_secs(20), |st| {
        !terminated(st, "c").is_null()
    });
    let t = terminated(&st, "c");
    assert_eq!(t["reason"], "Cancelled", "{st:#}");
    assert!(t["message"].as_str().unwrap().contains("cancelled"), "{t}");
    for pd in &pods {
        assert_eq!(p.delete(pd), 200);
    }
}

/// Brings slurmctld back whatever happens to the test.
struct RestartController;

impl Drop for RestartController {
    fn drop(&mut self) {
        let st = Command::new(repo_root().join("scripts/slurm-start.sh")).status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!("WARNING: scripts/slurm-start.sh failed to bring slurmctld back: {st:?}");
        }
    }
}

#[test]
fn slurmctld_down_is_reported_and_recovered_from() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !backends_required(),
            "the slurmctld fault test needs root to stop and restart the controller"
        );
        eprintln!("SKIP: slurmctld fault test needs root");
        return;
    }
    let _g = CONTROLLER.write().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("ctld");
    let p = start_plugin(
        &conf,
        dir.path(),
        "  status_cache_ms: 0\n  command_timeout_s: 20\n",
    );
    let first = pod(
        "weathers",
        json!({"containers": [sh("c", "echo up; sleep 4; echo still here")]}),
        json!({}),
    );
    assert_eq!(p.create(&first).0, 200);
    // a pod that ended before the outage, and one Slurm holds pending
    let ended = pod(
        "ended",
        json!({"containers": [sh("c", "exit 3")]}),
        json!({}),
    );
    assert_eq!(p.create(&ended).0, 200);
    let held = pod(
        "held",
        json!({"containers": [sh("c", "echo never")]}),
        json!({"slurm-job.vk.io/flags": "--hold"}),
    );
    assert_eq!(p.create(&held).0, 200);
    p.wait_finished(&ended);
    p.wait_running(&first, "c");

    let restart = RestartController;
    let st = Command::new(repo_root().join("scripts/slurm-stop.sh"))
        .args(["--only", "slurmctld"])
        .status()
        .unwrap();
    assert!(st.success());

    // status still answers every pod, from what is stored and from the pods'
    // files; a new pod is refused as unavailable (both wait for Slurm's client
    // timeout, so they run side by side)
    let late = pod_named_unknown();
    let ((code, body), (ccode, cbody)) = std::thread::scope(|s| {
        let st = s.spawn(|| p.status(&[&first, &ended, &held]));
        let cr = s.spawn(|| p.create(&late));
        (st.join().unwrap(), cr.join().unwrap())
    });
    assert_eq!(code, 200, "{body}");
    let of = |pd: &Value| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|st| st["UID"] == pd["metadata"]["uid"])
            .cloned()
            .unwrap_or_else(|| panic!("{} missing: {body:#}", pd["metadata"]["name"]))
    };
    // the ended pod keeps its exit code
    assert_eq!(terminated(&of(&ended), "c")["exitCode"], 3, "{body:#}");
    // the running pod's container runs (or has just ended by itself)
    let c = state(&of(&first), "c").clone();
    assert!(
        !c["running"].is_null() || c["terminated"]["exitCode"] == 0,
        "{body:#}"
    );
    // the held pod cannot be told without Slurm, and says so
    let w = state(&of(&held), "c")["waiting"].clone();
    assert_eq!(w["reason"], "SlurmUnavailable", "{body:#}");
    assert!(
        w["message"].as_str().unwrap().contains("unavailable"),
        "{body:#}"
    );
    assert_eq!(ccode, 503, "{cbody}");
    let (code, body) = p.status(&[&late]);
    assert_eq!(
        (code, body.as_array().map(Vec::len)),
        (200, Some(0)),
        "a pod refused as unavailable is not kept: {body}"
    );

    drop(restart); // slurm-start.sh brings slurmctld back
    let st = p.wait_finished(&first);
    assert_eq!(terminated(&st, "c")["exitCode"], 0, "{st:#}");
    assert_eq!(p.log_text(&first, "c", json!({})), "up\nstill here\n");
    // and new pods run again
    let again = pod(
        "after",
        json!({"containers": [sh("c", "echo back")]}),
        json!({}),
    );
    assert_eq!(p.create(&again).0, 200);
    let st = p.wait_finished(&again);
    assert_eq!(terminated(&st, "c")["exitCode"], 0, "{st:#}");
    let st = p.status_of(&held);
    assert_eq!(
        state(&st, "c")["waiting"]["reason"],
        "JobHeldUser",
        "{st:#}"
    );
    assert_eq!(p.delete(&first), 200);
    assert_eq!(p.delete(&again), 200);
    assert_eq!(p.delete(&ended), 200);
    assert_eq!(p.delete(&held), 200);
}

#[test]
fn podman_runtime_binds_volumes_at_their_mount_paths() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let Some(engine) = engine("Slurm plugin podman test") else {
        return;
    };
    let (env, image) = (engine.env_pairs(), engine.image);
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("podman");
    let p = start_plugin_env(&conf, dir.path(), "  container_runtime: podman\n", &env);
    let spec = json!({
    "volumes": [
        {"name": "cfg", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds"}}
    ],
    "containers": [
        {"name": "reader", "image": image, "workingDir": "/etc/cfg",
         "command": ["sh", "-c", "echo $(cat /etc/cfg/greeting); echo $(cat /etc/creds/password); echo \"$GREETING\"; pwd; touch /etc/cfg/x 2>/dev/null && echo writable || echo read-only"],
         "env": [{"name": "GREETING", "value": "hello world"}],
         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true},
                          {"name": "creds", "mountPath": "/etc/creds"}]},
        {"name": "failer", "image": image, "command": ["sh", "-c", "echo failing; exit 3"]}
    ]});
    let pod = pod("podman", spec, json!({}));
    let data = json!([{"name": "reader",
        "configMaps": [{"metadata": {"name": "settings"}, "data": {"greeting": "bonjour"}}],
        "secrets": [{"metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}}]}]);
    let (code, body) = p.create_with(&pod, data);
    assert_eq!(code, 200, "{body}");
    let st = p.wait_finished(&pod);
    assert_eq!(
        terminated(&st, "reader")["exitCode"],
        0,
        "{st:#}\n{}",
        p.log_text(&pod, "reader", json!({}))
    );
    assert_eq!(
        p.log_text(&pod, "reader", json!({})),
        "bonjour\ns3cr3t\nhello world\n/etc/cfg\nread-only\n"
    );
    assert_eq!(terminated(&st, "failer")["exitCode"], 3, "{st:#}");
    assert_eq!(p.log_text(&pod, "failer", json!({})), "failing\n");
    assert_eq!(p.delete(&pod), 200);
}

// ------------------------------------------------------------ security: subPath

/// CVE-2017-1002101's pattern under the podman runtime: an init container
/// swaps a directory of an emptyDir for a link to `/`, the main container mounts
/// it with `subPath`. The job's helper opens the subPath when the container
/// starts, without following links: the container does not run (exit 125, the
/// reason in its log) and the host is untouched. A real subdirectory works.
#[test]
fn security_subpath_symlink_escape_fails_safely_under_podman() {
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let Some(engine) = engine("Slurm plugin podman test") else {
        return;
    };
    let (env, image) = (engine.env_pairs(), engine.image);
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("subpath");
    let p = start_plugin_env(&conf, dir.path(), "  container_runtime: podman\n", &env);
    let marker = format!("il-slurm-subpath-escape-{}", std::process::id());
    let host_marker = Path::new("/tmp").join(&marker);
    let _ = std::fs::remove_file(&host_marker);
    let spec = json!({
    "volumes": [{"name": "data", "emptyDir": {}}],
    "initContainers": [
        {"name": "swap", "image": image,
         "command": ["sh", "-c", "mkdir -p /data/real/dir && echo inside > /data/real/dir/f && ln -s / /data/escape"],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    ],
    "containers": [
        {"name": "evil", "image": image,
         "command": ["sh", "-c", format!("ls /host; touch /host/tmp/{marker}")],
         "volumeMounts": [{"name": "data", "mountPath": "/host", "subPath": "escape"}]},
        {"name": "good", "image": image,
         "command": ["sh", "-c", "cat /mnt/f; touch /new/x && echo wrote"],
         "volumeMounts": [{"name": "data", "mountPath": "/mnt", "subPath": "real/dir"},
                          {"name": "data", "mountPath": "/new", "subPath": "made/here"}]}
    ]});
    let pod = pod("subpath", spec, json!({}));
    let (code, body) = p.create(&pod);
    assert_eq!(code, 200, "{body}");
    let st = p.wait_finished(&pod);
    let evil_log = p.log_text(&pod, "evil", json!({}));
    assert_eq!(
        terminated(&st, "evil")["exitCode"],
        125,
        "{st:#}\n{evil_log}"
    );
    assert!(
        evil_log.contains("\"escape\"") && evil_log.contains("symbolic link"),
        "{evil_log}"
    );
    assert!(!host_marker.exists(), "the container reached the host's /");
    let good_log = p.log_text(&pod, "good", json!({}));
    assert_eq!(terminated(&st, "good")["exitCode"], 0, "{st:#}\n{good_log}");
    assert_eq!(good_log, "inside\nwrote\n");
    // the binds lived in the job's own mount namespace: none is left on the node
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert!(!mounts.contains(uid), "a subPath bind outlived its job");
    assert_eq!(p.delete(&pod), 200);
}

/// Secret values reach job.sh (env) and volume files: no other local user may
/// read them. The pods directory and each pod directory are 0700, job.sh 0700,
/// the state 0600; a Secret file keeps the pod's own mode (a container running
/// as another user must read it through its bind).
#[test]
fn security_pod_files_holding_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let Some(conf) = slurm_conf("Slurm plugin test") else {
        return;
    };
    let _g = CONTROLLER.read().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("modes");
    let p = start_plugin(&conf, dir.path(), "");
    let spec = json!({
        "volumes": [{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}}],
        "containers": [{"name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "cat \"$INTERLINK_VOLUME_CREDS/password\"; echo \" $PASSWORD\""],
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
            "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}]}]
    });
    let pod = pod("modes", spec, json!({}));
    let data = json!([{"name": "main",
        "secrets": [{"metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}}]}]);
    let (code, body) = p.create_with(&pod, data);
    assert_eq!(code, 200, "{body}");
    let st = p.wait_finished(&pod);
    assert_eq!(terminated(&st, "main")["exitCode"], 0, "{st:#}");
    assert_eq!(p.log_text(&pod, "main", json!({})), "s3cr3t s3cr3t\n");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let pods = dir.path().join("root/pods");
    let pod_dir = pods.join(uid);
    assert_eq!(mode(&pods), 0o700);
    assert_eq!(mode(&pod_dir), 0o700);
    assert_eq!(mode(&pod_dir.join("job.sh")), 0o700);
    assert_eq!(mode(&pod_dir.join("volumes/creds/password")), 0o440);
    let state = dir.path().join("root/state");
    assert_eq!(mode(&state), 0o700);
    for e in std::fs::read_dir(&state).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
    assert_eq!(p.delete(&pod), 200);
}
