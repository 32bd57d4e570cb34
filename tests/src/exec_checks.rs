//! What a user sees of the exec extension, checked the same way on every
//! backend through the interlink client (the API server in front of a real
//! plugin): exit codes and the output channels, stdin, a tty that follows
//! resizes, attach, port-forward, refusals. Each check panics with what it saw.

use std::time::{Duration, Instant};

use interlink::client::{Client, ClientError, ExecEvent, ExecOutcome, ExecSession};
use interlink::exec::{
    AttachRequest, ExecRequest, ExitStatus, PortForwardRequest, Target, TermSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::apiserver::create_request;
use crate::plugin::{PodBuilder, container_status};

/// The pod a request names.
pub fn target(b: &PodBuilder) -> Target {
    Target {
        pod_uid: b.uid().to_string(),
        namespace: "default".into(),
        pod_name: interlink::pod_name(&b.pod).to_string(),
    }
}

pub fn exec_req(b: &PodBuilder, container: &str, cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        target: target(b),
        container: container.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
    }
}

pub fn attach_req(b: &PodBuilder, container: &str, stdin: bool) -> AttachRequest {
    AttachRequest {
        target: target(b),
        container: container.into(),
        tty: false,
        stdin,
    }
}

/// A TCP echo server (perl, which every Debian has) on `port` of 127.0.0.1:
/// it answers `echo:` and what it got.
pub fn echo_server(port: u16) -> Vec<String> {
    let script = "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', \
        LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die \"listen: $!\"; \
        while (my $c = $s->accept) { while (sysread($c, my $b, 65536)) { syswrite($c, \"echo:\" . $b) } close $c }";
    vec!["perl".into(), "-e".into(), script.into(), port.to_string()]
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Create the pod and wait up to `timeout` until `container` runs.
pub async fn run_pod(client: &Client, b: &PodBuilder, container: &str, timeout: Duration) {
    client.create(&create_request(b)).await.unwrap();
    let end = Instant::now() + timeout;
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything an exec or attach sends, within `timeout`.
pub async fn collect(s: ExecSession, timeout: Duration) -> ExecOutcome {
    tokio::time::timeout(timeout, s.output.collect(1 << 20))
        .await
        .expect("the stream ended in time")
        .expect("an exit status")
}

/// The error of a call that must fail.
pub async fn refused<T>(
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) -> ClientError {
    match call.await {
        Ok(_) => panic!("the call succeeded"),
        Err(e) => e,
    }
}

/// Run `cmd` in the container and answer its outcome.
pub async fn run(client: &Client, b: &PodBuilder, c: &str, cmd: &[&str]) -> ExecOutcome {
    let s = client.exec(&exec_req(b, c, cmd)).await.unwrap();
    collect(s, Duration::from_secs(60)).await
}

/// stdout and stderr on their channels, the exit code; stdin in and out
/// again, EOF ends it; without stdin the command reads EOF at once.
pub async fn check_streams_and_stdin(client: &Client, b: &PodBuilder, c: &str) {
    let o = run(
        client,
        b,
        c,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    )
    .await;
    assert_eq!(text(&o.stdout), "out\n", "{o:?}");
    assert_eq!(text(&o.stderr), "err\n", "{o:?}");
    assert_eq!(o.status, ExitStatus::ExitCode(3));
    let o = run(client, b, c, &["true"]).await;
    assert_eq!(o.status, ExitStatus::Success, "{o:?}");

    let mut r = exec_req(b, c, &["cat"]);
    r.stdin = true;
    let s = client.exec(&r).await.unwrap();
    s.input.stdin(&b"hello\n"[..]).await.unwrap();
    s.input.stdin(&b"world"[..]).await.unwrap();
    s.input.close_stdin().await.unwrap();
    let o = collect(s, Duration::from_secs(60)).await;
    assert_eq!(text(&o.stdout), "hello\nworld", "{o:?}");
    assert_eq!(o.status, ExitStatus::Success);

    let o = run(client, b, c, &["cat"]).await;
    assert_eq!((o.stdout.len(), o.status), (0, ExitStatus::Success));
}

/// A tty: its size follows the resizes, stderr comes on stdout, what is
/// typed is echoed. `stty` is the command that prints the size.
pub async fn check_tty(client: &Client, b: &PodBuilder, c: &str, stty: &str) {
    let script =
        format!("echo term=$TERM; read x; {stty} size; echo to-stderr >&2; read y; {stty} size");
    let mut r = exec_req(b, c, &["sh", "-c", &script]);
    r.tty = true;
    r.stdin = true;
    let ExecSession { input, mut output } = client.exec(&r).await.unwrap();
    input
        .resize(TermSize {
            width: 100,
            height: 40,
        })
        .await
        .unwrap();
    // give the terminal its first size before the command asks for it
    tokio::time::sleep(Duration::from_millis(500)).await;
    input.stdin(&b"go\n"[..]).await.unwrap();
    let mut seen = String::new();
    let mut resized = false;
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match output.next().await.expect("an event").unwrap() {
                ExecEvent::Stdout(b) => seen.push_str(&text(&b)),
                ExecEvent::Stderr(b) => panic!("stderr with a tty: {b:?}"),
                ExecEvent::Exit(s) => return s,
            }
            if seen.contains("40 100") && !resized {
                resized = true;
                input
                    .resize(TermSize {
                        width: 132,
                        height: 50,
                    })
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                input.stdin(&b"again\n"[..]).await.unwrap();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the tty session ended; saw {seen:?}"));
    assert_eq!(status, ExitStatus::Success, "{seen:?}");
    assert!(seen.contains("40 100\r\n"), "{seen:?}");
    assert!(seen.contains("to-stderr"), "{seen:?}");
    assert!(seen.contains("50 132\r\n"), "{seen:?}");
    assert!(seen.contains("go\r\n"), "{seen:?}");
    // a terminal's type, as containerd gives a tty exec
    assert!(seen.contains("term=xterm\r\n"), "{seen:?}");
}

/// Attach sees what the container writes from now on, and its end.
/// `container` prints `tick N` lines once a second-tenth up to `last`.
pub async fn check_attach_sees_output(client: &Client, b: &PodBuilder, c: &str, last: &str) {
    let s = client.attach(&attach_req(b, c, false)).await.unwrap();
    let o = collect(s, Duration::from_secs(120)).await;
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(all.contains(last), "{o:?}");
    assert_eq!(o.status, ExitStatus::Success, "{o:?}");
}

/// Port-forward reaches the echo server on `port` (it answers `echo:` and
/// what it got), bytes both ways, twice; `closed` (nobody listens) is
/// refused with a message naming the port.
pub async fn check_port_forward(client: &Client, b: &PodBuilder, port: u16, closed: u16) {
    let req = PortForwardRequest {
        target: target(b),
        port,
    };
    // the server may still be starting
    let end = Instant::now() + Duration::from_secs(30);
    for round in 0..2 {
        let mut s = loop {
            match client.port_forward(&req).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("port-forward to {port}: {e:?}"),
            }
        };
        let msg = format!("ping {round}\n");
        s.write_all(msg.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        let mut got = Vec::new();
        let want = format!("echo:{msg}");
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 256];
            while !text(&got).contains(&want) {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the stream ended: {:?}", text(&got));
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no echo: {:?}", text(&got)));
        let _ = s.shutdown().await;
    }
    let e = refused(client.port_forward(&PortForwardRequest {
        target: target(b),
        port: closed,
    }))
    .await;
    assert!(e.to_string().contains(&closed.to_string()), "{e:?}");
}

/// Refusals as JSON errors: an unknown container (404), an unknown pod (404).
pub async fn check_unknown_refused(client: &Client, b: &PodBuilder) {
    let e = refused(client.exec(&exec_req(b, "nope", &["true"]))).await;
    assert!(
        matches!(&e, ClientError::NotFound(m) if m.contains("nope")),
        "{e:?}"
    );
    let mut other = exec_req(b, "main", &["true"]);
    other.target.pod_uid = "0b5c6d7e-0000-4000-8000-000000000000".into();
    let e = refused(client.exec(&other)).await;
    assert!(matches!(&e, ClientError::NotFound(_)), "{e:?}");
}

/// ExecSync-like latency: `true` to its exit status, `n` times; prints and
/// answers (p50, p99).
pub async fn exec_latency(
    client: &Client,
    b: &PodBuilder,
    c: &str,
    n: usize,
    backend: &str,
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let o = run(client, b, c, &["true"]).await;
        times.push(t0.elapsed());
        assert_eq!(o.status, ExitStatus::Success);
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99) = (p(0.5), p(0.99));
    println!("exec `true` latency on {backend}: n={n} p50={p50:?} p99={p99:?}");
    (p50, p99)
}

/// A client that goes away before its command ended: the command is
/// stopped (checked from the container: its pid is gone within 20 s).
pub async fn check_interrupted_exec_stops(client: &Client, b: &PodBuilder, c: &str) {
    let s = client
        .exec(&exec_req(b, c, &["sh", "-c", "echo $$; exec sleep 300"]))
        .await
        .unwrap();
    let ExecSession { input, mut output } = s;
    let mut seen = String::new();
    let pid: u32 = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match output.next().await.expect("an event").unwrap() {
                ExecEvent::Stdout(b) => seen.push_str(&text(&b)),
                e => panic!("before the pid: {e:?}"),
            }
            if let Some((line, _)) = seen.split_once('\n') {
                return line.trim().parse().expect("a pid");
            }
        }
    })
    .await
    .expect("the pid in time");
    // still there while the session is open
    let alive = format!("kill -0 {pid}");
    let o = run(client, b, c, &["sh", "-c", &alive]).await;
    assert_eq!(o.status, ExitStatus::Success, "{o:?}");
    drop((input, output));
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(client, b, c, &["sh", "-c", &alive]).await;
        if o.status != ExitStatus::Success {
            return;
        }
        assert!(
            Instant::now() < end,
            "pid {pid} still runs after its client went away"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Attach with stdin to a shell started with `stdin: true` (as critest's
/// attach test runs): what attach sends is its input, what it prints comes
/// back, `exit 0` ends it.
pub async fn check_attach_stdin(client: &Client, b: &PodBuilder, c: &str) {
    let ExecSession { input, mut output } = client.attach(&attach_req(b, c, true)).await.unwrap();
    input
        .stdin(&b"echo hello from \"$((6*7))\"\n"[..])
        .await
        .unwrap();
    let mut seen = String::new();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match output.next().await.expect("an event").unwrap() {
                ExecEvent::Stdout(b) => seen.push_str(&text(&b)),
                ExecEvent::Stderr(b) => panic!("stderr: {b:?}"),
                ExecEvent::Exit(s) => return s,
            }
            if seen.contains("hello from 42\n") {
                input.stdin(&b"exit 0\n"[..]).await.unwrap();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the shell ended; saw {seen:?}"));
    assert_eq!(status, ExitStatus::Success, "{seen:?}");
    assert_eq!(seen, "hello from 42\n");
}
