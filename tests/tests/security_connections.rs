//! Connection exhaustion, replayed against the real `interlink` API server and
//! the real `interlink-local` plugin (the plugin kit's server) with the bounds
//! set short: a socket that sends nothing, a request head that never ends, a
//! body sent one byte at a time (authenticated), and an idle kept-alive
//! connection are all closed by the server; with far more idle sockets open
//! than the connection limit (and than half the process's descriptors), a
//! normal authenticated request still succeeds and a followed log stream keeps
//! flowing. Nothing here times the server: each wait is a generous upper bound
//! on behaviour a client sees (the figures are in `interlink/benches/connections.rs`).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use interlink::ContainerLogOpts;
use interlink::client::Client;
use interlink_test_harness::apiserver::{Listen, start_interlink};
use interlink_test_harness::plugin::{
    PluginClient, PodBuilder, ReapLocalPods, log_req, start_local,
};
use interlink_test_harness::{Proc, bin, free_port, wait_for_tcp};

/// Longest a closed-by-the-server socket may take to show EOF here: many times
/// the bounds the servers are given below.
const CLOSE_WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "conn-test-token-5b1f";

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

/// Wait for the server to close `s` (EOF or reset), collecting what it sent.
fn closed_by_server(s: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: still open after {within:?}");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: still open after {within:?}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Send a request head announcing `len` body bytes, then the body one byte per
/// `every`, until the server answers or closes. Returns (answer, bytes sent).
fn drip_body(port: u16, path: &str, auth: bool, len: usize, every: Duration) -> (String, usize) {
    let mut s = connect(port);
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n"
    );
    if auth {
        head.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(every)).unwrap();
    let end = Instant::now() + CLOSE_WAIT;
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end && sent < len {
        if s.write_all(b" ").is_err() {
            break;
        }
        sent += 1;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                got.extend(closed_by_server(&mut s, CLOSE_WAIT, "after the 408"));
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), sent)
}

fn assert_body_cut(answer: &str, sent: usize, len: usize, what: &str) {
    assert!(
        sent < len,
        "{what}: the whole body was accepted ({sent} bytes)"
    );
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{what}: expected a 408, got {answer:?}"
    );
    assert!(
        answer.contains("\"error\"") && answer.contains("not received within"),
        "{what}: expected a JSON error, got {answer:?}"
    );
}

/// A request head that stops halfway, the rest never sent.
fn half_head(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc").unwrap();
    s
}

/// One keep-alive request answered, then the connection left idle.
fn kept_alive(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).expect("healthz answer");
        assert!(n > 0, "closed before answering /healthz");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    s
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn authed_client(srv: &interlink_test_harness::apiserver::ApiServer, dir: &Path) -> Client {
    let token_file = dir.join("client.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut cfg = srv.client_config();
    cfg.token_file = Some(token_file);
    Client::new(cfg).unwrap()
}

fn tokens_auth(dir: &Path) -> String {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{TOKEN} ci\n")).unwrap();
    format!("Auth:\n  TokensFile: {}\n", tokens.display())
}

#[test]
fn api_server_closes_silent_half_slow_and_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let extra = format!(
        "{}HeaderReadTimeoutSeconds: 1\nBodyReadTimeoutSeconds: 2\nIdleTimeoutSeconds: 2\nMaxConnections: 64\n",
        tokens_auth(dir.path())
    );
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, &extra).unwrap();
    let port = srv.port.unwrap();

    // a socket that sends nothing: no answer, closed
    let mut silent = connect(port);
    let got = closed_by_server(&mut silent, CLOSE_WAIT, "silent socket");
    assert!(got.is_empty(), "{got:?}");
    // a request head that never ends
    let mut half = half_head(port);
    closed_by_server(&mut half, CLOSE_WAIT, "half a request head");
    // an authenticated body at one byte every 300 ms: cut with a 408
    let (answer, sent) = drip_body(port, "/create", true, 4096, Duration::from_millis(300));
    assert_body_cut(&answer, sent, 4096, "slow authenticated body");
    // a kept-alive connection without a next request
    let mut idle = kept_alive(port);
    closed_by_server(&mut idle, CLOSE_WAIT, "idle kept-alive connection");

    // the server still serves
    let client = authed_client(&srv, dir.path());
    rt().block_on(client.ping())
        .expect("authenticated ping after the attacks");
    assert!(
        !srv.proc.output().contains(TOKEN),
        "the token reached the server log"
    );
}

#[test]
fn api_server_serves_clients_past_a_flood_of_idle_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    // long head bound: only the connection limit can make room here
    let extra = format!(
        "{}HeaderReadTimeoutSeconds: 300\nIdleTimeoutSeconds: 300\n",
        tokens_auth(dir.path())
    );
    // the reported attack: 600 idle sockets against a 512-descriptor process
    let limited = dir.path().join("interlink-limited");
    std::fs::write(
        &limited,
        format!(
            "#!/bin/sh\nulimit -n 512 || exit 1\nexec {} \"$@\"\n",
            bin("interlink").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&limited, std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = start_interlink_via(dir.path(), &limited, &sidecar, &extra);
    let port = srv.port.unwrap();
    let client = authed_client(&srv, dir.path());
    let rt = rt();
    rt.block_on(client.ping()).expect("ping before the flood");

    let flood: Vec<TcpStream> = (0..600).map(|_| connect(port)).collect();
    let half: Vec<TcpStream> = (0..50).map(|_| half_head(port)).collect();
    // the server makes room by closing idle connections, the pre-flood client's
    // pooled one among them (a reuse racing that close fails once, as with any
    // keep-alive close): a client connecting now must be served
    drop(client);
    let client = authed_client(&srv, dir.path());
    rt.block_on(client.ping())
        .expect("authenticated ping with 650 idle sockets open");
    let raw = srv.raw();
    assert_eq!(raw.request("GET", "/healthz", None).unwrap().status, 200);
    // the server used at most its limit (half of 512) for them
    let fds = std::fs::read_dir(format!("/proc/{}/fd", srv.proc.pid()))
        .unwrap()
        .count();
    assert!(
        fds < 300,
        "{fds} descriptors open for a limit of 256 connections"
    );
    drop((flood, half));
}

/// [`start_interlink`] through a wrapper script (to set the descriptor limit).
fn start_interlink_via(
    dir: &Path,
    program: &Path,
    sidecar: &str,
    extra: &str,
) -> interlink_test_harness::apiserver::ApiServer {
    // write the usual config with start_interlink's layout, then run it ourselves
    let port = free_port();
    let config = dir.join("limited.yaml");
    std::fs::write(
        &config,
        format!(
            "InterlinkAddress: http://127.0.0.1\nInterlinkPort: {port}\nSidecarURL: \"{sidecar}\"\nSidecarPort: \"0\"\nDataRootFolder: {}\nShutdownGraceSeconds: 3\n{extra}",
            dir.join("interlink-data").display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(program);
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,interlink=debug");
    let proc = Proc::spawn("interlink (512 fds)", cmd, &dir.join("limited.log")).unwrap();
    wait_for_tcp(port, Duration::from_secs(20)).unwrap();
    interlink_test_harness::apiserver::ApiServer {
        proc,
        address: "http://127.0.0.1".into(),
        port: Some(port),
        config,
    }
}

/// `interlink-local` on TCP with `yaml` as its config file.
fn start_plugin(dir: &Path, yaml: &str) -> (Proc, PluginClient, u16) {
    let port = free_port();
    let config = dir.join("plugin.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut cmd = std::process::Command::new(bin("interlink-local"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .env("RUST_LOG", "info,interlink_plugin_local=debug");
    let proc = Proc::spawn("interlink-local", cmd, &dir.join("plugin.log")).unwrap();
    wait_for_tcp(port, Duration::from_secs(20)).unwrap();
    (proc, PluginClient::tcp(port), port)
}

#[test]
fn plugin_closes_silent_half_slow_and_idle_connections_but_not_log_streams() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c, port) = start_plugin(
        dir.path(),
        "header_read_timeout_seconds: 1\nbody_read_timeout_seconds: 2\nidle_timeout_seconds: 2\nmax_connections: 32\n",
    );
    // a followed log that stays quiet longer than every bound
    let p = PodBuilder::new("quiet").container(
        "main",
        &["sh", "-c", "echo first; sleep 6; echo late; sleep 60"],
    );
    c.create_ok(&p.data()).unwrap();
    let mut follow = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(follow.status, 200);
    follow.wait_for("first", Duration::from_secs(20)).unwrap();

    let mut silent = connect(port);
    let got = closed_by_server(&mut silent, CLOSE_WAIT, "silent socket");
    assert!(got.is_empty(), "{got:?}");
    let mut half = half_head(port);
    closed_by_server(&mut half, CLOSE_WAIT, "half a request head");
    let (answer, sent) = drip_body(port, "/create", false, 4096, Duration::from_millis(300));
    assert_body_cut(&answer, sent, 4096, "slow body");
    let mut idle = kept_alive(port);
    closed_by_server(&mut idle, CLOSE_WAIT, "idle kept-alive connection");

    // the log stream outlived all of that
    follow.wait_for("late", Duration::from_secs(20)).unwrap();
    assert_eq!(c.ping().unwrap().status, 200);
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn plugin_serves_clients_past_a_flood_of_idle_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    // long head bound: only the connection limit can make room here
    let (_plugin, c, port) = start_plugin(
        dir.path(),
        "header_read_timeout_seconds: 300\nidle_timeout_seconds: 300\nmax_connections: 16\n",
    );
    let p = PodBuilder::new("ticker").container(
        "main",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    c.create_ok(&p.data()).unwrap();
    let mut follow = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    follow
        .wait_for("tick-1\n", Duration::from_secs(20))
        .unwrap();

    let flood: Vec<TcpStream> = (0..200).map(|_| connect(port)).collect();
    for _ in 0..5 {
        assert_eq!(
            c.ping().unwrap().status,
            200,
            "ping with 200 idle sockets open"
        );
    }
    // the stream in flight was never taken for room
    let seen = String::from_utf8_lossy(&follow.body)
        .matches("tick-")
        .count();
    follow
        .wait_for(&format!("tick-{}\n", seen + 5), Duration::from_secs(20))
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", _plugin.pid()))
        .unwrap()
        .count();
    assert!(fds < 100, "{fds} descriptors open for a limit of 16");
    drop(flood);
    c.delete(&p.pod).unwrap().ok().unwrap();
}
