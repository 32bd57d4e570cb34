//! Benchmark of the Docker plugin against the real engine (podman's compat
//! service, prepared by scripts/engine-setup.sh). Prints figures:
//!
//! 1. create -> running latency of a one-container pod (HTTP create until the
//!    plugin's status reports the container running), over several pods;
//! 2. the cost of one status request for N tracked pods (default 100, env
//!    `BENCH_PODS`), warm (states cached, one engine list call) and cold (first
//!    request after a plugin restart, one inspect per container), and the per-pod
//!    cost extrapolated to 1,000 pods.
//!
//! `cargo bench -p interlink-plugin-docker --bench docker`

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use interlink_test_harness::plugin::{PluginClient, PodBuilder, all_terminated, is_running};
use interlink_test_harness::{Proc, wait_for_unix_socket};

fn engine_env() -> Option<(BTreeMap<String, String>, String)> {
    let dir = std::env::var("ENGINE_DIR").unwrap_or_else(|_| "/tmp/engine".into());
    let text = std::fs::read_to_string(Path::new(&dir).join("env.sh")).ok()?;
    let mut env = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
        {
            env.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    let image = env
        .get("ENGINE_IMAGE")
        .cloned()
        .unwrap_or_else(|| "localhost/mini:latest".into());
    Some((env, image))
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    format!(
        "n={} min {:.1} ms, median {:.1} ms, mean {:.1} ms, max {:.1} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        mean,
        ms(v[v.len() - 1])
    )
}

fn start_plugin(dir: &Path) -> Proc {
    let sock = dir.join("plugin.sock");
    let _ = std::fs::remove_file(&sock);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interlink-docker"));
    cmd.arg("--config")
        .arg(dir.join("plugin.yaml"))
        .env("RUST_LOG", "warn");
    let p = Proc::spawn("interlink-docker", cmd, &dir.join("plugin.log")).unwrap();
    wait_for_unix_socket(&sock, Duration::from_secs(30)).unwrap();
    p
}

fn main() {
    let Some((env, image)) = engine_env() else {
        println!("docker bench: SKIPPED (no engine: run scripts/engine-setup.sh as root)");
        return;
    };
    let n_pods: usize = std::env::var("BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::Builder::new()
        .prefix("il-docker-bench-")
        .tempdir()
        .unwrap();
    let engine_sock = dir.path().join("engine.sock");
    let mut cmd = Command::new("podman");
    cmd.envs(&env)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", engine_sock.display()));
    let _engine = Proc::spawn("podman-service", cmd, &dir.path().join("engine.log")).unwrap();
    wait_for_unix_socket(&engine_sock, Duration::from_secs(30)).unwrap();
    std::fs::write(
        dir.path().join("plugin.yaml"),
        format!(
            "listen: unix://{}\ndata_root: {}\ndocker:\n  docker_host: unix://{}\n  infra_image: {image}\n  infra_command: [sleep, \"2147483647\"]\n  image_pull_policy: IfNotPresent\n",
            dir.path().join("plugin.sock").display(),
            dir.path().join("data").display(),
            engine_sock.display()
        ),
    )
    .unwrap();
    let mut plugin = start_plugin(dir.path());
    let client = PluginClient::unix(&dir.path().join("plugin.sock"));
    let mut uids = Vec::new();
    let pod = |name: &str, cmd: &[&str]| {
        let mut b = PodBuilder::new(name).container("main", cmd).grace(0);
        b.pod.spec.as_mut().unwrap().containers[0].image = Some(image.clone());
        b
    };

    // ---- 1. create -> running (after one warm-up pod, not counted)
    let warm_up = pod("warm-up", &["true"]);
    uids.push(warm_up.uid().to_string());
    client.create_ok(&warm_up.data()).unwrap();
    client.delete(&warm_up.pod).unwrap().ok().unwrap();
    let mut create_rt = Vec::new();
    let mut to_running = Vec::new();
    let mut running = Vec::new();
    for i in 0..10 {
        let b = pod(&format!("lat-{i}"), &["sleep", "1000"]);
        uids.push(b.uid().to_string());
        let t = Instant::now();
        client.create_ok(&b.data()).unwrap();
        create_rt.push(t.elapsed());
        loop {
            let st = client.status_of(&b.pod).unwrap();
            if is_running(&st, "main") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "pod never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        to_running.push(t.elapsed());
        running.push(b);
    }
    println!(
        "docker plugin on podman {}:",
        String::from_utf8_lossy(
            &Command::new("podman")
                .envs(&env)
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    println!(
        "  create request (images checked, infra + container created): {}",
        stats(create_rt)
    );
    println!(
        "  create -> running (status reports the container running):   {}",
        stats(to_running)
    );
    for b in &running {
        client.delete(&b.pod).unwrap().ok().unwrap();
    }
    uids.clear();

    // ---- 2. status cost with many tracked pods
    let t = Instant::now();
    let mut pods = Vec::new();
    for i in 0..n_pods {
        let b = pod(&format!("many-{i}"), &["true"]);
        uids.push(b.uid().to_string());
        client.create_ok(&b.data()).unwrap();
        pods.push(b.pod);
    }
    let created_in = t.elapsed();
    loop {
        let all = client.status(&pods).unwrap();
        if all.len() == pods.len() && all.iter().all(all_terminated) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  {n_pods} pods created in {:.1} s ({:.0} ms each) and all finished",
        created_in.as_secs_f64(),
        created_in.as_secs_f64() * 1e3 / n_pods as f64
    );
    let mut warm = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let all = client.status(&pods).unwrap();
        warm.push(t.elapsed());
        assert_eq!(all.len(), n_pods);
    }
    // cold: a restarted plugin has no cached states and inspects every container once
    plugin.stop(Duration::from_secs(5));
    plugin = start_plugin(dir.path());
    let t = Instant::now();
    let all = client.status(&pods).unwrap();
    let cold = t.elapsed();
    assert_eq!(all.len(), n_pods);
    let mut single = Vec::new();
    for p in pods.iter().take(10) {
        let t = Instant::now();
        client.status_of(p).unwrap();
        single.push(t.elapsed());
    }
    let med = {
        let mut w = warm.clone();
        w.sort();
        w[w.len() / 2]
    };
    println!(
        "  status of {n_pods} pods in one request, warm (1 engine list call): {}",
        stats(warm)
    );
    println!(
        "  status of {n_pods} pods, cold after a plugin restart ({} inspects): {:.1} ms",
        n_pods,
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  status of 1 pod with {n_pods} tracked (warm): {}",
        stats(single)
    );
    println!(
        "  per tracked pod (warm): {:.3} ms -> about {:.0} ms for 1,000 pods (extrapolated; the engine's list grows with its container count)",
        med.as_secs_f64() * 1e3 / n_pods as f64,
        med.as_secs_f64() * 1e3 * 1000.0 / n_pods as f64
    );

    // ---- cleanup
    let t = Instant::now();
    for p in &pods {
        client.delete(p).unwrap().ok().unwrap();
    }
    println!(
        "  delete of {n_pods} finished pods: {:.0} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n_pods as f64
    );
    plugin.stop(Duration::from_secs(5));
    // safety net: containers joined to an infra container go before it
    for uid in &uids {
        for role in ["init", "container", "infra"] {
            let out = Command::new("podman")
                .envs(&env)
                .args(["ps", "-a", "-q", "--filter"])
                .arg(format!("label=interlink.pod-uid={uid}"))
                .arg("--filter")
                .arg(format!("label=interlink.role={role}"))
                .output()
                .unwrap();
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                Command::new("podman")
                    .envs(&env)
                    .args(["rm", "-f", "-t", "0"])
                    .args(&ids)
                    .output()
                    .unwrap();
            }
        }
    }
}
