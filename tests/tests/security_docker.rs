//! The Docker plugin (`interlink-docker`) against a real engine (podman's
//! Docker-compatible service, set up by scripts/engine-setup.sh): settings of a
//! pod that reach the host (privileged, added capabilities, the host's network,
//! PID and IPC namespaces) are refused with a 400 naming the field unless the
//! site admin allows them in the `docker:` section; allowed, they reach the
//! engine. And `/getLogs` answers only when `Namespace`/`PodName` are those of
//! the pod under `PodUID`.
//!
//! Without the engine the tests print why and pass, unless
//! `INTERLINK_REQUIRE_BACKENDS=1` (scripts/test.sh sets it when the setup ran).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use interlink::ContainerLogOpts;
use interlink_test_harness::engine::{
    Engine, containers_of, docker_plugin_config, engine, podman, remove_pod_containers,
    start_service, use_image,
};
use interlink_test_harness::plugin::{PluginClient, PodBuilder, is_running, log_req};
use interlink_test_harness::{Proc, bin, wait_for_unix_socket};
use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

const T: Duration = Duration::from_secs(30);

/// A podman service on a private socket, the plugin, and the pods to remove.
struct World {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    image: String,
    engine: Option<Proc>,
    plugin: Option<Proc>,
    client: PluginClient,
    uids: Vec<String>,
}

impl World {
    /// `extra`: lines indented under `docker:`.
    fn new(extra: &str) -> Option<World> {
        let Engine { env, image } = engine("docker security test")?;
        let dir = tempfile::Builder::new()
            .prefix("il-docker-sec-")
            .tempdir()
            .unwrap();
        let engine_sock = dir.path().join("engine.sock");
        let plugin_sock = dir.path().join("plugin.sock");
        let engine = start_service(&env, &engine_sock, &dir.path().join("engine.log"), T).unwrap();
        let mut w = World {
            client: PluginClient::unix(&plugin_sock),
            dir,
            env,
            image,
            engine: Some(engine),
            plugin: None,
            uids: vec![],
        };
        let cfg = w.dir.path().join("plugin.yaml");
        std::fs::write(
            &cfg,
            docker_plugin_config(
                &plugin_sock,
                &w.dir.path().join("data"),
                &engine_sock,
                &w.image,
                extra,
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin("interlink-docker"));
        cmd.arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info,interlink_plugin_docker=debug");
        w.plugin =
            Some(Proc::spawn("interlink-docker", cmd, &w.dir.path().join("plugin.log")).unwrap());
        wait_for_unix_socket(&plugin_sock, T).expect("plugin socket");
        Some(w)
    }

    fn pod(&mut self, mut b: PodBuilder) -> PodBuilder {
        use_image(&mut b, &self.image);
        self.uids.push(b.uid().to_string());
        b
    }

    fn podman(&self, args: &[&str]) -> String {
        podman(&self.env, args)
    }

    fn containers_of(&self, uid: &str, role: &str) -> Vec<String> {
        containers_of(&self.env, uid, role)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(5));
        }
        for uid in &self.uids {
            remove_pod_containers(&self.env, uid);
        }
        if std::thread::panicking() {
            let p: PathBuf = self.dir.path().join("plugin.log");
            eprintln!(
                "----- plugin.log -----\n{}",
                std::fs::read_to_string(p).unwrap_or_default()
            );
        }
        if let Some(mut p) = self.engine.take() {
            p.stop(Duration::from_secs(10));
        }
    }
}

fn privileged(c: &mut k8s_openapi::api::core::v1::Container) {
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
}

fn net_admin(c: &mut k8s_openapi::api::core::v1::Container) {
    c.security_context = Some(SecurityContext {
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: None,
        }),
        ..Default::default()
    });
}

#[test]
fn host_reaching_settings_are_refused_unless_the_admin_allows_them() {
    let Some(mut w) = World::new("") else { return };
    let cmd = ["sleep", "30"];
    let cases: Vec<(PodBuilder, &str)> = vec![
        (
            PodBuilder::new("priv")
                .container("main", &cmd)
                .with_container("main", privileged),
            "securityContext.privileged",
        ),
        (
            PodBuilder::new("caps")
                .container("main", &cmd)
                .with_container("main", net_admin),
            "securityContext.capabilities.add",
        ),
        (
            {
                let mut b = PodBuilder::new("hostnet").container("main", &cmd);
                b.pod.spec.as_mut().unwrap().host_network = Some(true);
                b
            },
            "spec.hostNetwork",
        ),
        (
            {
                let mut b = PodBuilder::new("hostpid").container("main", &cmd);
                b.pod.spec.as_mut().unwrap().host_pid = Some(true);
                b
            },
            "spec.hostPID",
        ),
        (
            {
                let mut b = PodBuilder::new("hostipc").container("main", &cmd);
                b.pod.spec.as_mut().unwrap().host_ipc = Some(true);
                b
            },
            "spec.hostIPC",
        ),
    ];
    for (b, field) in cases {
        let b = w.pod(b);
        let r = w.client.create(&b.data()).unwrap();
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let msg = r.error().unwrap_or_default();
        assert!(msg.contains(field), "{field}: {msg}");
        assert!(msg.contains("docker.allow"), "{field}: names no key: {msg}");
        for role in ["infra", "container"] {
            assert!(
                w.containers_of(b.uid(), role).is_empty(),
                "{field}: a {role} container was made"
            );
        }
    }
    // dropping capabilities needs no permission
    let b = w.pod(
        PodBuilder::new("dropper")
            .container("main", &cmd)
            .with_container("main", |c| {
                c.security_context = Some(SecurityContext {
                    capabilities: Some(Capabilities {
                        add: None,
                        drop: Some(vec!["ALL".into()]),
                    }),
                    ..Default::default()
                })
            }),
    );
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "main running", |s| is_running(s, "main"))
        .unwrap();
    w.client.delete(&b.pod).unwrap().ok().unwrap();
}

#[test]
fn allowed_host_settings_reach_the_engine_and_logs_check_names() {
    let Some(mut w) = World::new("  allow_privileged: true\n  allowed_capabilities: [NET_ADMIN]\n")
    else {
        return;
    };
    let b = w.pod(
        PodBuilder::new("trusted")
            .container("main", &["sh", "-c", "echo trusted-output; sleep 30"])
            .with_container("main", |c| {
                c.security_context = Some(SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                })
            }),
    );
    let caps = w.pod(
        PodBuilder::new("netadmin")
            .container("main", &["sleep", "30"])
            .with_container("main", |c| {
                c.security_context = Some(SecurityContext {
                    capabilities: Some(Capabilities {
                        add: Some(vec!["CAP_NET_ADMIN".into()]),
                        drop: None,
                    }),
                    ..Default::default()
                })
            }),
    );
    for (p, format, want) in [
        (&b, "{{.HostConfig.Privileged}}", "true"),
        (&caps, "{{.HostConfig.CapAdd}}", "NET_ADMIN"),
    ] {
        w.client.create_ok(&p.data()).unwrap();
        w.client
            .wait_status(&p.pod, T, "main running", |s| is_running(s, "main"))
            .unwrap();
        let ids = w.containers_of(p.uid(), "container");
        assert_eq!(ids.len(), 1, "{ids:?}");
        let inspect = w.podman(&["inspect", "--format", format, &ids[0]]);
        assert!(inspect.contains(want), "{format}: {inspect}");
    }
    w.client.delete(&caps.pod).unwrap().ok().unwrap();
    // a capability the admin did not list stays refused
    let other = w.pod(
        PodBuilder::new("other")
            .container("main", &["sleep", "30"])
            .with_container("main", |c| {
                c.security_context = Some(SecurityContext {
                    capabilities: Some(Capabilities {
                        add: Some(vec!["SYS_ADMIN".into()]),
                        drop: None,
                    }),
                    ..Default::default()
                })
            }),
    );
    let r = w.client.create(&other.data()).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().unwrap_or_default().contains("SYS_ADMIN"));

    // /getLogs: the right names read the log, others get a 404
    let good = log_req(&b.pod, "main", ContainerLogOpts::default());
    let mut ok = false;
    for _ in 0..50 {
        let r = w.client.logs(&good).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        if r.text().contains("trusted-output") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "the log never showed the output");
    for (ns, name) in [("elsewhere", "trusted"), ("default", "intruder")] {
        let mut req = good.clone();
        req.namespace = ns.into();
        req.pod_name = name.into();
        let r = w.client.logs(&req).unwrap();
        assert_eq!(r.status, 404, "{ns}/{name}: {}", r.text());
        assert!(r.error().is_some(), "{}", r.text());
        assert!(!r.text().contains("trusted-output"));
    }
    w.client.delete(&b.pod).unwrap().ok().unwrap();
}

#[test]
fn allowed_host_namespaces_reach_the_engine() {
    let Some(mut w) = World::new("  allow_host_namespaces: true\n") else {
        return;
    };
    let mut b = PodBuilder::new("hostns").container(
        "main",
        &[
            "sh",
            "-c",
            "for n in net pid ipc; do echo $n=$(readlink /proc/self/ns/$n); done; sleep 30",
        ],
    );
    {
        let spec = b.pod.spec.as_mut().unwrap();
        spec.host_network = Some(true);
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
    }
    let b = w.pod(b);
    w.client.create_ok(&b.data()).unwrap();
    w.client
        .wait_status(&b.pod, T, "main running", |s| is_running(s, "main"))
        .unwrap();
    let req = log_req(&b.pod, "main", ContainerLogOpts::default());
    let mut text = String::new();
    for _ in 0..50 {
        text = w.client.logs(&req).unwrap().text();
        if text.contains("ipc=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for ns in ["net", "pid", "ipc"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let want = format!("{ns}={}", host.display());
        assert!(text.contains(&want), "{ns}: want {want:?} in {text:?}");
    }
    w.client.delete(&b.pod).unwrap().ok().unwrap();
}
