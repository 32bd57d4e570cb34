//! The exec extension end to end over the real binaries: the `interlink` API
//! server in front of `interlink-local`, and the interlink client: exec (stdout,
//! stderr, exit code, stdin, tty with resize, the container's environment and
//! mounts), attach, port-forward to a TCP echo server run as the container,
//! through TCP with a token, TLS with a client certificate and a Unix socket;
//! peers without the extension (a clear 501 naming it, never a hang); the
//! refusals (no token, bad names, unknown pod or container).

use std::path::Path;
use std::time::{Duration, Instant};

use interlink::client::{Client, ClientConfig, ClientError, ExecEvent, ExecSession};
use interlink::exec::{ExitStatus, PortForwardRequest};
use interlink::extensions::EXEC;
use interlink_test_harness::apiserver::{
    ApiServer, Listen, ScriptedHttp, create_request, make_pki, start_interlink,
};
use interlink_test_harness::exec_checks::{
    attach_req, check_attach_stdin, check_tty, echo_server, exec_req, refused, target, text,
};
use interlink_test_harness::free_port;
use interlink_test_harness::plugin::{PodBuilder, ReapLocalPods, container_status, start_local};
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, EnvVar, Volume, VolumeMount};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

/// A container that lives long enough for the test, and not much longer.
const IDLE: &[&str] = &["sleep", "120"];

/// Create the pod and wait until `container` runs.
async fn run_pod(client: &Client, b: &PodBuilder, container: &str) {
    client.create(&create_request(b)).await.unwrap();
    let end = Instant::now() + T;
    loop {
        let st = client.status(std::slice::from_ref(&b.pod)).await.unwrap();
        if st.iter().any(|s| {
            container_status(s, container)
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        }) {
            return;
        }
        assert!(Instant::now() < end, "{container} never ran: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything an exec or attach sends, with a deadline.
async fn collect(s: ExecSession) -> interlink::client::ExecOutcome {
    tokio::time::timeout(T, s.output.collect(1 << 20))
        .await
        .expect("the stream ended in time")
        .expect("an exit status")
}

struct Setup {
    _reap: ReapLocalPods,
    _plugin: interlink_test_harness::Proc,
    sidecar: String,
}

fn plugin(dir: &Path) -> Setup {
    let reap = ReapLocalPods(dir.to_path_buf());
    let (proc, _) = start_local(dir).unwrap();
    Setup {
        _reap: reap,
        _plugin: proc,
        sidecar: format!("unix://{}", dir.join("plugin.sock").display()),
    }
}

/// An API server with a static token; answers it and a client that sends it.
fn server_with_token(dir: &Path, sidecar: &str) -> (ApiServer, Client, ClientConfig) {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "exec-test-token cri-host\n").unwrap();
    let srv = start_interlink(
        dir,
        "interlink",
        &Listen::Tcp,
        sidecar,
        &format!("Auth:\n  TokensFile: {}\n", tokens.display()),
    )
    .unwrap();
    let token = dir.join("client.token");
    std::fs::write(&token, "exec-test-token\n").unwrap();
    let mut cfg = srv.client_config();
    cfg.token_file = Some(token);
    let client = Client::new(cfg.clone()).unwrap();
    (srv, client, cfg)
}

/// stdout and stderr on their channels, the exit code, the container's
/// environment, working directory and mounts, stdin, a tty that follows resizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_exit_codes_stdin_and_tty() {
    let dir = tempfile::tempdir().unwrap();
    let p = plugin(dir.path());
    let (srv, client, _) = server_with_token(dir.path(), &p.sidecar);
    assert!(client.extensions().await.unwrap().has(EXEC));
    let b = PodBuilder::new("exec-me")
        .container("main", IDLE)
        .with_container("main", |c| {
            c.env = Some(vec![EnvVar {
                name: "GREETING".into(),
                value: Some("hello from the pod".into()),
                ..Default::default()
            }]);
            c.working_dir = Some("/srv/app".into());
            c.volume_mounts = Some(vec![VolumeMount {
                name: "scratch".into(),
                mount_path: "/scratch".into(),
                ..Default::default()
            }]);
        });
    let mut b = b;
    b.pod.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]);
    run_pod(&client, &b, "main").await;

    // stdout, stderr, exit code
    let s = client
        .exec(&exec_req(
            &b,
            "main",
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        ))
        .await
        .unwrap();
    let o = collect(s).await;
    assert_eq!(text(&o.stdout), "out\n");
    assert_eq!(text(&o.stderr), "err\n");
    assert_eq!(o.status, ExitStatus::ExitCode(3));
    assert!(!o.truncated);

    // the container's environment and working directory; its mount path
    // reaches the volume the container sees there
    let s = client
        .exec(&exec_req(
            &b,
            "main",
            &[
                "sh",
                "-c",
                "echo \"$GREETING\"; basename \"$PWD\"; echo shared > /scratch/f",
            ],
        ))
        .await
        .unwrap();
    let o = collect(s).await;
    assert_eq!(text(&o.stdout), "hello from the pod\napp\n", "{o:?}");
    assert_eq!(o.status, ExitStatus::Success);
    let o = collect(
        client
            .exec(&exec_req(&b, "main", &["cat", "/scratch/f"]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(text(&o.stdout), "shared\n", "{o:?}");

    // stdin round trip: what goes in comes out, EOF ends cat
    let mut r = exec_req(&b, "main", &["cat"]);
    r.stdin = true;
    let s = client.exec(&r).await.unwrap();
    s.input.stdin(&b"hello\n"[..]).await.unwrap();
    s.input.stdin(&b"world"[..]).await.unwrap();
    s.input.close_stdin().await.unwrap();
    let o = collect(s).await;
    assert_eq!(text(&o.stdout), "hello\nworld");
    assert_eq!(o.status, ExitStatus::Success);

    // without stdin the command reads EOF at once
    let o = collect(client.exec(&exec_req(&b, "main", &["cat"])).await.unwrap()).await;
    assert_eq!((o.stdout.len(), o.status), (0, ExitStatus::Success));

    // a background process holding the output open does not hold the exec:
    // it ends soon after its command, with what the command wrote
    let t0 = Instant::now();
    let o = collect(
        client
            .exec(&exec_req(&b, "main", &["sh", "-c", "sleep 30 & echo done"]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (text(&o.stdout), o.status),
        ("done\n".into(), ExitStatus::Success)
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());

    // a tty: its size follows the resizes, stderr comes on stdout
    check_tty(&client, &b, "main", "stty").await;

    // a program that is not there: a clear refusal before anything runs
    let e = client
        .exec(&exec_req(&b, "main", &["no-such-program-anywhere"]))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, ClientError::BadRequest { status: 400, message } if message.contains("no-such-program-anywhere")),
        "{e:?}"
    );

    client.delete(&b.pod).await.unwrap();
    drop(srv);
}

/// Refusals: no token (401, like every call), a name that could reach
/// outside the pod (400 JSON), an unknown pod or container (404 JSON), a
/// container that is not running (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_refusals_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = plugin(dir.path());
    let (srv, client, _) = server_with_token(dir.path(), &p.sidecar);
    let b = PodBuilder::new("refusals")
        .container("main", IDLE)
        .container("quick", &["true"]);
    run_pod(&client, &b, "main").await;

    let anonymous = Client::new(srv.client_config()).unwrap();
    let e = refused(anonymous.exec(&exec_req(&b, "main", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    let e = refused(anonymous.port_forward(&PortForwardRequest {
        target: target(&b),
        port: 80,
    }))
    .await;
    assert!(
        matches!(&e, ClientError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );

    // unknown pod, unknown container, the pod's UID under another name
    let other = PodBuilder::new("not-there").container("main", IDLE);
    let e = refused(client.exec(&exec_req(&other, "main", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::NotFound(m) if m.contains("not-there")),
        "{e:?}"
    );
    let e = refused(client.exec(&exec_req(&b, "nope", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::NotFound(m) if m.contains("nope")),
        "{e:?}"
    );
    let mut renamed = exec_req(&b, "main", &["true"]);
    renamed.target.pod_name = "someone-else".into();
    let e = refused(client.exec(&renamed)).await;
    assert!(matches!(&e, ClientError::NotFound(_)), "{e:?}");
    let e = refused(client.attach(&attach_req(&other, "main", false))).await;
    assert!(matches!(&e, ClientError::NotFound(_)), "{e:?}");

    // a container that ended
    let end = Instant::now() + T;
    loop {
        let st = client.status(std::slice::from_ref(&b.pod)).await.unwrap();
        if st.iter().any(|s| {
            container_status(s, "quick")
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.terminated.is_some())
        }) {
            break;
        }
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = refused(client.exec(&exec_req(&b, "quick", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 409, message } if message.contains("not running")),
        "{e:?}"
    );

    // bad names, straight to the API server and to the plugin: 400 with a JSON message
    let uid = b.uid();
    for path in [
        format!(
            "/exec?podUID={uid}&namespace=default&podName=refusals&container=..%2Fx&command=true"
        ),
        "/exec?podUID=..%2F..&namespace=default&podName=refusals&container=main&command=true"
            .to_string(),
        format!("/exec?podUID={uid}&namespace=default&podName=refusals&container=main"),
        format!("/attach?podUID={uid}&namespace=Default&podName=refusals&container=main"),
        format!("/portforward?podUID={uid}&namespace=default&podName=refusals&port=http"),
    ] {
        // the token goes in the header the raw client cannot send: use the
        // plugin directly for the plugin's check, and the server's answer
        // to an unauthenticated call is 401 before anything else
        let r = srv.raw().request("GET", &path, None).unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        let plugin =
            interlink_test_harness::plugin::PluginClient::unix(&dir.path().join("plugin.sock"));
        let r = plugin.request("GET", &path, None).unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.error().is_some(), "{path}: {}", r.text());
    }
    // the same through the API server with its token, over raw HTTP/1.1
    for (path, want) in [
        (
            format!(
                "/exec?podUID={uid}&namespace=default&podName=refusals&container=..%2Fx&command=true"
            ),
            "container",
        ),
        (
            format!("/portforward?podUID={uid}&namespace=default&podName=refusals&port=0"),
            "port 0",
        ),
        (
            format!(
                "/exec?podUID={uid}&namespace=default&podName=refusals&container=main&command=true"
            ),
            "WebSocket",
        ),
    ] {
        let (status, body) = raw_get(srv.port.unwrap(), &path, "exec-test-token");
        assert_eq!(status, 400, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let m = v["error"].as_str().unwrap();
        assert!(m.contains(want), "{path}: {m}");
    }

    client.delete(&b.pod).await.unwrap();
}

/// One GET with a bearer token: (status, body).
fn raw_get(port: u16, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Attach follows what the container writes from now on, stdout and stderr
/// on their channels, and ends with the container; its stdin reaches a
/// container started with `stdin: true`, and is refused for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_follows_the_container_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let p = plugin(dir.path());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &p.sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    let b = PodBuilder::new("chatty").container(
        "talk",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.1; done",
        ],
    );
    run_pod(&client, &b, "talk").await;
    let req = attach_req(&b, "talk", false);
    let o = collect(client.attach(&req).await.unwrap()).await;
    assert_eq!(o.status, ExitStatus::Success);
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert!(out.contains("tick 39\n"), "{out:?}");
    assert!(err.contains("tock 39\n"), "{err:?}");
    assert!(
        !out.contains("tock") && !err.contains("tick"),
        "{out:?} {err:?}"
    );
    // whole lines, in order
    let ticks: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");

    let b2 = PodBuilder::new("quiet").container("main", IDLE);
    run_pod(&client, &b2, "main").await;
    let e = refused(client.attach(&attach_req(&b2, "main", true))).await;
    assert!(
        matches!(&e, ClientError::BadRequest { status: 400, message } if message.contains("stdin")),
        "{e:?}"
    );

    // a container started with stdin (a shell, as critest's attach test runs):
    // what attach sends is its input, what it prints comes back
    let b3 = PodBuilder::new("shell")
        .container("sh", &["sh"])
        .with_container("sh", |c| c.stdin = Some(true));
    run_pod(&client, &b3, "sh").await;
    check_attach_stdin(&client, &b3, "sh").await;

    // stdin without stdinOnce: the end of the client's stdin ends the
    // attach, and the container keeps running for the next one
    let b5 = PodBuilder::new("shell-again")
        .container("sh", &["sh"])
        .with_container("sh", |c| c.stdin = Some(true));
    run_pod(&client, &b5, "sh").await;
    let ExecSession { input, output } = client.attach(&attach_req(&b5, "sh", true)).await.unwrap();
    input.close_stdin().await.unwrap();
    let o = tokio::time::timeout(T, output.collect(1 << 20))
        .await
        .expect("the attach ended at stdin's end")
        .unwrap();
    assert_eq!(o.status, ExitStatus::Success);
    check_attach_stdin(&client, &b5, "sh").await;

    // stdinOnce: the first attach's stdin end is the container's stdin end;
    // the attach follows the container until it ends
    let b4 = PodBuilder::new("once")
        .container("sh", &["sh"])
        .with_container("sh", |c| {
            c.stdin = Some(true);
            c.stdin_once = Some(true);
        });
    run_pod(&client, &b4, "sh").await;
    let ExecSession { input, output } = client.attach(&attach_req(&b4, "sh", true)).await.unwrap();
    input.stdin(&b"echo once $((2*3))\n"[..]).await.unwrap();
    input.close_stdin().await.unwrap();
    let o = tokio::time::timeout(T, output.collect(1 << 20))
        .await
        .expect("the attach ended with the container")
        .unwrap();
    assert_eq!(o.status, ExitStatus::Success);
    assert_eq!(text(&o.stdout), "once 6\n");
    let end = Instant::now() + T;
    loop {
        let st = client.status(std::slice::from_ref(&b4.pod)).await.unwrap();
        let term = st.iter().find_map(|s| {
            container_status(s, "sh")
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.clone())
        });
        if let Some(t) = term {
            assert_eq!(t.exit_code, 0, "{t:?}");
            break;
        }
        assert!(
            Instant::now() < end,
            "the stdinOnce shell never ended: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for p in [&b.pod, &b2.pod, &b3.pod, &b4.pod, &b5.pod] {
        client.delete(p).await.unwrap();
    }
}

/// Port-forward reaches a TCP echo server run as the container, bytes both
/// ways, several connections; a port nobody listens on is refused with a
/// message; through TCP with a token, TLS with a client certificate, and a
/// Unix socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_and_exec_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = plugin(d);
    let (_tcp, tcp_client, _) = server_with_token(d, &p.sidecar);

    let pki = make_pki(d).unwrap();
    let tls = format!(
        "TLS:\n  Enabled: true\n  CertFile: {}\n  KeyFile: {}\n  CACertFile: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca_cert.display()
    );
    let tls_srv = start_interlink(d, "interlink-tls", &Listen::Tls, &p.sidecar, &tls).unwrap();
    let mut cfg = tls_srv.client_config();
    cfg.ca_cert_file = Some(pki.ca_cert.clone());
    cfg.client_cert_file = Some(pki.client_cert.clone());
    cfg.client_key_file = Some(pki.client_key.clone());
    let tls_client = Client::new(cfg.clone()).unwrap();
    // without the client certificate the TLS server refuses the connection
    let mut no_cert = cfg.clone();
    no_cert.client_cert_file = None;
    no_cert.client_key_file = None;
    let no_cert = Client::new(no_cert).unwrap();

    let sock = d.join("api.sock");
    let unix_srv = start_interlink(
        d,
        "interlink-unix",
        &Listen::Unix(sock.clone()),
        &p.sidecar,
        "",
    )
    .unwrap();
    let unix_client = Client::new(unix_srv.client_config()).unwrap();

    let port = free_port();
    let cmd = echo_server(port);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let b = PodBuilder::new("echo").container("srv", &cmd);
    run_pod(&tcp_client, &b, "srv").await;
    let req = PortForwardRequest {
        target: target(&b),
        port,
    };

    for (name, client) in [
        ("tcp", &tcp_client),
        ("tls", &tls_client),
        ("unix", &unix_client),
    ] {
        // the server may take a moment to listen: retry while refused
        let end = Instant::now() + T;
        let mut s = loop {
            match client.port_forward(&req).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        e.to_string().contains("cannot connect to port"),
                        "{name}: {e:?}"
                    );
                    assert!(Instant::now() < end, "{name}: {e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        for msg in [&b"ping"[..], &vec![b'x'; 200_000][..]] {
            s.write_all(msg).await.unwrap();
            s.flush().await.unwrap();
            let want = [&b"echo:"[..], msg].concat();
            // the server answers each read it makes, prefixed
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while text(&got).replace("echo:", "").len() < msg.len() {
                let n = tokio::time::timeout(T, s.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "{name}: EOF after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            if msg.len() <= 4 {
                assert_eq!(got, want, "{name}");
            } else {
                let s = text(&got).replace("echo:", "");
                assert_eq!(s.len(), msg.len(), "{name}");
                assert!(s.bytes().all(|c| c == b'x'), "{name}");
            }
        }
        s.shutdown().await.unwrap();

        // exec over the same transport
        let o = collect(
            client
                .exec(&exec_req(&b, "srv", &["echo", name]))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(text(&o.stdout), format!("{name}\n"));
    }
    let e = refused(no_cert.exec(&exec_req(&b, "srv", &["true"]))).await;
    assert!(matches!(&e, ClientError::Unreachable(_)), "{e:?}");

    // nothing listens there: refused with the reason, before any byte
    let closed = PortForwardRequest {
        target: target(&b),
        port: free_port(),
    };
    let e = refused(tcp_client.port_forward(&closed)).await;
    let m = e.to_string();
    assert!(
        m.contains("cannot connect to port") && m.contains("refused"),
        "{m}"
    );
    tcp_client.delete(&b.pod).await.unwrap();
}

/// A peer without the extension: an upstream-like API server (404 at every
/// path it does not know) and our API server in front of an upstream-like
/// plugin. Either way the client gets a 501 naming the "exec" extension,
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_the_extension_are_named_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    // upstream's API server: its router answers 404 to /exec and /extensions
    let upstream = ScriptedHttp::start(|_, _| {
        Some((
            404,
            "text/plain",
            "404 page not found".to_string(),
            Duration::ZERO,
        ))
    })
    .unwrap();
    let client = Client::new(ClientConfig {
        address: upstream.url(),
        port: None,
        ..Default::default()
    })
    .unwrap();
    let b = PodBuilder::new("anything").container("main", IDLE);
    let started = Instant::now();
    let e = refused(client.exec(&exec_req(&b, "main", &["true"]))).await;
    assert!(e.is_unimplemented(), "{e:?}");
    assert!(e.to_string().contains("\"exec\" extension"), "{e}");
    let e = refused(client.port_forward(&PortForwardRequest {
        target: target(&b),
        port: 8080,
    }))
    .await;
    assert!(e.is_unimplemented(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // our API server in front of an upstream-like plugin (no /extensions)
    let plugin = ScriptedHttp::start(|method, path| {
        Some(match (method, path) {
            ("GET", "/status") => (200, "application/json", "[]".into(), Duration::ZERO),
            _ => (
                404,
                "text/plain",
                "404 page not found".into(),
                Duration::ZERO,
            ),
        })
    })
    .unwrap();
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &plugin.url(), "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    assert!(!client.extensions().await.unwrap().has(EXEC));
    let e = refused(client.attach(&attach_req(&b, "main", false))).await;
    assert!(e.is_unimplemented(), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("plugin") && m.contains("\"exec\" extension"),
        "{m}"
    );
    // and over raw HTTP the answer is a JSON 501
    let (status, body) = raw_get(
        srv.port.unwrap(),
        &format!(
            "/exec?podUID={}&namespace=default&podName=anything&container=main&command=true",
            b.uid()
        ),
        "",
    );
    assert_eq!(status, 501, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("exec"), "{body}");
}

/// Whether a process has ended (gone, or a zombie waiting to be reaped).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The pid an exec printed first (`echo $$`).
async fn first_line_pid(output: &mut interlink::client::ExecOutput) -> u32 {
    let mut seen = String::new();
    tokio::time::timeout(T, async {
        while !seen.contains('\n') {
            match output.next().await.expect("output").unwrap() {
                ExecEvent::Stdout(b) => seen.push_str(&text(&b)),
                other => panic!("{other:?} before the pid"),
            }
        }
    })
    .await
    .expect("the pid in time");
    seen.trim().parse().expect("a pid")
}

/// A stream cut on either side ends cleanly on the other: a client that goes
/// away mid-exec (with and without a tty) has its command stopped on the
/// plugin's side, through the API server; a pod deleted under an exec ends
/// the exec with a failure status rather than leaving it hanging, and what
/// an exec left running in the background ends with the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_exec_stops_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let p = plugin(dir.path());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &p.sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    let b = PodBuilder::new("cut").container("main", IDLE);
    run_pod(&client, &b, "main").await;

    for tty in [false, true] {
        let mut r = exec_req(&b, "main", &["sh", "-c", "echo $$; exec sleep 97"]);
        r.tty = tty;
        let ExecSession { input, mut output } = client.exec(&r).await.unwrap();
        let pid = first_line_pid(&mut output).await;
        assert!(!ended(pid), "tty={tty}: {pid} should run");
        drop(input);
        drop(output);
        let end = Instant::now() + T;
        while !ended(pid) {
            assert!(
                Instant::now() < end,
                "tty={tty}: {pid} still runs after the client left"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // a cancel (what the host sends at an ExecSync deadline) stops the
    // command, and its status still follows, after what it printed
    let r = exec_req(&b, "main", &["sh", "-c", "echo $$; exec sleep 96"]);
    let ExecSession { input, mut output } = client.exec(&r).await.unwrap();
    let pid = first_line_pid(&mut output).await;
    input.cancel().await.unwrap();
    let ev = tokio::time::timeout(T, output.next())
        .await
        .expect("a status after the cancel")
        .expect("an event")
        .unwrap();
    assert!(
        matches!(ev, ExecEvent::Exit(ref s) if *s != ExitStatus::Success),
        "{ev:?}"
    );
    assert!(ended(pid), "{pid} still runs when the status came");

    // what an exec leaves running belongs to the pod: it ends with it
    let o = collect(
        client
            .exec(&exec_req(
                &b,
                "main",
                &["sh", "-c", "sleep 95 >/dev/null 2>&1 & echo $!"],
            ))
            .await
            .unwrap(),
    )
    .await;
    let left: u32 = text(&o.stdout).trim().parse().expect("a pid");
    assert!(!ended(left), "{left} should still run");

    let r = exec_req(&b, "main", &["sh", "-c", "echo $$; exec sleep 97"]);
    let ExecSession { input, mut output } = client.exec(&r).await.unwrap();
    let pid = first_line_pid(&mut output).await;
    let deleter = {
        let client = client.clone();
        let pod = b.pod.clone();
        tokio::spawn(async move { client.delete(&pod).await })
    };
    let ev = tokio::time::timeout(T, output.next())
        .await
        .expect("the exec ended with its pod")
        .expect("an event")
        .unwrap();
    match ev {
        ExecEvent::Exit(ExitStatus::Failure(m)) => assert!(m.contains("deleted"), "{m}"),
        other => panic!("{other:?}"),
    }
    deleter.await.unwrap().unwrap();
    let end = Instant::now() + T;
    while !ended(pid) || !ended(left) {
        assert!(Instant::now() < end, "{pid} or {left} outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(input);
}
