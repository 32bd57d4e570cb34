//! Bad input to the `interlink` API server gets a 4xx with a JSON message
//! naming the problem; a plugin that fails, answers garbage or times out gives
//! 502/504; configuration mistakes stop the binary with a clear message.

use std::time::{Duration, Instant};

use interlink::client::{Client, ClientError};
use interlink::{ContainerLogOpts, LogStruct};
use interlink_test_harness::apiserver::{Listen, ScriptedHttp, create_request, start_interlink};
use interlink_test_harness::plugin::{PodBuilder, log_req, random_uid, start_local};
use serde_json::json;

fn error_of(r: &interlink_test_harness::plugin::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", r.text()));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_4xx_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let srv = start_interlink(
        dir.path(),
        "interlink",
        &Listen::Tcp,
        &sidecar,
        "MaxBodyBytes: 65536\n",
    )
    .unwrap();
    let raw = srv.raw();
    let client = Client::new(srv.client_config()).unwrap();

    // a pod the server knows, for the log cases
    let b = PodBuilder::new("known").container("main", &["sh", "-c", "echo hi; sleep 30"]);
    client.create(&create_request(&b)).await.unwrap();

    let valid_logs = log_req(&b.pod, "main", ContainerLogOpts::default());
    let logs_with = |f: &dyn Fn(&mut LogStruct)| {
        let mut l = valid_logs.clone();
        f(&mut l);
        serde_json::to_vec(&l).unwrap()
    };
    let big = vec![b'x'; 70_000];
    let bad_ns_pod = {
        let mut p = b.clone();
        p.pod.metadata.namespace = Some("Bad_NS".into());
        serde_json::to_vec(&create_request(&p)).unwrap()
    };
    let missing_cm = {
        let mut p = PodBuilder::new("needs-cm")
            .container("main", &["true"])
            .config_map("cfg", "app-config", &[("a", "b")], "main", "/cfg");
        p.config_maps.clear();
        serde_json::to_vec(&create_request(&p)).unwrap()
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/create", b"{not json".to_vec(), 400, "malformed JSON"),
        ("POST", "/create", b"".to_vec(), 400, "empty body"),
        ("POST", "/create", big.clone(), 413, "exceeds the limit of 65536 bytes"),
        ("GET", "/status", big, 413, "exceeds the limit"),
        ("POST", "/create", bad_ns_pod, 400, "metadata.namespace \"Bad_NS\""),
        // as upstream, the server passes a pod lacking a referenced object on; the plugin refuses it
        ("POST", "/create", missing_cm, 422, "configMap \"app-config\" was not sent"),
        ("POST", "/create", serde_json::to_vec(&json!({"pod": {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"containers": []}}})).unwrap(), 400, "spec.containers must not be empty"),
        ("GET", "/status", b"{\"not\": \"a list\"}".to_vec(), 400, "JSON array of Pod"),
        ("GET", "/status", serde_json::to_vec(&json!([{"metadata": {"name": "p"}}])).unwrap(), 400, "pod [0]: metadata.uid is required"),
        ("DELETE", "/delete", serde_json::to_vec(&json!({"metadata": {"uid": "../../etc"}})).unwrap(), 400, "not a valid pod UID"),
        ("GET", "/getLogs", logs_with(&|l| l.namespace = "Default".into()), 400, "Namespace \"Default\""),
        ("GET", "/getLogs", logs_with(&|l| l.container_name = "bad_name".into()), 400, "ContainerName \"bad_name\""),
        ("GET", "/getLogs", logs_with(&|l| l.pod_uid = "ABC-NOT-A-UUID".into()), 400, "PodUID \"ABC-NOT-A-UUID\" is not a lowercase UUID"),
        ("GET", "/getLogs", logs_with(&|l| l.opts.tail = -5), 400, "Opts.Tail"),
        ("GET", "/getLogs", logs_with(&|l| l.pod_uid = random_uid()), 404, "is not known"),
        ("GET", "/getLogs", logs_with(&|l| l.container_name = "sidecar".into()), 404, "no container \"sidecar\""),
        ("POST", "/updateCache", b"[1,2]".to_vec(), 400, "malformed JSON"),
        ("GET", "/nope", Vec::new(), 404, "no such endpoint"),
    ];
    for (method, path, body, want, contains) in cases {
        let r = raw.request(method, path, Some(&body)).unwrap();
        assert_eq!(r.status, want, "{method} {path} ({contains}): {}", r.text());
        let msg = error_of(&r);
        assert!(
            msg.contains(contains),
            "{method} {path}: {msg:?} lacks {contains:?}"
        );
    }

    // GET and DELETE with bodies are what upstream's clients send; POST is accepted too
    let pods = serde_json::to_vec(&[&b.pod]).unwrap();
    for m in ["GET", "POST"] {
        let r = raw.request(m, "/status", Some(&pods)).unwrap();
        assert_eq!(r.status, 200, "{m} /status: {}", r.text());
        let st: Vec<interlink::PodStatus> = r.json().unwrap();
        assert_eq!(st[0].pod_uid, b.uid());
    }
    let r = raw
        .request(
            "POST",
            "/getLogs",
            Some(&serde_json::to_vec(&valid_logs).unwrap()),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // a pod the plugin refuses (a volume kind it does not support): the plugin's 4xx passes through
    let mut refused = PodBuilder::new("refused").container("main", &["true"]);
    refused.pod.spec.as_mut().unwrap().volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "nfs".into(),
        nfs: Some(k8s_openapi::api::core::v1::NFSVolumeSource {
            server: "x".into(),
            path: "/".into(),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    refused = refused.with_container("main", |c| {
        c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "nfs".into(),
            mount_path: "/n".into(),
            ..Default::default()
        }])
    });
    match client.create(&create_request(&refused)).await {
        Err(e @ ClientError::BadRequest { .. }) => {
            assert!(e.to_string().contains("plugin"), "{e}")
        }
        other => panic!("expected a 4xx from the plugin, got {other:?}"),
    }
    let r = raw
        .request(
            "DELETE",
            "/delete",
            Some(&serde_json::to_vec(&b.pod).unwrap()),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // the server is still fine after all that
    assert!(client.ping().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_failures_are_502_and_504() {
    let dir = tempfile::tempdir().unwrap();
    // a plugin that answers garbage to /status, 500 to /create and never answers /getLogs
    let fake = ScriptedHttp::start(|_m, path| match path {
        "/status" => Some((
            200,
            "application/json",
            "this is not json".into(),
            Duration::ZERO,
        )),
        "/create" => Some((
            500,
            "application/json",
            r#"{"error":"sbatch: disk full"}"#.into(),
            Duration::ZERO,
        )),
        "/delete" => Some((200, "text/plain", "ok".into(), Duration::from_secs(3))),
        "/pinglink" => Some((
            404,
            "text/plain",
            "404 page not found".into(),
            Duration::ZERO,
        )),
        _ => None,
    })
    .unwrap();
    let srv = start_interlink(
        dir.path(),
        "interlink",
        &Listen::Tcp,
        &fake.url(),
        "PluginTimeoutSeconds: 1\n",
    )
    .unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    let b = PodBuilder::new("p").container("main", &["true"]);

    match client.status(std::slice::from_ref(&b.pod)).await {
        Err(ClientError::Server {
            status: 502,
            message,
        }) => assert!(message.contains("unreadable"), "{message}"),
        other => panic!("expected 502, got {other:?}"),
    }
    match client.create(&create_request(&b)).await {
        Err(ClientError::Server {
            status: 502,
            message,
        }) => assert!(message.contains("sbatch: disk full"), "{message}"),
        other => panic!("expected 502, got {other:?}"),
    }
    let t = Instant::now();
    match client.delete(&b.pod).await {
        Err(ClientError::Server {
            status: 504,
            message,
        }) => assert!(message.contains("in time"), "{message}"),
        other => panic!("expected 504, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the plugin timeout was not applied"
    );
    // no /pinglink on the plugin: the server falls back to GET /status with [] as upstream
    // does; a 200 means alive, and a body that is not a PingResponse is plain text
    assert!(matches!(client.ping().await, Ok(None)));
    drop(fake);
    // the plugin gone: 503
    assert!(matches!(
        client.ping().await,
        Err(ClientError::Server { status: 503, .. })
    ));
}

#[test]
fn configuration_errors_stop_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str, env: &[(&str, &str)]| {
        let p = dir.path().join("cfg.yaml");
        std::fs::write(&p, yaml).unwrap();
        let mut cmd = std::process::Command::new(interlink_test_harness::bin("interlink"));
        cmd.arg("--config").arg(&p).arg("--check");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let (ok, out) = run("InterlinkPort: 3000\nSidecarPorts: 4000\n", &[]);
    assert!(!ok && out.contains("unknown field `SidecarPorts`"), "{out}");
    let (ok, out) = run("TLS:\n  Enabled: true\n", &[]);
    assert!(!ok && out.contains("TLS.CertFile"), "{out}");
    let (ok, out) = run("InterlinkPort: 3000\n", &[("INTERLINKPORT", "many")]);
    assert!(!ok && out.contains("INTERLINKPORT"), "{out}");
    let (ok, out) = run("Auth:\n  OIDC:\n    Issuer: https://x\n", &[]);
    assert!(!ok && out.contains("Audiences"), "{out}");
    let (ok, out) = run(
        "InterlinkPort: \"3000\"\nSidecarURL: unix:///tmp/p.sock\n",
        &[],
    );
    assert!(ok, "{out}");

    // env overrides reach the running server: INTERLINKPORT picks the port
    let port = interlink_test_harness::free_port();
    let p = dir.path().join("env.yaml");
    std::fs::write(&p, "InterlinkPort: 1\n").unwrap();
    let mut cmd = std::process::Command::new(interlink_test_harness::bin("interlink"));
    cmd.arg("--config")
        .arg(&p)
        .env("INTERLINKPORT", port.to_string());
    let _srv =
        interlink_test_harness::Proc::spawn("interlink", cmd, &dir.path().join("env.log")).unwrap();
    interlink_test_harness::wait_for_tcp(port, Duration::from_secs(20)).unwrap();
    let r = interlink_test_harness::plugin::PluginClient::tcp(port)
        .request("GET", "/healthz", None)
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_plugin_answer_is_refused_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    // a plugin answering /status with 65 MiB: more than the server reads
    let fake = ScriptedHttp::start(|_m, path| match path {
        "/status" => Some((
            200,
            "application/json",
            format!("[{}]", " ".repeat(65 << 20)),
            Duration::ZERO,
        )),
        _ => None,
    })
    .unwrap();
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &fake.url(), "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    let b = PodBuilder::new("p").container("main", &["true"]);
    match client.status(std::slice::from_ref(&b.pod)).await {
        Err(ClientError::Server {
            status: 502,
            message,
        }) => assert!(message.contains("larger than"), "{message}"),
        other => panic!("expected 502, got {other:?}"),
    }
}
