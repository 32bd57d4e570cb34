//! What the forwarding mode (`LocalRuntime`) adds to kubelet's calls about a
//! containerd pod (prints figures, asserts nothing): each CRI call straight to
//! a real containerd and through `interlink-cri` in front of the same
//! containerd, in the same run, interleaved call by call so both see the same
//! machine load. p50/p99 per RPC and what the forwarder adds at p50.
//!
//! Needs scripts/containerd-setup.sh (as root); prints `SKIP` without it.
//! `cargo build --release --workspace --bins && cargo bench -p interlink-test-harness --bench forward_latency`
//! (`FORWARD_BENCH_N`: calls per RPC and side, default 300)

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use interlink_test_harness::containerd::Containerd;
use interlink_test_harness::cri::*;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(60);

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

type Call<'a> =
    Box<dyn FnMut(Channel) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>> + 'a>;

/// The calls kubelet makes most about a running pod, by name.
fn calls<'a>(pod: &'a str, ctr: &'a str, image: &'a str) -> Vec<(&'static str, Call<'a>)> {
    vec![
        (
            "Version",
            Box::new(|ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.version(cri::VersionRequest::default()).await?;
                    Ok(())
                })
            }),
        ),
        (
            "Status",
            Box::new(|ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.status(cri::StatusRequest { verbose: false }).await?;
                    Ok(())
                })
            }),
        ),
        (
            "ListPodSandbox",
            Box::new(|ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                        .await?;
                    Ok(())
                })
            }),
        ),
        (
            "ListContainers",
            Box::new(|ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.list_containers(cri::ListContainersRequest { filter: None })
                        .await?;
                    Ok(())
                })
            }),
        ),
        (
            "PodSandboxStatus",
            Box::new(move |ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id: pod.into(),
                        verbose: false,
                    })
                    .await?;
                    Ok(())
                })
            }),
        ),
        (
            "ContainerStatus",
            Box::new(move |ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.container_status(cri::ContainerStatusRequest {
                        container_id: ctr.into(),
                        verbose: false,
                    })
                    .await?;
                    Ok(())
                })
            }),
        ),
        (
            "ContainerStats",
            Box::new(move |ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    rt.container_stats(cri::ContainerStatsRequest {
                        container_id: ctr.into(),
                    })
                    .await?;
                    Ok(())
                })
            }),
        ),
        (
            "ExecSync (true)",
            Box::new(move |ch: Channel| {
                Box::pin(async move {
                    let mut rt = Rt::new(ch);
                    let r = rt
                        .exec_sync(cri::ExecSyncRequest {
                            container_id: ctr.into(),
                            cmd: vec!["true".into()],
                            timeout: 10,
                        })
                        .await?;
                    anyhow::ensure!(r.get_ref().exit_code == 0, "exit {}", r.get_ref().exit_code);
                    Ok(())
                })
            }),
        ),
        (
            "ImageStatus",
            Box::new(move |ch: Channel| {
                Box::pin(async move {
                    let mut img = Img::new(ch);
                    img.image_status(cri::ImageStatusRequest {
                        image: Some(cri::ImageSpec {
                            image: image.into(),
                            ..Default::default()
                        }),
                        verbose: false,
                    })
                    .await?;
                    Ok(())
                })
            }),
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("FORWARD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let Some(ctrd) = Containerd::start()? else {
        println!("SKIP forward_latency: no containerd (run scripts/containerd-setup.sh as root)");
        return Ok(());
    };
    let env = CriEnv::start(&format!("LocalRuntime:\n  Endpoint: {}\n", ctrd.endpoint()))?;
    let fwd = connect(&env.socket).await?;
    let direct = connect(&ctrd.socket()).await?;

    // one running containerd pod, made through the forwarder
    let mut rt = Rt::new(fwd.clone());
    let sb = env.pod("fwd-bench");
    std::fs::create_dir_all(&sb.log_directory)?;
    let pod = run_pod(&mut rt, &sb).await?;
    let ctr = create(&mut rt, &pod, &sb, sh("idle", "sleep 3600")).await?;
    start(&mut rt, &ctr).await?;
    wait_state(&mut rt, &ctr, RUNNING, T).await?;
    // and one offloaded pod, so the forwarder's merges have interLink's side too
    let rsb = env.pod("fwd-bench-remote");
    std::fs::create_dir_all(&rsb.log_directory)?;
    let rpod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(rsb.clone()),
            runtime_handler: "interlink".into(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let rctr = create(&mut rt, &rpod, &rsb, sh("idle", "sleep 3600")).await?;
    start(&mut rt, &rctr).await?;
    wait_state(&mut rt, &rctr, RUNNING, T).await?;

    println!(
        "forward_latency: {n} calls per RPC and side, interleaved; containerd {} (pid {})",
        ctrd.endpoint(),
        ctrd.pid()
    );
    println!("| RPC | containerd direct p50 / p99 | through interlink-cri p50 / p99 | added p50 |");
    println!("|---|---|---|---|");
    for (name, mut call) in calls(&pod, &ctr, ctrd.busybox_image()) {
        // warm both paths
        for _ in 0..10 {
            call(direct.clone()).await?;
            call(fwd.clone()).await?;
        }
        let (mut d, mut f) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            // alternate which goes first, so neither always follows the other
            let order = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for via_fwd in order {
                let client = if via_fwd { fwd.clone() } else { direct.clone() };
                let t = Instant::now();
                call(client).await?;
                if via_fwd {
                    f.push(t.elapsed())
                } else {
                    d.push(t.elapsed())
                }
            }
        }
        let (d50, d99, f50, f99) = (
            pct(&mut d, 0.5),
            pct(&mut d, 0.99),
            pct(&mut f, 0.5),
            pct(&mut f, 0.99),
        );
        let added = f50.as_secs_f64() - d50.as_secs_f64();
        println!(
            "| {name} | {} / {} | {} / {} | {:+.0} µs |",
            us(d50),
            us(d99),
            us(f50),
            us(f99),
            added * 1e6
        );
    }
    stop_and_remove_pod(&mut rt, &pod).await?;
    stop_and_remove_pod(&mut rt, &rpod).await?;
    Ok(())
}
