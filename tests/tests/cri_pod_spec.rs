//! With a kubeconfig the host watches this node's pods in the Kubernetes API
//! (here a test double of it, serving real list/watch JSON): a pod's batch
//! goes out the moment its last container started, whatever the batch window,
//! and the plugin receives what CRI does not carry (probes, ports).

use std::time::Duration;

use anyhow::Result;
use interlink_test_harness::cri::{self as h, cri};
use interlink_test_harness::kube_api::KubeApi;
use interlink_test_harness::recording::RecordingEnv;
use k8s_openapi::api::core::v1 as k8s;

fn pod(name: &str, node: &str, containers: &[&str]) -> k8s::Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": h::uuid_like(name)},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "builder",
            "containers": containers.iter().map(|c| serde_json::json!({
                "name": c,
                "image": "busybox",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 2},
            })).collect::<Vec<_>>(),
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_known_from_the_api_is_sent_when_its_last_container_starts() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add(pod("web", "n1", &["a", "b"]));
    // another node's pod is not watched
    api.add(pod("elsewhere", "n2", &["x"]));
    let env = RecordingEnv::start(|d| {
        let kc = d.join("kubeconfig");
        api.write_kubeconfig(&kc).expect("kubeconfig");
        // without the API a batch would wait 30 s for more containers
        format!(
            "Kubeconfig: {}\nNodeName: n1\nBatchWindow: 30s\n",
            kc.display()
        )
    })
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !env.host_log().contains("watching this node's pods") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the host never listed its node's pods:\n{}",
            env.host_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        api.requests()
            .iter()
            .all(|q| q.contains("fieldSelector=spec.nodeName=n1")),
        "{:?}",
        api.requests()
    );
    let mut rt = env.rt().await?;
    let sb_cfg = env.sandbox("web", &[]);
    let sandbox = h::run_pod(&mut rt, &sb_cfg).await?;
    let a = h::create(&mut rt, &sandbox, &sb_cfg, h::sh("a", "sleep 30")).await?;
    h::start(&mut rt, &a).await?;
    // b is still to come: nothing is sent
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(env.recorder.pod("web").is_none(), "sent before b started");
    let b = h::create(&mut rt, &sandbox, &sb_cfg, h::sh("b", "sleep 30")).await?;
    h::start(&mut rt, &b).await?;
    let sent = env.wait_created("web").await?;
    let spec = sent.spec.unwrap();
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "one remote pod with both containers");
    let probe = spec.containers[0].readiness_probe.as_ref().expect("probe");
    assert_eq!(
        probe.exec.as_ref().and_then(|e| e.command.clone()),
        Some(vec!["cat".to_string(), "/tmp/ready".to_string()])
    );
    assert_eq!(
        spec.containers[0]
            .ports
            .as_ref()
            .map(|p| p[0].container_port),
        Some(8080)
    );
    assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
    // what kubelet sees is unchanged: both running
    for id in [&a, &b] {
        let st = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, h::RUNNING);
    }
    Ok(())
}
