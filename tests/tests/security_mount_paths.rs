//! Pod paths that would change a plugin's command lines, or reach outside the
//! pod, are refused by every plugin's `/create` with HTTP 400 and a JSON error
//! naming the container and the field, before anything runs.
//!
//! The attack this guards against: a `mountPath` of `/x,/etc:/hostetc` becomes
//! `--bind <dir>:/x,/etc:/hostetc` in the Slurm plugin's apptainer/singularity
//! command line, that is a second bind of the host's `/etc`; a `:` does the same
//! to podman's `-v`, a newline ends a job-script line, `..` climbs out of the pod.
//! apptainer and singularity are not packaged for Debian 12, so for them this
//! checks that no job (whose script would hold the command line) is submitted.
//!
//! - Slurm: the real `interlink-slurm` against the one-node cluster of
//!   scripts/slurm-start.sh, once per container runtime (apptainer, singularity,
//!   podman), with `sbatch` configured as a recorder that logs each call and then
//!   runs the real `sbatch` (test double: a recording wrapper only).
//! - local: the real `interlink-local`; nothing appears outside its data root.
//! - docker: the real `interlink-docker` against podman's service (scripts/engine-setup.sh).
//!
//! Without Slurm or the engine those parts print why and pass, unless
//! `INTERLINK_REQUIRE_BACKENDS=1`: then they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interlink::RetrievedPodData;
use interlink_test_harness::engine::{Engine, docker_plugin_config, engine, start_service};
use interlink_test_harness::plugin::{
    PluginClient, ReapLocalPods, Response, random_uid, start_local,
};
use interlink_test_harness::slurm::{self, slurm_conf};
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// One refused pod: what it tries, the pod, what the error must say.
struct Case {
    what: &'static str,
    pod: Value,
    want: String,
}

/// A pod `name` whose container "main" mounts emptyDir volume "data" with
/// `mount` (a volumeMount object) and has the `extra` container fields.
fn pod(name: &str, mount: Value, extra: Value) -> Value {
    let mut c = json!({"name": "main", "image": "busybox:stable", "command": ["true"],
        "volumeMounts": [mount]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": random_uid()},
        "spec": {"restartPolicy": "Never", "containers": [c],
                 "volumes": [{"name": "data", "emptyDir": {}}]}
    })
}

/// `escape` is where a `..` working directory would land if it were followed.
fn cases(escape: &Path) -> Vec<Case> {
    let ups = "/..".repeat(40);
    let escape_wd = format!("{ups}{}", escape.display());
    let m = |p: &str| json!({"name": "data", "mountPath": p});
    let msp = |sp: &str| json!({"name": "data", "mountPath": "/data", "subPath": sp});
    let none = json!({});
    let case = |what, pod, want: &str| Case {
        what,
        pod,
        want: want.to_string(),
    };
    vec![
        case(
            "a comma: a second apptainer/singularity bind of the host's /etc",
            pod("comma-mount", m("/x,/etc:/hostetc"), none.clone()),
            r#"container "main": volumeMounts[0].mountPath "/x,/etc:/hostetc" must not contain a comma"#,
        ),
        case(
            "a colon: podman -v options / a second path",
            pod("colon-mount", m("/data:/etc"), none.clone()),
            r#"container "main": volumeMounts[0].mountPath "/data:/etc" must not contain a colon"#,
        ),
        case(
            "a newline: a new line in the job script",
            pod("newline-mount", m("/x\n#SBATCH --uid=0"), none.clone()),
            r#"volumeMounts[0].mountPath "/x\n#SBATCH --uid=0" must not contain a control character"#,
        ),
        case(
            "quotes: shell quoting of the job script",
            pod("quote-mount", m("/x'\"y"), none.clone()),
            "must not contain a quote",
        ),
        case(
            "a backslash",
            pod("backslash-mount", m("/x\\y"), none.clone()),
            "must not contain a backslash",
        ),
        case(
            "a comma in subPath: the host side of the bind",
            pod("comma-subpath", msp("a,/etc:/hostetc"), none.clone()),
            r#"container "main": volumeMounts[0].subPath "a,/etc:/hostetc" must not contain a comma"#,
        ),
        case(
            "a subPath climbing out of the volume",
            pod("up-subpath", msp("../../../../etc"), none.clone()),
            r#"volumeMounts[0].subPath "../../../../etc" must not have a '..' component"#,
        ),
        case(
            "an absolute subPath",
            pod("abs-subpath", msp("/etc"), none.clone()),
            r#"subPath "/etc" must be a relative path"#,
        ),
        case(
            "a workingDir climbing out of the pod (the reported one)",
            pod(
                "up-workdir",
                m("/data"),
                json!({"workingDir": "/../../../../tmp/x"}),
            ),
            r#"container "main": workingDir "/../../../../tmp/x" must not have a '..' component"#,
        ),
        case(
            "a workingDir climbing to a place this test watches",
            pod(
                "escape-workdir",
                m("/data"),
                json!({"workingDir": escape_wd}),
            ),
            "must not have a '..' component",
        ),
        case(
            "a workingDir with a comma",
            pod("comma-workdir", m("/data"), json!({"workingDir": "/w,x"})),
            r#"workingDir "/w,x" must not contain a comma"#,
        ),
        case(
            "a relative workingDir",
            pod("rel-workdir", m("/data"), json!({"workingDir": "w"})),
            r#"workingDir "w" must be an absolute path"#,
        ),
        case(
            "a volume name that is not a DNS label (it names directories and variables)",
            {
                let mut p = pod(
                    "bad-volume",
                    json!({"name": "Da_ta", "mountPath": "/d"}),
                    none,
                );
                p["spec"]["volumes"][0]["name"] = json!("Da_ta");
                p
            },
            r#"volume "Da_ta": name is not a valid DNS label"#,
        ),
    ]
}

/// A safe pod: it is accepted, so a refusal above is about the path.
fn good_pod() -> Value {
    pod(
        "safe-paths",
        json!({"name": "data", "mountPath": "/data"}),
        json!({"workingDir": "/data"}),
    )
}

fn create_body(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"pod": pod, "container": [{"name": "main"}]})).unwrap()
}

/// POST every case to `/create`; each must be a 400 whose JSON error says why.
fn assert_all_refused(client: &PluginClient, cases: &[Case], plugin: &str) {
    for c in cases {
        let r: Response = client
            .request("POST", "/create", Some(&create_body(&c.pod)))
            .unwrap_or_else(|e| panic!("{plugin}: {}: {e:#}", c.what));
        assert_eq!(r.status, 400, "{plugin}: {}: {}", c.what, r.text());
        let err = r
            .error()
            .unwrap_or_else(|| panic!("{plugin}: {}: no JSON error: {}", c.what, r.text()));
        assert!(
            err.contains(&c.want),
            "{plugin}: {}: error {err:?} should contain {:?}",
            c.what,
            c.want
        );
    }
}

/// Every file and directory under `dir`.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- local

#[test]
fn local_plugin_refuses_unsafe_paths_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let plugin_dir = dir.path().join("plugin");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let (_plugin, client) = start_local(&plugin_dir).unwrap();
    let escape = dir.path().join("escaped");
    let before = tree(&plugin_dir.join("data"));

    assert_all_refused(&client, &cases(&escape), "local");

    assert!(!escape.exists(), "a directory was made outside the pod");
    assert_eq!(
        tree(&plugin_dir.join("data")),
        before,
        "a refused pod left files in the data root"
    );

    // the same pod with a safe workingDir runs, in its volume
    let mut good = good_pod();
    good["spec"]["containers"][0]["command"] = json!(["sh", "-c", "pwd"]);
    let data: RetrievedPodData =
        serde_json::from_slice(&create_body(&good)).expect("RetrievedPodData");
    client.create_ok(&data).unwrap();
    let st = client
        .wait_status(&data.pod, T, "main to finish", |s| {
            interlink_test_harness::plugin::all_terminated(s)
        })
        .unwrap();
    assert_eq!(
        interlink_test_harness::plugin::exit_code(&st, "main"),
        Some(0)
    );
    let uid = interlink::pod_uid(&data.pod).to_string();
    let r = client
        .logs(&interlink_test_harness::plugin::log_req(
            &data.pod,
            "main",
            Default::default(),
        ))
        .unwrap();
    let pwd = r.text();
    assert!(
        Path::new(pwd.trim()).starts_with(plugin_dir.join("data")) && pwd.contains(&uid),
        "the working directory {pwd:?} is inside the pod's directory"
    );
    client.delete(&data.pod).unwrap().ok().unwrap();
}

// ---------------------------------------------------------------- API server

/// The `interlink` API server refuses the same pods itself (400, JSON error),
/// before forwarding anything to its plugin.
#[test]
fn api_server_refuses_unsafe_paths_before_the_plugin_sees_them() {
    use interlink_test_harness::apiserver::{Listen, start_interlink};
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, "").unwrap();
    let raw = srv.raw();
    let escape = dir.path().join("escaped");
    for c in cases(&escape) {
        let body = serde_json::to_vec(&json!({"pod": c.pod})).unwrap();
        let r = raw.request("POST", "/create", Some(&body)).unwrap();
        assert_eq!(r.status, 400, "api server: {}: {}", c.what, r.text());
        let err = r.error().expect("JSON error");
        // the server names fields by their place in the pod spec
        let ok = match c.want.strip_prefix("volume ") {
            Some(_) => err.contains("\"Da_ta\" is not a valid DNS label"),
            None => err.contains(
                c.want
                    .strip_prefix("container \"main\": ")
                    .unwrap_or(&c.want),
            ),
        };
        assert!(ok, "api server: {}: {err:?} (want {:?})", c.what, c.want);
        assert!(
            err.contains("\"main\"") || err.contains("spec.volumes"),
            "the error names the container: {err}"
        );
    }
    assert!(!escape.exists());
    let pods_dir = dir.path().join("data/pods");
    assert!(
        pods_dir.is_dir(),
        "the plugin keeps its pods in {pods_dir:?}"
    );
    let pods = tree(&pods_dir);
    assert!(pods.is_empty(), "the plugin saw a refused pod: {pods:?}");
}

// ---------------------------------------------------------------- slurm

/// Job names of the cluster's queue.
fn queued_job_names(conf: &Path) -> Vec<String> {
    let o = Command::new("squeue")
        .args(["-h", "-o", "%j"])
        .env("SLURM_CONF", conf)
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn slurm_plugin_refuses_unsafe_paths_before_submitting_a_job() {
    let Some(conf) = slurm_conf("Slurm part of the mount path test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let escape = dir.path().join("escaped");
    let cases = cases(&escape);
    // sbatch as a recorder: each call is logged, then the real sbatch runs
    let calls = dir.path().join("sbatch.calls");
    let sbatch = dir.path().join("sbatch");
    std::fs::write(
        &sbatch,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec sbatch \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    for runtime in ["apptainer", "singularity", "podman"] {
        let data = dir.path().join(runtime);
        let plugin = slurm::start_plugin(
            &conf,
            &data,
            &format!(
                "  container_runtime: {runtime}\n  sbatch: {}\n",
                sbatch.display()
            ),
            &[],
        )
        .unwrap();
        let client = PluginClient::tcp(plugin.port);

        assert_all_refused(&client, &cases, &format!("slurm ({runtime})"));

        assert!(
            !calls.exists(),
            "slurm ({runtime}): sbatch was called for a refused pod: {}",
            std::fs::read_to_string(&calls).unwrap_or_default()
        );
        let pods = tree(&data.join("root/pods"));
        assert!(
            pods.is_empty(),
            "slurm ({runtime}): a refused pod left {pods:?}"
        );
        let names = queued_job_names(&conf);
        for c in &cases {
            let job = format!("default-{}", c.pod["metadata"]["name"].as_str().unwrap());
            assert!(
                !names.contains(&job),
                "slurm ({runtime}): job {job} is queued"
            );
        }
        assert!(!escape.exists());
    }

    // the safe pod is submitted (the recorder sees one sbatch), its script binds
    // the volume once, and it is deleted again
    let data = dir.path().join("good");
    let plugin = slurm::start_plugin(
        &conf,
        &data,
        &format!(
            "  container_runtime: apptainer\n  sbatch: {}\n",
            sbatch.display()
        ),
        &[],
    )
    .unwrap();
    let mut client = PluginClient::tcp(plugin.port);
    client.timeout = Duration::from_secs(90);
    let good = good_pod();
    let uid = good["metadata"]["uid"].as_str().unwrap().to_string();
    let r = client
        .request("POST", "/create", Some(&create_body(&good)))
        .unwrap();
    let deleted = || {
        let body = serde_json::to_vec(&good).unwrap();
        client.request("POST", "/delete", Some(&body)).ok()
    };
    assert_eq!(r.status, 200, "the safe pod: {}", r.text());
    let script = std::fs::read_to_string(data.join("root/pods").join(&uid).join("job.sh"))
        .expect("job.sh of the safe pod");
    deleted();
    assert_eq!(
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count(),
        1,
        "one sbatch, for the safe pod"
    );
    // the container's apptainer line: one bind, of the volume, at /data
    let words: Vec<&str> = script.split_whitespace().collect();
    let binds: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "--bind")
        .map(|w| w[1])
        .collect();
    assert_eq!(binds.len(), 1, "one --bind in:\n{script}");
    assert!(
        binds[0].ends_with("/volumes/data:/data") && script.contains("--pwd /data"),
        "{script}"
    );
}

// ---------------------------------------------------------------- docker

#[test]
fn docker_plugin_refuses_unsafe_paths_and_starts_no_container() {
    let Some(Engine { env, image }) = engine("docker part of the mount path test") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("il-docker-paths-")
        .tempdir()
        .unwrap();
    let engine_sock = dir.path().join("engine.sock");
    let _engine = start_service(&env, &engine_sock, &dir.path().join("engine.log"), T).unwrap();
    let sock = dir.path().join("plugin.sock");
    let cfg = dir.path().join("plugin.yaml");
    std::fs::write(
        &cfg,
        docker_plugin_config(&sock, &dir.path().join("data"), &engine_sock, &image, ""),
    )
    .unwrap();
    let mut cmd = Command::new(bin("interlink-docker"));
    cmd.arg("--config").arg(&cfg);
    let _plugin = Proc::spawn("interlink-docker", cmd, &dir.path().join("plugin.log")).unwrap();
    wait_for_unix_socket(&sock, T).expect("plugin socket");
    let client = PluginClient::unix(&sock);

    let escape = dir.path().join("escaped");
    let cases = cases(&escape);
    assert_all_refused(&client, &cases, "docker");
    assert!(!escape.exists());

    // no container of any refused pod exists in the engine
    for c in &cases {
        let uid = c.pod["metadata"]["uid"].as_str().unwrap();
        let o = Command::new("podman")
            .envs(&env)
            .args(["ps", "-a", "-q", "--filter"])
            .arg(format!("label=interlink.pod-uid={uid}"))
            .output()
            .expect("podman ps");
        assert!(o.status.success(), "podman ps failed");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "",
            "docker: {}: a container exists",
            c.what
        );
    }
}
