//! What upstream's Slurm plugin offers, run by `interlink-slurm` on the real
//! one-node cluster of scripts/slurm-start.sh (container runtime `none`):
//! probes and lifecycle hooks run in the job, `mpi-flags` only when the admin
//! allows it, the admin's job script template, ping capacity and taints.
//!
//! Without a reachable slurmctld these tests print why and pass, unless
//! `INTERLINK_REQUIRE_BACKENDS=1`: then they fail.

use std::path::Path;
use std::time::{Duration, Instant};

use interlink_test_harness::plugin::{PluginClient, Response, random_uid};
use interlink_test_harness::slurm::{self, SlurmPlugin, slurm_conf};
use interlink_test_harness::wait_until;
use serde_json::{Value, json};

fn request(port: u16, method: &str, path: &str, body: &Value) -> Response {
    let body = serde_json::to_vec(body).unwrap();
    let mut client = PluginClient::tcp(port);
    client.timeout = Duration::from_secs(90);
    client
        .request(method, path, Some(&body))
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

struct Plugin {
    p: SlurmPlugin,
}

impl Plugin {
    fn start(conf: &Path, dir: &Path, extra: &str) -> Plugin {
        let extra = format!("  container_runtime: none\n{extra}");
        Plugin {
            p: slurm::start_plugin(conf, dir, &extra, &[]).unwrap(),
        }
    }

    fn start_env(conf: &Path, dir: &Path, extra: &str, env: &[(String, String)]) -> Plugin {
        Plugin {
            p: slurm::start_plugin(conf, dir, extra, env).unwrap(),
        }
    }

    fn create(&self, pod: &Value) -> (u16, String) {
        let r = request(
            self.p.port,
            "POST",
            "/create",
            &json!({"pod": pod, "container": []}),
        );
        (r.status, r.text())
    }

    fn status_of(&self, pod: &Value) -> Value {
        let r = request(self.p.port, "GET", "/status", &json!([pod]));
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v[0].clone()
    }

    fn container(&self, pod: &Value, name: &str) -> Value {
        let st = self.status_of(pod);
        st["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Poll until `done` holds for the container's status.
    fn wait(&self, pod: &Value, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            let c = self.container(pod, name);
            if done(&c) {
                return c;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; last: {c:#}\nplugin log:\n{}",
                self.p.proc.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self, pod: &Value, name: &str) -> String {
        let body = json!({"Namespace": "default", "PodUID": pod["metadata"]["uid"],
            "PodName": pod["metadata"]["name"], "ContainerName": name, "Opts": {}});
        request(self.p.port, "GET", "/getLogs", &body).text()
    }

    fn delete(&self, pod: &Value) -> u16 {
        request(self.p.port, "POST", "/delete", pod).status
    }

    /// The job's own output (the script's stdout: probe and hook messages).
    fn job_out(&self, dir: &Path, pod: &Value) -> String {
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        std::fs::read_to_string(dir.join("root/pods").join(uid).join("job.out")).unwrap_or_default()
    }
}

fn pod(name: &str, spec: Value, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": random_uid(),
        "annotations": annotations}, "spec": spec})
}

fn tmp(name: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("il-slurmup-{name}-"))
        .tempdir()
        .unwrap();
    // the job runs as root on the node; the test reads what it writes
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d
}

/// A readiness exec probe runs in the job: the container runs but is not ready
/// until the probe's command succeeds, then it is, as upstream reports it
/// (`ready` in the container status; the probe's messages in the job output).
#[test]
fn readiness_exec_probe_decides_ready() {
    let Some(conf) = slurm_conf("readiness probe test") else {
        return;
    };
    let dir = tmp("ready");
    let p = Plugin::start(&conf, dir.path(), "");
    let flag = dir.path().join("ready-flag");
    let pod = pod(
        "probed",
        json!({"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "web", "image": "busybox",
            "command": ["sh", "-c", format!("echo up; sleep 4; touch {}; sleep 120", flag.display())],
            "readinessProbe": {"exec": {"command": ["test", "-e", flag.display().to_string()]},
                               "periodSeconds": 1, "failureThreshold": 1}
        }]}),
        json!({}),
    );
    let (code, body) = p.create(&pod);
    assert_eq!(code, 200, "{body}");
    let c = p.wait(&pod, "web", "web running", |c| {
        !c["state"]["running"].is_null()
    });
    // running, but the probe has not passed yet
    if !flag.exists() {
        assert_eq!(c["ready"], false, "{c:#}");
    }
    let c = p.wait(&pod, "web", "web ready", |c| c["ready"] == true);
    assert!(!c["state"]["running"].is_null(), "{c:#}");
    assert!(
        flag.exists(),
        "ready before the probe's command could succeed"
    );
    let out = p.job_out(dir.path(), &pod);
    assert!(
        out.contains("container web: readiness probe succeeded"),
        "{out}"
    );
    assert!(
        out.contains("container web: readiness probe failed"),
        "{out}"
    );
    assert!(p.log(&pod, "web").contains("up"));
    assert_eq!(p.delete(&pod), 200);
    // the job killed, nothing of it is left behind: not its probe loop either
    // (a background shell that the job's end would orphan)
    let created: Value = serde_json::from_str(&body).unwrap();
    let job = created["PodJID"].as_str().unwrap().to_string();
    let script = format!("job{:0>5}/slurm_script", job);
    let left = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&script))
            })
            .count()
    };
    wait_until(Duration::from_secs(60), "the job's processes gone", || {
        left() == 0
    })
    .unwrap();
}

/// A liveness probe that keeps failing kills its container in the job; a
/// postStart hook runs in the container's environment; preStop runs when the
/// pod is deleted, before the container is sent TERM.
#[test]
fn liveness_and_lifecycle_hooks_run_in_the_job() {
    let Some(conf) = slurm_conf("liveness and hooks test") else {
        return;
    };
    let dir = tmp("hooks");
    let p = Plugin::start(&conf, dir.path(), "");
    let d = dir.path().display().to_string();
    let sick = pod(
        "sick",
        json!({"containers": [{
            "name": "app", "image": "busybox", "command": ["sleep", "300"],
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
        }]}),
        json!({}),
    );
    let (code, body) = p.create(&sick);
    assert_eq!(code, 200, "{body}");
    let c = p.wait(&sick, "app", "app killed by its liveness probe", |c| {
        !c["state"]["terminated"].is_null()
    });
    assert_eq!(c["state"]["terminated"]["exitCode"], 143, "{c:#}");
    let out = p.job_out(dir.path(), &sick);
    assert!(
        out.contains("container app: liveness probe failed 2 times")
            && out.contains("container app: liveness probe failed: killed"),
        "{out}"
    );

    let hooked = pod(
        "hooked",
        json!({"terminationGracePeriodSeconds": 60, "containers": [{
            "name": "app", "image": "busybox",
            "command": ["sh", "-c", format!("trap 'echo term > {d}/term; exit 0' TERM; echo up; while :; do sleep 1; done")],
            "env": [{"name": "WHO", "value": "post start"}],
            "lifecycle": {
                "postStart": {"exec": {"command": ["sh", "-c", format!("echo \"$WHO\" > {d}/post")]}},
                "preStop": {"exec": {"command": ["sh", "-c", format!("test ! -e {d}/term && echo pre stop > {d}/pre")]}}
            }
        }]}),
        json!({}),
    );
    let (code, body) = p.create(&hooked);
    assert_eq!(code, 200, "{body}");
    p.wait(&hooked, "app", "app running", |c| {
        !c["state"]["running"].is_null()
    });
    wait_until(Duration::from_secs(30), "the postStart hook ran", || {
        dir.path().join("post").exists()
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("post")).unwrap(),
        "post start\n"
    );
    wait_until(Duration::from_secs(30), "the container's trap set", || {
        p.log(&hooked, "app").contains("up")
    })
    .unwrap();
    assert_eq!(p.delete(&hooked), 200);
    wait_until(Duration::from_secs(30), "preStop, then TERM", || {
        dir.path().join("term").exists()
    })
    .unwrap();
    // preStop ran before the container got TERM (it checks that no TERM came yet)
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pre")).unwrap_or_default(),
        "pre stop\n",
        "plugin log:\n{}",
        p.p.proc.output()
    );
}

/// `slurm-job.vk.io/mpi-flags` is refused unless the admin allows it; allowed,
/// the container runs under the admin's launcher with the pod's flags as words.
#[test]
fn mpi_flags_only_when_the_admin_allows() {
    let Some(conf) = slurm_conf("mpi-flags test") else {
        return;
    };
    let spec = json!({"containers": [{"name": "rank", "image": "busybox",
        "command": ["sh", "-c", "echo launcher=$FROM_LAUNCHER flag=$FLAG"]}]});
    let ann = json!({"slurm-job.vk.io/mpi-flags": "FLAG=a;b"});

    let dir = tmp("mpi-off");
    let p = Plugin::start(&conf, dir.path(), "");
    let (code, body) = p.create(&pod("mpi", spec.clone(), ann.clone()));
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("allow_mpi_flags_annotation"), "{body}");
    drop(p);

    let dir = tmp("mpi-on");
    // a launcher this node has: `env` (stands where mpiexec would)
    let p = Plugin::start(
        &conf,
        dir.path(),
        "  allow_mpi_flags_annotation: true\n  mpi_command: [env, \"FROM_LAUNCHER=${SLURM_NTASKS:-1}\"]\n",
    );
    let pod = pod("mpi", spec, ann);
    let (code, body) = p.create(&pod);
    assert_eq!(code, 200, "{body}");
    p.wait(&pod, "rank", "rank finished", |c| {
        !c["state"]["terminated"].is_null()
    });
    let log = p.log(&pod, "rank");
    assert!(log.contains("launcher=1 flag=a;b"), "{log}");
}

/// The admin's template surrounds the job: its lines run, pod values are data.
#[test]
fn job_script_template_from_the_admin() {
    let Some(conf) = slurm_conf("job script template test") else {
        return;
    };
    let dir = tmp("template");
    let tmpl = dir.path().join("job.tmpl");
    std::fs::write(
        &tmpl,
        "#!{{ .Shell }}\n{{ .SbatchFlags }}\n#SBATCH --comment=from-template\nexport SITE=from-template\necho \"site job for\" {{ .Pod.Name }} {{ .PodUID }}\n{{ .Job }}",
    )
    .unwrap();
    let p = Plugin::start(
        &conf,
        dir.path(),
        &format!("  job_script_template: {}\n", tmpl.display()),
    );
    let pod = pod(
        "templated",
        json!({"containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "echo site=$SITE"]}]}),
        json!({}),
    );
    let (code, body) = p.create(&pod);
    assert_eq!(code, 200, "{body}");
    let c = p.wait(&pod, "c", "c finished", |c| {
        !c["state"]["terminated"].is_null()
    });
    assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{c:#}");
    assert!(p.log(&pod, "c").contains("site=from-template"));
    let out = p.job_out(dir.path(), &pod);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert!(
        out.contains(&format!("site job for templated {uid}")),
        "{out}"
    );

    // a template with code in it stops the plugin at start, naming it
    let bad = dir.path().join("bad.tmpl");
    std::fs::write(&bad, "{{ .Job }}{{ .Pod.Spec.Containers }}").unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        slurm::plugin_config(
            &conf,
            &format!("  job_script_template: {}\n", bad.display()),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(interlink_test_harness::bin("interlink-slurm"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-root")
        .arg(dir.path().join("bad-root"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Pod.Spec.Containers"), "{err}");
}

/// Ping answers the capacity and taints the admin configured, not what the
/// nodes have free.
#[test]
fn ping_answers_configured_capacity_and_taints() {
    let Some(conf) = slurm_conf("ping test") else {
        return;
    };
    let dir = tmp("ping");
    let p = Plugin::start(
        &conf,
        dir.path(),
        "  ping:\n    resources: {cpu: \"64\", memory: 256Gi, pods: \"500\"}\n    taints: [{key: site.io/batch, value: slurm, effect: NoSchedule}]\n",
    );
    let r = request(p.p.port, "GET", "/pinglink", &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["resources"]["cpu"], "64");
    assert_eq!(v["resources"]["memory"], "256Gi");
    assert_eq!(v["resources"]["pods"], "500");
    assert_eq!(
        v["taints"],
        json!([{"key": "site.io/batch", "value": "slurm", "effect": "NoSchedule"}])
    );
    drop(p);
    // nothing configured: the nodes' totals, the same at every ping
    let dir = tmp("ping-measured");
    let p = Plugin::start(&conf, dir.path(), "");
    let a = request(p.p.port, "GET", "/pinglink", &Value::Null).text();
    std::thread::sleep(Duration::from_millis(300));
    let b = request(p.p.port, "GET", "/pinglink", &Value::Null).text();
    assert_eq!(a, b);
    let v: Value = serde_json::from_str(&a).unwrap();
    assert!(
        v["resources"]["memory"].as_str().unwrap().ends_with("Mi"),
        "{v}"
    );
    assert!(v.get("taints").is_none(), "{v}");
}

/// A `/create` naming a `jobscriptURL` (upstream's virtual kubelet sends its
/// `JobScriptBuilderURL`) is refused by the API server with why; nothing is
/// fetched and no job is submitted. The same pod without it runs.
#[test]
fn job_script_url_is_refused_with_why() {
    use interlink_test_harness::apiserver::{
        Listen, ScriptedHttp, create_request, start_interlink,
    };
    use interlink_test_harness::plugin::PodBuilder;
    let Some(conf) = slurm_conf("jobscriptURL test") else {
        return;
    };
    let dir = tmp("jobscript-url");
    let p = Plugin::start(&conf, dir.path(), "");
    // a builder that would answer a script: it must never be asked
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let builder = ScriptedHttp::start(move |_, _| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some((
            200,
            "text/plain",
            "#!/bin/sh\ntouch /tmp/owned\n".to_string(),
            Duration::ZERO,
        ))
    })
    .unwrap();
    let srv = start_interlink(
        dir.path(),
        "interlink",
        &Listen::Tcp,
        &format!("http://127.0.0.1:{}", p.p.port),
        "",
    )
    .unwrap();
    let b = PodBuilder::new("scripted").container("main", &["sh", "-c", "echo ran"]);
    let mut req = create_request(&b);
    req.job_script_url = builder.url();
    let r = srv
        .raw()
        .request("POST", "/create", Some(&serde_json::to_vec(&req).unwrap()))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.text();
    assert!(
        msg.contains("jobscriptURL is not supported")
            && msg.contains("Secrets")
            && msg.contains("job_script_template"),
        "{msg}"
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the builder was asked"
    );
    let pod = serde_json::to_value(&b.pod).unwrap();
    assert!(p.status_of(&pod).is_null(), "a job was submitted");
    req.job_script_url.clear();
    let r = srv
        .raw()
        .request("POST", "/create", Some(&serde_json::to_vec(&req).unwrap()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Under the podman runtime, exec probes and hooks run inside the container
/// (`podman exec` into the named container): the probe sees the container's
/// own filesystem, the preStop hook runs there before TERM.
#[test]
fn podman_probes_and_hooks_run_in_the_container() {
    let Some(conf) = slurm_conf("podman probe test") else {
        return;
    };
    let Some(engine) = interlink_test_harness::engine::engine("podman probe test") else {
        return;
    };
    let dir = tmp("podman-probes");
    let d = dir.path().display().to_string();
    let pod = pod(
        "podprobe",
        json!({"terminationGracePeriodSeconds": 60,
            "volumes": [{"name": "out", "hostPath": {"path": d}}],
            "containers": [{
            "name": "web", "image": engine.image,
            "command": ["sh", "-c", "trap 'echo term >> /out/events; exit 0' TERM; echo up; sleep 3; touch /tmp/inside; while :; do sleep 1; done"],
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            // /tmp/inside exists only in the container's own filesystem
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/inside"]}, "periodSeconds": 1},
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "test -e /tmp/inside && echo prestop >> /out/events"]}}}
        }]}),
        json!({}),
    );
    // hostPath under the test's directory: the admin allows it
    let p = Plugin::start_env(
        &conf,
        dir.path(),
        &format!("  container_runtime: podman\n  allowed_host_paths: [{d}]\n"),
        &engine.env_pairs(),
    );
    let (code, body) = p.create(&pod);
    assert_eq!(code, 200, "{body}");
    p.wait(&pod, "web", "web running", |c| {
        !c["state"]["running"].is_null()
    });
    let c = p.wait(&pod, "web", "web ready", |c| c["ready"] == true);
    assert!(!c["state"]["running"].is_null(), "{c:#}");
    // the probe looked inside the container: the node has no such file
    assert!(!Path::new("/tmp/inside").exists());
    assert_eq!(p.delete(&pod), 200);
    let events = dir.path().join("events");
    wait_until(Duration::from_secs(60), "preStop, then TERM", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("term"))
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&events).unwrap(),
        "prestop\nterm\n",
        "plugin log:\n{}",
        p.p.proc.output()
    );
}
