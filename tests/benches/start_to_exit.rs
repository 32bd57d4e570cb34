//! What a user waits for after `crictl start` of a short container, on the
//! embedded default and on containerd, in the same run (prints figures,
//! asserts nothing): crictl's calls over each runtime's socket (tonic), a
//! single-container pod `sh -c 'echo hello'`, and from just before
//! `StartContainer`:
//! - start → first log line in the CRI log file (where kubelet reads it),
//! - start → `EXITED` visible in `ContainerStatus`,
//!
//! each polled every 2 ms. `interlink-cri` runs as its real binary on the
//! embedded default (no config file: API server and local plugin in process,
//! default `BatchWindow` and `StatusInterval`); containerd is the harness's
//! (scripts/containerd-setup.sh; without it only interlink-cri's figures).
//!
//! `cargo build --release --workspace --bins && cargo bench -p interlink-test-harness --bench start_to_exit`
//! (`START_BENCH_N`: pods per runtime, default 30)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interlink_test_harness::containerd::Containerd;
use interlink_test_harness::cri::*;
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};

const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// One pod through its whole life; (start → first log line, start → EXITED).
async fn one(rt: &mut Rt, logs: &Path, i: usize) -> anyhow::Result<(Duration, Duration)> {
    let sb = sandbox_config(&format!("s2e-{i}"), logs);
    std::fs::create_dir_all(&sb.log_directory)?;
    let pod = run_pod(rt, &sb).await?;
    let id = create(rt, &pod, &sb, sh("main", "echo hello")).await?;
    let log = log_file(&sb, "main");
    let t0 = Instant::now();
    start(rt, &id).await?;
    let (mut first_line, mut exited) = (None, None);
    while first_line.is_none() || exited.is_none() {
        if t0.elapsed() > T {
            anyhow::bail!("pod {i}: no log line or exit after {T:?}");
        }
        if first_line.is_none()
            && std::fs::read_to_string(&log).is_ok_and(|s| s.contains("hello\n"))
        {
            first_line = Some(t0.elapsed());
        }
        if exited.is_none() && status(rt, &id).await?.state == EXITED {
            exited = Some(t0.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
    stop_and_remove_pod(rt, &pod).await?;
    Ok((first_line.unwrap_or_default(), exited.unwrap_or_default()))
}

/// `interlink-cri` on its embedded default, no config file.
fn embedded(dir: &Path) -> anyhow::Result<(Proc, PathBuf)> {
    let sock = dir.join("cri.sock");
    let mut cmd = Command::new(bin("interlink-cri"));
    cmd.arg("--socket")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.join("data"));
    cmd.env_remove("INTERLINK_CRI_CONFIG");
    let p = Proc::spawn("interlink-cri (embedded)", cmd, &dir.join("host.log"))?;
    wait_for_unix_socket(&sock, T)?;
    Ok((p, sock))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("START_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let (_host, sock) = embedded(dir.path())?;
    let mut ours = Rt::new(connect(&sock).await?);
    let ctrd = Containerd::start()?;
    let mut theirs = match &ctrd {
        Some(c) => Some(c.rt().await?),
        None => {
            println!(
                "start_to_exit: no containerd (scripts/containerd-setup.sh): interlink-cri only"
            );
            None
        }
    };
    let logs = dir.path().join("logs");
    // warm both (first pod pays for page cache, images, the plugin's first run)
    one(&mut ours, &logs, 0).await?;
    if let Some(c) = theirs.as_mut() {
        one(c, &logs.join("ctrd"), 0).await?;
    }
    let (mut our_log, mut our_exit, mut their_log, mut their_exit) =
        (vec![], vec![], vec![], vec![]);
    for i in 1..=n {
        let (l, e) = one(&mut ours, &logs, i).await?;
        our_log.push(l);
        our_exit.push(e);
        if let Some(c) = theirs.as_mut() {
            let (l, e) = one(c, &logs.join("ctrd"), i).await?;
            their_log.push(l);
            their_exit.push(e);
        }
    }
    println!(
        "start_to_exit: {n} single-container pods `sh -c 'echo hello'` per runtime, interleaved"
    );
    println!("| runtime | start → first log line p50 / p90 | start → EXITED p50 / p90 |");
    println!("|---|---|---|");
    let row = |name: &str, l: &mut Vec<Duration>, e: &mut Vec<Duration>| {
        if l.is_empty() {
            return;
        }
        println!(
            "| {name} | {} / {} | {} / {} |",
            ms(pct(l, 0.5)),
            ms(pct(l, 0.9)),
            ms(pct(e, 0.5)),
            ms(pct(e, 0.9))
        );
    };
    row(
        "interlink-cri, embedded default",
        &mut our_log,
        &mut our_exit,
    );
    row("containerd 1.6 (runc)", &mut their_log, &mut their_exit);
    Ok(())
}
