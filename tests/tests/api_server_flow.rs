//! The `interlink` API server between the `interlink::client` and the real
//! `interlink-local` plugin, over TCP, TLS (client certificates) and a Unix
//! socket: create, status, logs (bounded and followed), delete, pinglink,
//! updateCache after a restart, metrics.

use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink::client::{Client, ClientConfig, ClientError};
use interlink::{ContainerLogOpts, pod_uid};
use interlink_test_harness::apiserver::{Listen, create_request, make_pki, start_interlink};
use interlink_test_harness::plugin::{PodBuilder, container_status, log_req, start_local};

fn is_running(st: &interlink::PodStatus, c: &str) -> bool {
    container_status(st, c)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

async fn wait_status(
    client: &Client,
    pod: &k8s_openapi::api::core::v1::Pod,
    what: &str,
    pred: impl Fn(&interlink::PodStatus) -> bool,
) -> interlink::PodStatus {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let st = client
            .status(std::slice::from_ref(pod))
            .await
            .expect("status");
        if let Some(s) = st.iter().find(|s| s.pod_uid == pod_uid(pod))
            && pred(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; last: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// create -> running -> logs -> follow -> delete, through a client of `cfg`.
async fn lifecycle(client: &Client) {
    let ping = client.ping().await.expect("pinglink");
    // the local plugin answers a PingResponse
    assert!(
        ping.is_some(),
        "expected a PingResponse from the local plugin"
    );

    let b = PodBuilder::new("ticker").container(
        "main",
        &[
            "sh",
            "-c",
            "echo hello-from-pod; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done",
        ],
    );
    let created = client.create(&create_request(&b)).await.expect("create");
    assert_eq!(created.pod_uid, b.uid());
    assert!(!created.pod_jid.is_empty(), "the plugin gives a job id");

    let st = wait_status(client, &b.pod, "main running", |s| is_running(s, "main")).await;
    assert_eq!(st.pod_name, "ticker");
    assert_eq!(st.pod_namespace, "default");

    // bounded logs
    let req = log_req(&b.pod, "main", ContainerLogOpts::default());
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = client.logs(&req, 1 << 20).await.expect("logs");
        if String::from_utf8_lossy(&logs).contains("hello-from-pod") {
            break;
        }
        assert!(Instant::now() < end, "no hello in logs: {logs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a small bound is honoured
    let few = client.logs(&req, 5).await.expect("bounded logs");
    assert_eq!(few.len(), 5, "{few:?}");

    // follow: new lines keep arriving through the server
    let mut stream = client.logs_follow(&req).await.expect("follow");
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(20);
    let mut ticks = 0;
    while ticks < 5 {
        let chunk = tokio::time::timeout_at(end.into(), stream.next())
            .await
            .expect("follow stream stalled")
            .expect("follow stream ended early")
            .expect("follow chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        ticks = seen.matches("tick-").count();
    }
    drop(stream);

    client.delete(&b.pod).await.expect("delete");
    let st = client
        .status(std::slice::from_ref(&b.pod))
        .await
        .expect("status after delete");
    assert!(
        st.iter()
            .all(|s| s.pod_uid != b.uid() || !is_running(s, "main")),
        "pod still running after delete: {st:?}"
    );
    // getLogs of a deleted pod: the server forgot it
    match client.logs(&req, 1024).await {
        Err(ClientError::NotFound(m)) => assert!(m.contains(b.uid()), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lifecycle_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    lifecycle(&client).await;

    let raw = srv.raw();
    let health = raw.request("GET", "/healthz", None).unwrap();
    assert_eq!(health.status, 200);
    let m = raw.request("GET", "/metrics", None).unwrap();
    assert_eq!(m.status, 200);
    let text = m.text();
    for needle in [
        r#"interlink_http_requests_total{endpoint="/create",code="200"} 1"#,
        r#"interlink_http_request_duration_seconds_count{endpoint="/status",code="200"}"#,
        r#"interlink_plugin_request_duration_seconds_count{endpoint="/create",outcome="ok"} 1"#,
        r#"interlink_http_requests_total{endpoint="/getLogs",code="404"} 1"#,
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_lifecycle_replaces_stale_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let sock = dir.path().join("run").join("interlink.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    // a stale socket left by a crashed server
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());

    let srv = start_interlink(
        dir.path(),
        "interlink",
        &Listen::Unix(sock.clone()),
        &sidecar,
        "",
    )
    .unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let client = Client::new(srv.client_config()).unwrap();
    lifecycle(&client).await;

    // a second server on the same live socket refuses to start
    let mut cmd = std::process::Command::new(interlink_test_harness::bin("interlink"));
    let out = cmd.arg("--config").arg(&srv.config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_required_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path()).unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let tls = format!(
        "TLS:\n  Enabled: true\n  CertFile: {}\n  KeyFile: {}\n  CACertFile: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca_cert.display()
    );
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tls, &sidecar, &tls).unwrap();
    let with = |f: &dyn Fn(&mut ClientConfig)| {
        let mut c = srv.client_config();
        c.ca_cert_file = Some(pki.ca_cert.clone());
        c.client_cert_file = Some(pki.client_cert.clone());
        c.client_key_file = Some(pki.client_key.clone());
        f(&mut c);
        Client::new(c).unwrap()
    };

    // the right CA and a client certificate from it: the whole flow works
    lifecycle(&with(&|_| {})).await;

    // no client certificate: refused during the handshake
    let no_cert = with(&|c| {
        c.client_cert_file = None;
        c.client_key_file = None;
    });
    assert!(matches!(
        no_cert.ping().await,
        Err(ClientError::Unreachable(_))
    ));
    // a client certificate from another CA: refused
    let other = with(&|c| {
        c.client_cert_file = Some(pki.other_client_cert.clone());
        c.client_key_file = Some(pki.other_client_key.clone());
    });
    assert!(matches!(
        other.ping().await,
        Err(ClientError::Unreachable(_))
    ));
    // the client does not trust the server's CA
    let distrust = with(&|c| c.ca_cert_file = Some(pki.other_ca_cert.clone()));
    match distrust.ping().await {
        Err(ClientError::Unreachable(m)) => {
            assert!(m.to_lowercase().contains("certificate"), "{m}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // plain http to a TLS port does not pass for success
    let mut plain = srv.client_config();
    plain.address = "http://127.0.0.1".into();
    assert!(Client::new(plain).unwrap().ping().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinglink_503_while_the_plugin_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plugin.sock");
    let sidecar = format!("unix://{}", sock.display());
    // the server starts before its plugin
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    match client.ping().await {
        Err(ClientError::Server {
            status: 503,
            message,
        }) => {
            assert!(
                message.contains("plugin") && message.contains("plugin.sock"),
                "{message}"
            )
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // a create while the plugin is down: 502 naming the plugin
    let b = PodBuilder::new("early").container("main", &["true"]);
    match client.create(&create_request(&b)).await {
        Err(ClientError::Server {
            status: 502,
            message,
        }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected 502, got {other:?}"),
    }

    let (mut plugin, _) = start_local(dir.path()).unwrap();
    assert!(
        client
            .ping()
            .await
            .expect("ping once the plugin is up")
            .is_some()
    );
    plugin.kill9();
    let _ = std::fs::remove_file(&sock);
    assert!(matches!(
        client.ping().await,
        Err(ClientError::Server { status: 503, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_cache_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let sock = dir.path().join("interlink.sock");
    let listen = Listen::Unix(sock);
    let mut srv = start_interlink(dir.path(), "first", &listen, &sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    // a UID in the form CRI tools make up (not a UUID) is accepted for pods the server knows
    let mut b =
        PodBuilder::new("survivor").container("main", &["sh", "-c", "echo still-here; sleep 60"]);
    b.pod.metadata.uid = Some(format!("cri-test-uid-{}", std::process::id()));
    client.create(&create_request(&b)).await.unwrap();
    wait_status(&client, &b.pod, "running", |s| is_running(s, "main")).await;

    srv.proc.stop(Duration::from_secs(5));
    assert!(!srv.proc.alive());
    let _srv2 = start_interlink(dir.path(), "second", &listen, &sidecar, "").unwrap();
    let req = log_req(&b.pod, "main", ContainerLogOpts::default());
    // the new server does not know the pod; a non-UUID UID is a 400 as upstream
    match client.logs(&req, 1024).await {
        Err(ClientError::BadRequest {
            status: 400,
            message,
        }) => assert!(message.contains("PodUID"), "{message}"),
        other => panic!("expected 400, got {other:?}"),
    }
    client.update_cache(&b.pod).await.expect("updateCache");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = client
            .logs(&req, 4096)
            .await
            .expect("logs after updateCache");
        if String::from_utf8_lossy(&logs).contains("still-here") {
            break;
        }
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.delete(&b.pod).await.unwrap();
}
