//! What an exec probe costs, per backend, through the whole chain (prints
//! figures, asserts nothing): kubelet's calls over the real CRI socket to the
//! real `interlink-cri`, the real `interlink` API server and the backend's
//! real plugin:
//! - `ExecSync` of `true` (what a probe runs): p50/p99;
//! - an exec session: `Exec` → the URL → WebSocket `v5.channel.k8s.io` →
//!   the exit status (what `kubectl exec` waits for before output): p50/p99.
//!
//! Backends: the embedded default's local plugin always; Docker (real podman
//! from scripts/engine-setup.sh) and Slurm (scripts/slurm-start.sh,
//! `container_runtime: none`) when they are up, else a `SKIP` line.
//!
//! `cargo bench -p interlink-test-harness --bench exec_latency`
//! (`EXEC_BENCH_N`: calls per figure, default 100)

use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink_test_harness::cri::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const T: Duration = Duration::from_secs(120);

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A pod with one idle container, running; its container ID.
async fn idle_container(
    env: &CriEnv,
    rt: &mut Rt,
    image: &str,
) -> anyhow::Result<(String, String)> {
    let sb = env.pod("exec-bench");
    let pod = run_pod(rt, &sb).await?;
    let mut c = sh("idle", "sleep 3600");
    c.image.as_mut().unwrap().image = image.into();
    let id = create(rt, &pod, &sb, c).await?;
    start(rt, &id).await?;
    wait_state(rt, &id, RUNNING, T).await?;
    // the remote pod may still be on its way (batch window, a Slurm queue)
    let end = Instant::now() + T;
    loop {
        match rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 30,
            })
            .await
        {
            Ok(r) if r.get_ref().exit_code == 0 => break,
            other if Instant::now() > end => anyhow::bail!("exec never worked: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok((pod, id))
}

async fn exec_sync(rt: &mut Rt, id: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["true".into()],
                timeout: 30,
            })
            .await?
            .into_inner();
        v.push(t.elapsed());
        anyhow::ensure!(r.exit_code == 0, "exit code {}", r.exit_code);
    }
    Ok(v)
}

/// `Exec`, then the session over WebSocket up to its status.
async fn exec_session(rt: &mut Rt, id: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let url = rt
            .exec(cri::ExecRequest {
                container_id: id.into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await?
            .into_inner()
            .url;
        let mut req = url.replace("http://", "ws://").into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let mut status = None;
        while let Some(m) = ws.next().await {
            if let Message::Binary(b) = m?
                && b.first() == Some(&3)
            {
                status = Some(b[1..].to_vec());
                break;
            }
        }
        v.push(t.elapsed());
        let s: serde_json::Value = serde_json::from_slice(&status.unwrap_or_default())?;
        anyhow::ensure!(s["status"] == "Success", "{s}");
    }
    Ok(v)
}

async fn bench(name: &str, env: CriEnv, image: &str, n: usize) -> anyhow::Result<()> {
    let (mut rt, _) = env.connect().await?;
    let t = Instant::now();
    let (pod, id) = idle_container(&env, &mut rt, image).await?;
    let ready = t.elapsed();
    let mut sync = exec_sync(&mut rt, &id, n).await?;
    let mut session = exec_session(&mut rt, &id, n).await?;
    println!(
        "{name:<10} ExecSync p50 {:>9}  p99 {:>9}   exec session p50 {:>9}  p99 {:>9}   (pod to first exec {})",
        ms(pct(&mut sync, 0.5)),
        ms(pct(&mut sync, 0.99)),
        ms(pct(&mut session, 0.5)),
        ms(pct(&mut session, 0.99)),
        ms(ready),
    );
    stop_and_remove_pod(&mut rt, &pod).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` lists; nothing to run
    }
    let n: usize = std::env::var("EXEC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    println!(
        "exec latency, {n} calls per figure, through CRI socket -> interlink-cri -> interlink -> plugin"
    );
    bench("local", CriEnv::start("")?, "busybox", n).await?;
    if let Some(engine) = interlink_test_harness::engine::engine("docker exec bench") {
        let image = engine.image.clone();
        bench("docker", CriEnv::start_docker(&engine, "")?, &image, n).await?;
    }
    if let Some(conf) = interlink_test_harness::slurm::slurm_conf("slurm exec bench") {
        bench(
            "slurm",
            CriEnv::start_slurm(&conf, "")?,
            "busybox",
            n / 5 + 1,
        )
        .await?;
    }
    Ok(())
}
