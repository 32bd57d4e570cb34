//! Security issue 8 (item 2) against the real Slurm plugin and real Slurm: a pod
//! author cannot reach outside its containers through the Slurm annotations or a
//! hostPath volume unless the site admin allowed it in the plugin's config.
//!
//! Each attack must be answered by `/create` with a 422 whose JSON message names
//! the flag (or annotation, or path) and the config key, and no Slurm job may
//! exist for it (`scontrol -o show job` lists every job slurmctld knows,
//! finished ones included). The legitimate uses must still work: allow-listed
//! flags reach sbatch (checked on the submitted job), the admin's `pre_exec`
//! runs, an allowed hostPath is mounted.
//!
//! Runs on the one-node cluster of scripts/slurm-start.sh (container runtime
//! `none`). Without a reachable slurmctld these tests print why and pass,
//! unless `INTERLINK_REQUIRE_BACKENDS=1`: then they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interlink_test_harness::plugin::{PluginClient, random_uid};
use interlink_test_harness::slurm::{self, SlurmPlugin, slurm_conf};
use interlink_test_harness::{Proc, wait_until};
use serde_json::{Value, json};

struct Plugin {
    proc: Proc,
    port: u16,
    root: PathBuf,
    conf: PathBuf,
}

fn start_plugin(conf: &Path, dir: &Path, policy: &str) -> Plugin {
    let SlurmPlugin { proc, port } = slurm::start_plugin(
        conf,
        dir,
        &format!("  container_runtime: none\n{policy}"),
        &[],
    )
    .unwrap();
    Plugin {
        proc,
        port,
        root: dir.join("root"),
        conf: conf.to_path_buf(),
    }
}

impl Plugin {
    fn request(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let mut client = PluginClient::tcp(self.port);
        client.timeout = Duration::from_secs(90);
        let r = client
            .request(method, path, Some(&serde_json::to_vec(body).unwrap()))
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_else(|_| json!(r.text())),
        )
    }

    fn create(&self, pod: &Value) -> (u16, Value) {
        self.request("POST", "/create", &json!({"pod": pod, "container": []}))
    }

    fn status_of(&self, pod: &Value) -> Value {
        let (code, body) = self.request("GET", "/status", &json!([pod]));
        assert_eq!(code, 200, "{body}");
        body[0].clone()
    }

    fn delete(&self, pod: &Value) {
        let (code, body) = self.request("POST", "/delete", pod);
        assert_eq!(code, 200, "{body}");
    }

    /// The main container's log, once it has ended.
    fn finished_log(&self, pod: &Value) -> String {
        wait_until(Duration::from_secs(60), "the container to end", || {
            !self.status_of(pod)["containers"][0]["state"]["terminated"].is_null()
        })
        .unwrap_or_else(|e| panic!("{e:#}\nplugin log:\n{}", self.proc.output()));
        let body = json!({
            "Namespace": "default", "PodUID": pod["metadata"]["uid"],
            "PodName": pod["metadata"]["name"], "ContainerName": "c", "Opts": {},
        });
        let r = PluginClient::tcp(self.port)
            .request("GET", "/getLogs", Some(&serde_json::to_vec(&body).unwrap()))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// Every job slurmctld knows by this pod's job name (finished ones included).
    fn jobs_of(&self, pod: &Value) -> Vec<String> {
        let name = format!(
            "JobName=default-{}",
            pod["metadata"]["name"].as_str().unwrap()
        );
        let o = Command::new("scontrol")
            .args(["-o", "show", "job"])
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "scontrol: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == name))
            .map(str::to_string)
            .collect()
    }

    /// `/create` refuses the pod with a 422 whose message holds every `needle`,
    /// the pod's status says so, and Slurm never saw a job for it.
    fn refused(&self, pod: &Value, needles: &[&str]) {
        let (code, body) = self.create(pod);
        let msg = body["error"].as_str().unwrap_or_default();
        assert_eq!(code, 422, "{} should be refused: {body}", pod["metadata"]);
        for n in needles {
            assert!(msg.contains(n), "the message should name {n:?}: {msg}");
        }
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        assert!(
            !self.root.join("pods").join(uid).exists(),
            "no job script is written"
        );
        let t = &self.status_of(pod)["containers"][0]["state"]["terminated"];
        assert_eq!(t["reason"], "SubmitFailed", "{t}");
        assert_eq!(
            self.jobs_of(pod),
            Vec::<String>::new(),
            "no job is submitted"
        );
        self.delete(pod);
    }
}

/// A pod with one container running `script`; its name is unique on the cluster.
fn pod(tag: &str, script: &str, annotations: Value, volumes: Value) -> Value {
    let uid = random_uid();
    json!({
        "metadata": {"name": format!("sec-{tag}-{}", &uid[..8]), "namespace": "default",
                     "uid": uid, "annotations": annotations},
        "spec": {"volumes": volumes, "containers": [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", script],
            "volumeMounts": volumes.as_array().unwrap().iter()
                .map(|v| json!({"name": v["name"], "mountPath": "/mnt/x"})).collect::<Vec<_>>(),
        }]}
    })
}

fn flags(tag: &str, f: &str) -> Value {
    pod(tag, "true", json!({"slurm-job.vk.io/flags": f}), json!([]))
}

fn scontrol_job(conf: &Path, jid: &str) -> String {
    let o = Command::new("scontrol")
        .args(["-o", "show", "job", jid])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn pod_authors_cannot_leave_their_containers() {
    let Some(conf) = slurm_conf("Slurm security test") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("il-sec-slurm-")
        .tempdir()
        .unwrap();
    let allowed = dir.path().join("shared");
    std::fs::create_dir_all(allowed.join("data")).unwrap();
    std::fs::write(
        allowed.join("data/hello.txt"),
        "from an allowed host path\n",
    )
    .unwrap();
    let p = start_plugin(
        &conf,
        dir.path(),
        &format!(
            "  pre_exec: \"export ADMIN_PRE_EXEC=ran\"\n  allowed_host_paths: [{}]\n",
            allowed.display()
        ),
    );
    let marker = dir.path().join("owned");
    let m = marker.display();

    // shell on the node from the pre-exec annotation
    p.refused(
        &pod(
            "preexec",
            "true",
            json!({"slurm-job.vk.io/pre-exec": format!("id > {m}")}),
            json!([]),
        ),
        &["slurm-job.vk.io/pre-exec", "allow_pre_exec_annotation"],
    );
    // another user, plainly or abbreviated as getopt_long reads it
    p.refused(
        &flags("uid", "--uid=65534"),
        &["--uid=65534", "allowed_pod_flags"],
    );
    p.refused(
        &flags("ui", "--time=5 --ui=65534"),
        &["--ui=65534 (--uid)", "not allowed"],
    );
    p.refused(&flags("gid", "--gi 65534"), &["--gi 65534 (--gid)"]);
    // a pod's own file as BASH_ENV of the batch shell
    p.refused(
        &flags("export", "--export=ALL,BASH_ENV=/tmp/x"),
        &["--export=ALL,BASH_ENV=/tmp/x", "allowed_pod_flags"],
    );
    // sbatch 22.05 itself finds --exp ambiguous: so does the plugin
    p.refused(
        &flags("exp", "--exp=ALL,BASH_ENV=/tmp/x"),
        &["--exp=ALL,BASH_ENV=/tmp/x", "ambiguous", "--export-file"],
    );
    p.refused(
        &flags("exportfile", "--export-f=/tmp/x"),
        &["(--export-file)"],
    );
    // output and error files anywhere
    p.refused(
        &flags("output", "--output=/etc/x"),
        &["--output=/etc/x", "allowed_pod_flags"],
    );
    p.refused(&flags("outshort", "-o/etc/x"), &["-o/etc/x (--output)"]);
    p.refused(&flags("error", "--err /etc/x"), &["--err /etc/x (--error)"]);
    // partitions, accounts, QOS: only the admin's values
    p.refused(
        &flags("part", "-pX"),
        &["-pX (--partition)", "\"X\"", "allowed_partitions"],
    );
    p.refused(
        &flags("partcluster", "-Hpsecret"),
        &["-psecret (--partition)", "allowed_partitions"],
    );
    p.refused(&flags("account", "-A other"), &["allowed_accounts"]);
    p.refused(&flags("qos", "--qos=high"), &["allowed_qos: none"]);
    // a newline would open a new #SBATCH line
    p.refused(
        &flags("newline", "--time=5\n#SBATCH --uid=65534"),
        &["slurm-job.vk.io/flags", "control character"],
    );
    p.refused(
        &flags("quoted", "--comment='x\n#SBATCH --uid=65534'"),
        &["control character"],
    );
    // runtime options are the admin's
    p.refused(
        &pod(
            "singularity",
            "true",
            json!({"slurm-job.vk.io/singularity-options": "--bind /:/host"}),
            json!([]),
        ),
        &[
            "slurm-job.vk.io/singularity-options",
            "allow_singularity_options_annotation",
        ],
    );
    // the node's own filesystem
    for (tag, path) in [
        ("hostroot", "/".to_string()),
        ("hostetc", "/etc".to_string()),
        (
            "hostdotdot",
            format!("{}/data/../../../../etc", allowed.display()),
        ),
    ] {
        p.refused(
            &pod(
                tag,
                "true",
                json!({}),
                json!([{"name": "h", "hostPath": {"path": path}}]),
            ),
            &[&format!("{path:?}"), "allowed_host_paths"],
        );
    }
    assert!(!marker.exists(), "nothing the attacks asked for ran");

    // the legitimate uses: allow-listed flags reach sbatch, written canonically
    let ok = pod(
        "ok",
        "echo pre-exec=$ADMIN_PRE_EXEC; cat $INTERLINK_VOLUME_H/hello.txt",
        json!({"slurm-job.vk.io/flags": "--time=7 -N1 --comm='two words # and \"quotes\"' -pdebug"}),
        json!([{"name": "h", "hostPath": {"path": format!("{}/./data", allowed.display())}}]),
    );
    let (code, body) = p.create(&ok);
    assert_eq!(code, 200, "{body}\nplugin log:\n{}", p.proc.output());
    let jid = body["PodJID"].as_str().unwrap().to_string();
    let job = scontrol_job(&conf, &jid);
    assert!(job.contains("TimeLimit=00:07:00"), "{job}");
    assert!(job.contains("NumNodes=1"), "{job}");
    assert!(job.contains("Partition=debug"), "{job}");
    assert!(
        job.contains(r#"Comment=two words # and "quotes""#),
        "the comment is one argument, '#' and quotes included: {job}"
    );
    assert_eq!(p.jobs_of(&ok).len(), 1);
    // the admin's pre_exec ran before the container; the allowed host path is mounted
    let log = p.finished_log(&ok);
    assert!(log.contains("pre-exec=ran"), "{log}");
    assert!(log.contains("from an allowed host path"), "{log}");
    p.delete(&ok);

    // an allowed flag with a value Slurm rejects: sbatch's own answer comes back
    let feature = flags("constraint", "--constraint=nosuchfeature");
    let (code, body) = p.create(&feature);
    assert_eq!(code, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("sbatch") && msg.to_lowercase().contains("feature"),
        "the constraint reached sbatch: {msg}"
    );
    p.delete(&feature);
}

#[test]
fn the_admin_can_trust_the_annotations() {
    let Some(conf) = slurm_conf("Slurm security test") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("il-sec-slurm-trust-")
        .tempdir()
        .unwrap();
    let p = start_plugin(
        &conf,
        dir.path(),
        "  pre_exec: \"export FIRST=admin\"\n  allow_pre_exec_annotation: true\n  allow_singularity_options_annotation: true\n  allowed_pod_flags: [comment]\n  allowed_partitions: [debug]\n",
    );
    // the pod's pre-exec runs after the admin's
    let trusted = pod(
        "trusted",
        "echo $FIRST-$SECOND",
        json!({
            "slurm-job.vk.io/pre-exec": "export SECOND=pod",
            "slurm-job.vk.io/singularity-options": "--nv",
            "slurm-job.vk.io/flags": "--partition=debug --comment=allowed",
        }),
        json!([]),
    );
    let (code, body) = p.create(&trusted);
    assert_eq!(code, 200, "{body}\nplugin log:\n{}", p.proc.output());
    let job = scontrol_job(&conf, body["PodJID"].as_str().unwrap());
    assert!(job.contains("Comment=allowed"), "{job}");
    assert!(p.finished_log(&trusted).contains("admin-pod"));
    p.delete(&trusted);
    // this admin's list replaces the default one: --time is not on it
    p.refused(
        &flags("notlisted", "--time=5"),
        &["--time=5", "allows: --comment, --partition (listed values)"],
    );
}
