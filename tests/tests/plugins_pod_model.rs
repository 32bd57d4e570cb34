//! The three plugins share the kit's pod model: one pod that uses the downward
//! API in Kubernetes' forms (`metadata.labels['k']`, `metadata.annotations['k']`,
//! `spec.nodeName`, ...), resource fields with divisors, ConfigMap and Secret
//! keys (optional ones too), `envFrom` with a prefix and `$(VAR)` expansion
//! with `$$` gives the same environment, and the same downwardAPI volume files,
//! on the local plugin, the Slurm plugin (a real one-node cluster, runtime
//! `none`) and the Docker plugin (podman's Docker API), as Kubernetes defines
//! them. Only the pod IP differs: each plugin reports what its backend knows.
//!
//! Needs the backends of scripts/slurm-start.sh and scripts/engine-setup.sh
//! (skipped without them unless `INTERLINK_REQUIRE_BACKENDS=1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interlink::RetrievedPodData;
use interlink_test_harness::engine::{
    Engine, docker_plugin_config, engine, remove_pod_containers, start_service,
};
use interlink_test_harness::plugin::{
    PluginClient, all_terminated, exit_code, log_req, random_uid, start_local,
};
use interlink_test_harness::slurm::{slurm_conf, start_plugin};
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};
use serde_json::json;

const T: Duration = Duration::from_secs(90);

/// The variables the container prints, and what Kubernetes makes of them.
const EXPECTED: &[(&str, &str)] = &[
    ("POD_NAME", "model"),
    ("POD_NS", "team-a"),
    ("APP", "web"),
    ("MISSING_LABEL", ""),
    ("TEAM", "blue"),
    ("NODE", "virtual-node-1"),
    ("SA", "builder"),
    ("CPU", "1"),
    ("CPU_M", "500"),
    ("MEM_MI", "64"),
    ("REQ_CPU_M", "250"),
    ("COLOR", "teal"),
    ("PASSWORD", "s3cr3t"),
    ("OPTIONAL", "unset"),
    ("PFX_color", "teal"),
    ("GREETING", "hi-model-$(POD_NAME)-$(UNDEFINED)"),
];

/// The pod (image chosen by the caller) and the objects sent with it.
fn request(uid: &str, image: &str) -> RetrievedPodData {
    let mut printed: Vec<String> = EXPECTED
        .iter()
        .map(|(k, _)| format!("\"@@{k}=${{{k}-unset}}\""))
        .collect();
    printed.push("\"@@IP=${IP-unset}\"".into());
    let script = format!("printf '%s\\n' {}", printed.join(" "));
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let resource = |r: &str, divisor: Option<&str>| match divisor {
        Some(d) => json!({"resourceFieldRef": {"resource": r, "divisor": d}}),
        None => json!({"resourceFieldRef": {"resource": r}}),
    };
    serde_json::from_value(json!({
        "pod": {
            "metadata": {"name": "model", "namespace": "team-a", "uid": uid,
                "labels": {"app": "web", "tier": "db"},
                "annotations": {"team": "blue"}},
            "spec": {
                "nodeName": "virtual-node-1",
                "serviceAccountName": "builder",
                "restartPolicy": "Never",
                "volumes": [{"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                    {"path": "cpu", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu", "divisor": "1m"}}
                ]}}],
                "containers": [{
                    "name": "main", "image": image,
                    "command": ["sh", "-c", script],
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                  "requests": {"cpu": "250m"}},
                    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "PFX_"}],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                        {"name": "POD_NS", "valueFrom": field("metadata.namespace")},
                        {"name": "APP", "valueFrom": field("metadata.labels['app']")},
                        {"name": "MISSING_LABEL", "valueFrom": field("metadata.labels['nope']")},
                        {"name": "TEAM", "valueFrom": field("metadata.annotations['team']")},
                        {"name": "NODE", "valueFrom": field("spec.nodeName")},
                        {"name": "SA", "valueFrom": field("spec.serviceAccountName")},
                        {"name": "IP", "valueFrom": field("status.podIP")},
                        {"name": "CPU", "valueFrom": resource("limits.cpu", None)},
                        {"name": "CPU_M", "valueFrom": resource("limits.cpu", Some("1m"))},
                        {"name": "MEM_MI", "valueFrom": resource("requests.memory", Some("1Mi"))},
                        {"name": "REQ_CPU_M", "valueFrom": resource("requests.cpu", Some("1m"))},
                        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                        {"name": "GREETING", "value": "hi-$(POD_NAME)-$$(POD_NAME)-$(UNDEFINED)"}
                    ],
                    "volumeMounts": [{"name": "info", "mountPath": "/etc/info"}]
                }]
            }
        },
        "container": [{"name": "main",
            "configMaps": [{"metadata": {"name": "settings"}, "data": {"color": "teal"}}],
            "secrets": [{"metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}}]}]
    }))
    .unwrap()
}

/// What one plugin made of the pod: the printed variables and the files of
/// its downwardAPI volume.
#[derive(Debug)]
struct Seen {
    env: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
}

/// Create the pod, wait for it to finish, read its output and its volume
/// files (under `pods_dir/<uid>/volumes/info`), delete it.
fn run(client: &PluginClient, data: &RetrievedPodData, pods_dir: &Path) -> Seen {
    let r = client.create(data).unwrap();
    assert_eq!(r.status, 200, "create: {}", r.text());
    let st = client
        .wait_status(&data.pod, T, "the pod to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(0), "{st:?}");
    let r = client
        .logs(&log_req(&data.pod, "main", Default::default()))
        .unwrap();
    assert_eq!(r.status, 200, "logs: {}", r.text());
    let env = r
        .text()
        .lines()
        .filter_map(|l| l.split_once("@@")?.1.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = pods_dir
        .join(interlink::pod_uid(&data.pod))
        .join("volumes/info");
    let files = ["labels", "app", "cpu"]
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (f.to_string(), text)
        })
        .collect();
    let r = client.delete(&data.pod).unwrap();
    assert_eq!(r.status, 200, "delete: {}", r.text());
    Seen { env, files }
}

fn check(plugin: &str, seen: &Seen) {
    eprintln!("{plugin}: {:?}", seen.env);
    for (k, want) in EXPECTED {
        assert_eq!(
            seen.env.get(*k).map(String::as_str),
            Some(*want),
            "{plugin}: {k} (all: {:?})",
            seen.env
        );
    }
    let files: BTreeMap<&str, &str> = seen
        .files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        files,
        BTreeMap::from([
            ("labels", "app=\"web\"\ntier=\"db\""),
            ("app", "web"),
            ("cpu", "500")
        ]),
        "{plugin}: downwardAPI volume files"
    );
}

fn local() -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, client) = start_local(dir.path()).unwrap();
    let seen = run(
        &client,
        &request(&random_uid(), "busybox"),
        &dir.path().join("data/pods"),
    );
    proc.stop(Duration::from_secs(5));
    seen
}

fn slurm() -> Option<Seen> {
    let conf = slurm_conf("pod model on the Slurm plugin")?;
    let dir = tempfile::tempdir().unwrap();
    let mut p = start_plugin(&conf, dir.path(), "  container_runtime: none\n", &[]).unwrap();
    let seen = run(
        &PluginClient::tcp(p.port),
        &request(&random_uid(), "busybox"),
        &dir.path().join("root/pods"),
    );
    p.proc.stop(Duration::from_secs(5));
    Some(seen)
}

/// The engine, the plugin, and the pod's containers, gone when dropped.
struct Docker {
    env: BTreeMap<String, String>,
    engine: Proc,
    plugin: Option<Proc>,
    uid: String,
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(5));
        }
        remove_pod_containers(&self.env, &self.uid);
        self.engine.stop(Duration::from_secs(10));
    }
}

fn docker() -> Option<Seen> {
    let Engine { env, image } = engine("pod model on the Docker plugin")?;
    let dir = tempfile::Builder::new()
        .prefix("il-podmodel-")
        .tempdir()
        .unwrap();
    let engine_sock = dir.path().join("engine.sock");
    let engine = start_service(&env, &engine_sock, &dir.path().join("engine.log"), T).unwrap();
    let uid = random_uid();
    let mut d = Docker {
        env,
        engine,
        plugin: None,
        uid: uid.clone(),
    };
    let sock = dir.path().join("plugin.sock");
    let data_root: PathBuf = dir.path().join("data");
    let cfg = dir.path().join("plugin.yaml");
    std::fs::write(
        &cfg,
        docker_plugin_config(&sock, &data_root, &engine_sock, &image, ""),
    )
    .unwrap();
    let mut cmd = Command::new(bin("interlink-docker"));
    cmd.arg("--config").arg(&cfg);
    d.plugin = Some(Proc::spawn("interlink-docker", cmd, &dir.path().join("plugin.log")).unwrap());
    wait_for_unix_socket(&sock, T).unwrap();
    let seen = run(
        &PluginClient::unix(&sock),
        &request(&uid, &image),
        &data_root.join("pods"),
    );
    drop(d);
    Some(seen)
}

#[test]
fn the_three_plugins_agree_with_kubernetes() {
    let local = local();
    check("local", &local);
    // the local plugin's containers share the host's network: the pod IP is
    // an address of this host (one a socket can be bound to)
    let ip: std::net::IpAddr = local.env["IP"].parse().expect("local pod IP");
    std::net::UdpSocket::bind((ip, 0)).expect("the local pod IP is this host's");

    if let Some(s) = slurm() {
        check("slurm", &s);
        assert_eq!(s.env, local_but_ip(&local, &s), "slurm and local agree");
    }
    if let Some(d) = docker() {
        check("docker", &d);
        assert_eq!(d.env, local_but_ip(&local, &d), "docker and local agree");
    }
}

/// `local`'s variables with the other plugin's pod IP (the one value each
/// backend knows for itself).
fn local_but_ip(local: &Seen, other: &Seen) -> BTreeMap<String, String> {
    let mut env = local.env.clone();
    env.insert("IP".into(), other.env["IP"].clone());
    env
}
