//! Engine container definitions for a pod: one infra container holding the pod's
//! network, IPC and UTS namespaces, and one container per Kubernetes container
//! joined to them.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::config::{Config, capability_name};
use interlink_plugin_kit::pod::Placement;
use interlink_plugin_kit::quantity;

pub const LABEL_POD_UID: &str = "interlink.pod-uid";
pub const LABEL_POD_NAME: &str = "interlink.pod-name";
pub const LABEL_POD_NAMESPACE: &str = "interlink.pod-namespace";
pub const LABEL_CONTAINER: &str = "interlink.container";
pub const LABEL_ROLE: &str = "interlink.role";

/// Which part of the pod an engine container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Infra,
    Init,
    Regular,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Infra => "infra",
            Role::Init => "init",
            Role::Regular => "container",
        }
    }
}

/// Engine name of a pod's container (`il_<uid>_<name>`; the infra container is
/// `il_<uid>.infra`, which no Kubernetes container name can collide with).
pub fn engine_name(uid: &str, role: Role, container: &str) -> String {
    match role {
        Role::Infra => format!("il_{uid}.infra"),
        _ => format!("il_{uid}_{container}"),
    }
}

fn labels(pod: &Pod, role: Role, container: &str) -> HashMap<String, String> {
    let m = &pod.metadata;
    HashMap::from([
        (LABEL_POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
        (
            LABEL_POD_NAME.to_string(),
            m.name.clone().unwrap_or_default(),
        ),
        (
            LABEL_POD_NAMESPACE.to_string(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (LABEL_CONTAINER.to_string(), container.to_string()),
        (LABEL_ROLE.to_string(), role.as_str().to_string()),
    ])
}

/// The pod's hostname: `spec.hostname`, else its name, cut to a DNS label.
pub fn hostname(pod: &Pod) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_else(|| "pod".into());
    let h: String = h.chars().take(63).collect();
    h.trim_end_matches(['-', '.']).to_string()
}

/// Refuse what reaches the host unless the site allows it in the config:
/// privileged containers, added capabilities, the host's network, PID and IPC
/// namespaces. The message names the field and the config key.
pub fn check_host_access(pod: &Pod, config: &Config) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    if !config.allow_host_namespaces {
        for (field, on) in [
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
        ] {
            if on == Some(true) {
                return Err(format!(
                    "spec.{field}: the host's namespaces are not allowed on this site (docker.allow_host_namespaces)"
                ));
            }
        }
    }
    let all = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in all {
        for (i, c) in containers.iter().enumerate() {
            let Some(sc) = &c.security_context else {
                continue;
            };
            let at = format!("spec.{list}[{i}] ({:?}).securityContext", c.name);
            if sc.privileged == Some(true) && !config.allow_privileged {
                return Err(format!(
                    "{at}.privileged: privileged containers are not allowed on this site (docker.allow_privileged)"
                ));
            }
            for cap in sc
                .capabilities
                .as_ref()
                .and_then(|c| c.add.as_ref())
                .into_iter()
                .flatten()
            {
                if !config.capability_allowed(cap) {
                    return Err(format!(
                        "{at}.capabilities.add: capability {cap:?} is not allowed on this site (docker.allowed_capabilities)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The infra container: sleeps forever, owns the pod's namespaces.
/// What the downward API can know of where the pod runs. With the host's
/// network (`hostNetwork`, or `network_mode: host`) on an engine of this host
/// (a Unix socket), the pod's IP is this host's. Otherwise the pod's address
/// is its infra container's, given when that starts, after the containers
/// (and their environment) are created, or none (`network_mode: none`): the
/// downward API has what the pod's status says.
pub fn placement(pod: &Pod, config: &Config) -> Placement {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
        || config.network_mode == "host";
    if host_network && config.engine_host().starts_with("unix://") {
        interlink_plugin_kit::pod::host::this_host()
    } else {
        Placement::default()
    }
}

pub fn infra(pod: &Pod, config: &Config) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(config.infra_image.clone()),
        cmd: (!config.infra_command.is_empty()).then(|| config.infra_command.clone()),
        hostname: Some(hostname(pod)),
        labels: Some(labels(pod, Role::Infra, "")),
        host_config: Some(HostConfig {
            network_mode: Some(config.network_mode.clone()),
            ipc_mode: Some("shareable".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One Kubernetes container joined to the infra container's namespaces.
pub fn container(
    pod: &Pod,
    c: &Container,
    role: Role,
    infra_id: &str,
    env: &[(String, String)],
    binds: Vec<String>,
) -> Result<ContainerCreateBody, String> {
    let image = c
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("container {:?} has no image", c.name))?;
    let join = format!("container:{infra_id}");
    let mut hc = HostConfig {
        binds: Some(binds),
        network_mode: Some(join.clone()),
        ipc_mode: Some(join.clone()),
        uts_mode: Some(join.clone()),
        ..Default::default()
    };
    if pod.spec.as_ref().and_then(|s| s.share_process_namespace) == Some(true) {
        hc.pid_mode = Some(join);
    }
    if let Some(res) = &c.resources {
        let lim = res.limits.as_ref();
        let req = res.requests.as_ref();
        if let Some(q) = lim.and_then(|l| l.get("cpu")) {
            hc.nano_cpus =
                Some(quantity::nano_cpus(&q.0).map_err(|_| bad_quantity(c, "limits.cpu", &q.0))?);
        }
        if let Some(q) = lim.and_then(|l| l.get("memory")) {
            hc.memory =
                Some(quantity::bytes(&q.0).map_err(|_| bad_quantity(c, "limits.memory", &q.0))?);
        }
        if let Some(q) = req.and_then(|l| l.get("cpu")) {
            let cores = quantity::parse(&q.0).map_err(|_| bad_quantity(c, "requests.cpu", &q.0))?;
            // the kubelet's mapping: 1 core = 1024 shares, at least 2
            hc.cpu_shares = Some(((cores * 1024.0).round() as i64).max(2));
        }
        if let Some(q) = req.and_then(|l| l.get("memory")) {
            hc.memory_reservation =
                Some(quantity::bytes(&q.0).map_err(|_| bad_quantity(c, "requests.memory", &q.0))?);
        }
    }
    let mut user = None;
    if let Some(sc) = &c.security_context {
        if let Some(uid) = sc.run_as_user {
            user = Some(match sc.run_as_group {
                Some(g) => format!("{uid}:{g}"),
                None => uid.to_string(),
            });
        }
        // allowed by the site, or refused at create (check_host_access)
        hc.privileged = sc.privileged;
        hc.readonly_rootfs = sc.read_only_root_filesystem;
        if let Some(caps) = &sc.capabilities {
            let names = |v: &Option<Vec<String>>| {
                v.as_ref()
                    .filter(|v| !v.is_empty())
                    .map(|v| v.iter().map(|c| capability_name(c)).collect::<Vec<_>>())
            };
            hc.cap_add = names(&caps.add);
            hc.cap_drop = names(&caps.drop);
        }
    }
    if let Some(s) = pod.spec.as_ref() {
        if s.host_network == Some(true) {
            hc.network_mode = Some("host".into());
        }
        if s.host_ipc == Some(true) {
            hc.ipc_mode = Some("host".into());
        }
        if s.host_pid == Some(true) {
            hc.pid_mode = Some("host".into());
        }
    }
    let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let expand = |v: &Vec<String>| {
        v.iter()
            .map(|a| interlink_plugin_kit::pod::env::expand(a, lookup))
            .collect::<Vec<_>>()
    };
    let (entrypoint, cmd) = match (&c.command, &c.args) {
        (Some(cmd), args) if !cmd.is_empty() => (
            Some(expand(cmd)),
            Some(args.as_ref().map(expand).unwrap_or_default()),
        ),
        (_, Some(args)) if !args.is_empty() => (None, Some(expand(args))),
        _ => (None, None),
    };
    Ok(ContainerCreateBody {
        image: Some(image),
        entrypoint,
        cmd,
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        tty: Some(false),
        // stdin kept open for `kubectl attach -i` when the pod asks for it
        open_stdin: c.stdin.filter(|s| *s),
        stdin_once: c.stdin_once.filter(|s| *s),
        labels: Some(labels(pod, role, &c.name)),
        host_config: Some(hc),
        ..Default::default()
    })
}

fn bad_quantity(c: &Container, what: &str, q: &str) -> String {
    format!(
        "container {:?}: resources.{what} {q:?} is not a valid quantity",
        c.name
    )
}

/// The pull policy as Kubernetes defaults it: `Always` for `:latest` or untagged
/// images, else `IfNotPresent`.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_body() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": []}}),
        )
        .unwrap();
        let c: Container = serde_json::from_value(json!({"name": "c", "image": "img:1",
            "command": ["sh", "-c"], "args": ["echo $(A)"],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}},
            "securityContext": {"runAsUser": 1000}}))
        .unwrap();
        let env = vec![("A".to_string(), "x".to_string())];
        let b = container(
            &pod,
            &c,
            Role::Regular,
            "INF",
            &env,
            vec!["/h:/c:ro".into()],
        )
        .unwrap();
        assert_eq!(b.entrypoint, Some(vec!["sh".into(), "-c".into()]));
        assert_eq!(b.cmd, Some(vec!["echo x".into()]));
        let hc = b.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("container:INF"));
        assert_eq!(hc.uts_mode.as_deref(), Some("container:INF"));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.cpu_shares, Some(256));
        assert_eq!(b.user.as_deref(), Some("1000"));
        assert_eq!(b.labels.unwrap()[LABEL_POD_UID], "u1");
        let bad: Container = serde_json::from_value(json!({"name": "c", "image": "i",
            "resources": {"limits": {"memory": "lots"}}}))
        .unwrap();
        assert!(
            container(&pod, &bad, Role::Regular, "I", &[], vec![])
                .unwrap_err()
                .contains("limits.memory")
        );
    }

    #[test]
    fn host_access_needs_the_admin() {
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
                .unwrap()
        };
        let plain = pod(json!({"containers": [{"name": "c", "image": "i",
            "securityContext": {"capabilities": {"drop": ["ALL"]}}}]}));
        let strict = Config::default();
        check_host_access(&plain, &strict).unwrap();
        let cases = [
            (
                json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]}),
                "spec.containers[0] (\"c\").securityContext.privileged",
            ),
            (
                json!({"containers": [], "initContainers": [{"name": "i", "image": "i",
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}),
                "spec.initContainers[0] (\"i\").securityContext.capabilities.add",
            ),
            (
                json!({"containers": [], "hostNetwork": true}),
                "spec.hostNetwork",
            ),
            (json!({"containers": [], "hostPID": true}), "spec.hostPID"),
            (json!({"containers": [], "hostIPC": true}), "spec.hostIPC"),
        ];
        for (spec, field) in &cases {
            let e = check_host_access(&pod(spec.clone()), &strict).unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
        let open = Config {
            allow_privileged: true,
            allowed_capabilities: vec!["NET_ADMIN".into()],
            allow_host_namespaces: true,
            ..Config::default()
        };
        for (spec, _) in &cases {
            check_host_access(&pod(spec.clone()), &open).unwrap();
        }
        // allowed settings reach the engine
        let p = pod(
            json!({"hostNetwork": true, "hostPID": true, "containers": [{"name": "c", "image": "i",
            "securityContext": {"privileged": true, "capabilities": {"add": ["CAP_NET_ADMIN"], "drop": ["ALL"]}}}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let hc = container(&p, c, Role::Regular, "INF", &[], vec![])
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
    }

    #[test]
    fn pod_ip_is_the_host_s_only_with_the_host_s_network_here() {
        let pod = |host_network: bool| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"},
                "spec": {"hostNetwork": host_network, "containers": []}}))
            .unwrap()
        };
        let local = Config {
            docker_host: Some("unix:///run/podman.sock".into()),
            ..Default::default()
        };
        let here = placement(&pod(true), &local);
        assert!(here.pod_ip.is_some() && here.pod_ip == here.host_ip);
        // the default network mode `none` gives the pod no address
        assert_eq!(placement(&pod(false), &local), Placement::default());
        let host_mode = Config {
            network_mode: "host".into(),
            ..local.clone()
        };
        assert!(placement(&pod(false), &host_mode).pod_ip.is_some());
        // an engine elsewhere: this host's address is not the pod's
        let remote = Config {
            docker_host: Some("tcp://engine.example:2375".into()),
            ..host_mode
        };
        assert_eq!(placement(&pod(true), &remote), Placement::default());
    }

    #[test]
    fn policies_and_names() {
        let c = |img: &str| Container {
            name: "c".into(),
            image: Some(img.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost/mini:latest")), "Always");
        assert_ne!(
            engine_name("u", Role::Infra, ""),
            engine_name("u", Role::Regular, "infra")
        );
    }
}
