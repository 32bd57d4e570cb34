//! CRI request -> Kubernetes objects for the remote pod. Two steps go through the
//! [`Hooks`] seam: resource mapping (per container, at `CreateContainer`) and the
//! annotation step (per remote pod, before `/create`). The host computes the
//! defaults here and passes them to the hooks, which return the final answer.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::hooks::{
    self, AnnotationInput, CriResources, Hooks, ResourceInput, ResourceRequirements,
};
use crate::proto::runtime::v1 as cri;
use crate::store::{Container, Converted, Kind, RemotePod, Sandbox};

/// Annotations the host puts on every remote pod.
pub const ANN_SANDBOX_ID: &str = "interlink.eu/cri-sandbox-id";
pub const ANN_PHASE: &str = "interlink.eu/cri-phase";

/// A file kubelet materialised, larger than this, is not shipped.
const MAX_VOLUME_FILE: u64 = 1 << 20;

pub fn cri_resources(r: &cri::LinuxContainerResources) -> CriResources {
    CriResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| (h.page_size.clone(), h.limit))
            .collect(),
        unified: r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// The seeds' default mapping: CPU quota/period -> CPU limit in millicores, shares ->
/// CPU request, memory limit -> memory limit, GPU devices -> `nvidia.com/gpu`.
pub fn default_resources(
    r: &CriResources,
    devices: &[hooks::Device],
    cdi: &[String],
) -> ResourceRequirements {
    let mut out = ResourceRequirements::default();
    if r.cpu_quota > 0 && r.cpu_period > 0 {
        let m = (r.cpu_quota * 1000 + r.cpu_period - 1) / r.cpu_period;
        out.limits.insert("cpu".into(), format!("{m}m"));
    }
    // kubelet sets 2 shares (the minimum) for pods without a CPU request
    if r.cpu_shares > 2 {
        let m = r.cpu_shares * 1000 / 1024;
        out.requests.insert("cpu".into(), format!("{m}m"));
    }
    if r.memory_limit_in_bytes > 0 {
        out.limits
            .insert("memory".into(), r.memory_limit_in_bytes.to_string());
    }
    let is_gpu_dev = |p: &str| {
        p.strip_prefix("/dev/nvidia")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    let gpus = devices.iter().filter(|d| is_gpu_dev(&d.host_path)).count()
        + cdi
            .iter()
            .filter(|c| c.starts_with("nvidia.com/gpu="))
            .count();
    if gpus > 0 {
        out.limits.insert("nvidia.com/gpu".into(), gpus.to_string());
    }
    out
}

fn quantities(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    if m.is_empty() {
        None
    } else {
        Some(
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect(),
        )
    }
}

fn map_of(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Which kubelet volume directory a mount's host path is.
#[derive(Debug, PartialEq, Eq)]
enum VolumeKind<'a> {
    ConfigMap(&'a str),
    Secret(&'a str),
    Projected(&'a str),
    EmptyDir(&'a str),
    /// /etc/hosts, termination-log and the like: node files a remote pod cannot use.
    NodeFile,
    Host,
}

fn volume_kind(host_path: &str) -> VolumeKind<'_> {
    for (marker, tag) in [
        ("/volumes/kubernetes.io~configmap/", 0),
        ("/volumes/kubernetes.io~secret/", 1),
        ("/volumes/kubernetes.io~projected/", 2),
        ("/volumes/kubernetes.io~empty-dir/", 3),
    ] {
        if let Some(i) = host_path.find(marker) {
            let name = host_path[i + marker.len()..]
                .split('/')
                .next()
                .unwrap_or("");
            if !name.is_empty() {
                return match tag {
                    0 => VolumeKind::ConfigMap(name),
                    1 => VolumeKind::Secret(name),
                    2 => VolumeKind::Projected(name),
                    _ => VolumeKind::EmptyDir(name),
                };
            }
        }
    }
    // `<kubelet root>/pods/<uid>/etc-hosts` and the termination-log files
    // `<kubelet root>/pods/<uid>/containers/<name>/<id>`, whatever kubelet's --root-dir
    let parts: Vec<&str> = host_path.split('/').collect();
    let node_file = parts.windows(3).any(|w| {
        w[0] == "pods" && !w[1].is_empty() && (w[2] == "etc-hosts" || w[2] == "containers")
    });
    if node_file {
        return VolumeKind::NodeFile;
    }
    VolumeKind::Host
}

/// Files of a directory kubelet materialised (its `..data` layout): name -> bytes.
fn read_volume_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("..") {
            continue;
        }
        let p = e.path();
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.len() <= MAX_VOLUME_FILE => {
                if let Ok(b) = std::fs::read(&p) {
                    out.insert(name, b);
                }
            }
            _ => {}
        }
    }
    out
}

fn config_map(name: &str, namespace: &str, files: BTreeMap<String, Vec<u8>>) -> k8s::ConfigMap {
    let mut data = BTreeMap::new();
    let mut binary = BTreeMap::new();
    for (k, v) in files {
        match String::from_utf8(v) {
            Ok(s) => {
                data.insert(k, s);
            }
            Err(e) => {
                binary.insert(k, ByteString(e.into_bytes()));
            }
        }
    }
    k8s::ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(data),
        binary_data: if binary.is_empty() {
            None
        } else {
            Some(binary)
        },
        ..Default::default()
    }
}

/// Convert one CRI container to the Kubernetes container and the objects it needs.
pub fn convert_container(
    sandbox: &cri::PodSandboxConfig,
    cfg: &cri::ContainerConfig,
    image: &str,
    empty_dir_as_host_path: bool,
    hooks: &dyn Hooks,
) -> Converted {
    let md = sandbox.metadata.clone().unwrap_or_default();
    let name = cfg
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let remote_name = crate::names::dns_label(&name);
    let namespace = crate::names::dns_label(&md.namespace);
    let mut out = Converted::default();
    let mut c = k8s::Container {
        name: remote_name.clone(),
        image: Some(image.to_string()),
        ..Default::default()
    };
    if !cfg.command.is_empty() {
        c.command = Some(cfg.command.clone());
    }
    if !cfg.args.is_empty() {
        c.args = Some(cfg.args.clone());
    }
    if !cfg.working_dir.is_empty() {
        c.working_dir = Some(cfg.working_dir.clone());
    }
    if !cfg.envs.is_empty() {
        c.env = Some(
            cfg.envs
                .iter()
                .map(|kv| k8s::EnvVar {
                    name: kv.key.clone(),
                    value: Some(String::from_utf8_lossy(&kv.value).into_owned()),
                    ..Default::default()
                })
                .collect(),
        );
    }
    c.tty = cfg.tty.then_some(true);
    c.stdin = cfg.stdin.then_some(true);
    c.stdin_once = (cfg.stdin && cfg.stdin_once).then_some(true);

    let mut mounts = Vec::new();
    for (i, m) in cfg.mounts.iter().enumerate() {
        let kind = volume_kind(&m.host_path);
        let (vol_name, volume) = match kind {
            VolumeKind::NodeFile => continue,
            VolumeKind::ConfigMap(n) => {
                out.configmaps.push(config_map(
                    n,
                    &namespace,
                    read_volume_dir(Path::new(&m.host_path)),
                ));
                (
                    n.to_string(),
                    k8s::Volume {
                        name: n.into(),
                        config_map: Some(k8s::ConfigMapVolumeSource {
                            name: n.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
            }
            VolumeKind::Secret(n) => {
                let files = read_volume_dir(Path::new(&m.host_path));
                out.secrets.push(k8s::Secret {
                    metadata: ObjectMeta {
                        name: Some(n.into()),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    data: Some(files.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
                    ..Default::default()
                });
                (
                    n.to_string(),
                    k8s::Volume {
                        name: n.into(),
                        secret: Some(k8s::SecretVolumeSource {
                            secret_name: Some(n.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
            }
            VolumeKind::Projected(n) => {
                out.projected.push(config_map(
                    n,
                    &namespace,
                    read_volume_dir(Path::new(&m.host_path)),
                ));
                (
                    n.to_string(),
                    k8s::Volume {
                        name: n.into(),
                        projected: Some(k8s::ProjectedVolumeSource {
                            sources: Some(vec![]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
            }
            VolumeKind::EmptyDir(n) if !empty_dir_as_host_path => (
                n.to_string(),
                k8s::Volume {
                    name: n.into(),
                    empty_dir: Some(k8s::EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
            ),
            VolumeKind::EmptyDir(n) => (n.to_string(), host_path_volume(n, &m.host_path)),
            VolumeKind::Host => {
                let n = crate::names::dns_label(&format!("host-{remote_name}-{i}"));
                (n.clone(), host_path_volume(&n, &m.host_path))
            }
        };
        mounts.push(k8s::VolumeMount {
            name: vol_name,
            mount_path: m.container_path.clone(),
            read_only: m.readonly.then_some(true),
            ..Default::default()
        });
        out.volumes.push(volume);
    }
    if !mounts.is_empty() {
        c.volume_mounts = Some(mounts);
    }

    // resources: default mapping, then the hooks
    let res = cfg
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(cri_resources)
        .unwrap_or_default();
    let devices: Vec<hooks::Device> = cfg
        .devices
        .iter()
        .map(|d| hooks::Device {
            container_path: d.container_path.clone(),
            host_path: d.host_path.clone(),
            permissions: d.permissions.clone(),
        })
        .collect();
    let cdi: Vec<String> = cfg.cdi_devices.iter().map(|d| d.name.clone()).collect();
    let mut annotations = map_of(&sandbox.annotations);
    annotations.extend(map_of(&cfg.annotations));
    let sb_res = sandbox.linux.as_ref();
    let input = ResourceInput {
        pod_name: md.name.clone(),
        pod_namespace: md.namespace.clone(),
        container_name: name,
        default: default_resources(&res, &devices, &cdi),
        resources: res,
        devices,
        cdi_devices: cdi,
        annotations,
        sandbox_overhead: sb_res.and_then(|l| l.overhead.as_ref()).map(cri_resources),
        sandbox_resources: sb_res.and_then(|l| l.resources.as_ref()).map(cri_resources),
    };
    let rr = hooks.map_resources(&input);
    if !rr.limits.is_empty() || !rr.requests.is_empty() {
        c.resources = Some(k8s::ResourceRequirements {
            limits: quantities(&rr.limits),
            requests: quantities(&rr.requests),
            ..Default::default()
        });
    }
    out.container = c;
    out
}

fn host_path_volume(name: &str, path: &str) -> k8s::Volume {
    k8s::Volume {
        name: name.into(),
        host_path: Some(k8s::HostPathVolumeSource {
            path: path.into(),
            type_: None,
        }),
        ..Default::default()
    }
}

/// The remote pod for `remote` with `containers` (in order), through the
/// annotation step. Objects are deduplicated by name.
pub fn build_create(
    sandbox: &Sandbox,
    remote: &RemotePod,
    containers: &[&Container],
    hooks: &dyn Hooks,
    plugin_config: &BTreeMap<String, String>,
) -> interlink::PodCreateRequests {
    let md = sandbox.config.metadata.clone().unwrap_or_default();
    let mut labels = map_of(&sandbox.config.labels);
    let mut annotations = map_of(&sandbox.config.annotations);
    let mut ks = Vec::new();
    let mut volumes: Vec<k8s::Volume> = Vec::new();
    let mut req = interlink::PodCreateRequests::default();
    let mut container_annotations = BTreeMap::new();
    for (i, c) in containers.iter().enumerate() {
        let Some(spec) = c.spec.as_deref() else {
            continue;
        };
        let mut kc = spec.container.clone();
        if i == 0 && !sandbox.config.port_mappings.is_empty() && remote.kind == Kind::Regular {
            kc.ports = Some(
                sandbox
                    .config
                    .port_mappings
                    .iter()
                    .map(|p| k8s::ContainerPort {
                        container_port: p.container_port,
                        host_port: (p.host_port > 0).then_some(p.host_port),
                        protocol: Some(match p.protocol {
                            1 => "UDP".into(),
                            2 => "SCTP".into(),
                            _ => "TCP".into(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        ks.push(kc);
        container_annotations.insert(spec.container.name.clone(), map_of(&c.config.annotations));
        push_new(&mut volumes, &spec.volumes, |v| v.name.clone());
        push_new(&mut req.configmaps, &spec.configmaps, |c| {
            c.metadata.name.clone()
        });
        push_new(&mut req.secrets, &spec.secrets, |c| c.metadata.name.clone());
        push_new(&mut req.projected_volumes_maps, &spec.projected, |c| {
            c.metadata.name.clone()
        });
    }
    let changes = hooks.handle_annotations(&AnnotationInput {
        pod_name: md.name.clone(),
        pod_namespace: md.namespace.clone(),
        pod_labels: labels.clone(),
        pod_annotations: annotations.clone(),
        container_annotations,
        runtime_handler: sandbox.runtime_handler.clone(),
        plugin_config: plugin_config.clone(),
    });
    for k in &changes.remove_labels {
        labels.remove(k);
    }
    for k in &changes.remove_annotations {
        annotations.remove(k);
    }
    labels.extend(changes.set_labels);
    annotations.extend(changes.set_annotations);
    annotations.insert(ANN_SANDBOX_ID.into(), sandbox.id.clone());
    if remote.kind == Kind::Init {
        annotations.insert(
            ANN_PHASE.into(),
            format!(
                "init:{}",
                containers.first().map(|c| c.name()).unwrap_or_default()
            ),
        );
    }
    let dns = sandbox.config.dns_config.as_ref().and_then(dns_config);
    req.pod = k8s::Pod {
        metadata: ObjectMeta {
            name: Some(remote.name.clone()),
            namespace: Some(remote.namespace.clone()),
            uid: Some(remote.uid.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(k8s::PodSpec {
            containers: ks,
            volumes: if volumes.is_empty() {
                None
            } else {
                Some(volumes)
            },
            restart_policy: Some("Never".into()),
            // a pod's hostname is a DNS label in Kubernetes (plugins may check it)
            hostname: (!sandbox.config.hostname.is_empty())
                .then(|| crate::names::dns_label(&sandbox.config.hostname)),
            termination_grace_period_seconds: remote.grace_seconds,
            // what kubelet computed (cluster DNS, searches, options): complete
            dns_policy: dns.as_ref().map(|_| "None".to_string()),
            dns_config: dns,
            ..Default::default()
        }),
        status: Some(k8s::PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    };
    req
}

/// CRI's DNS config (servers, searches, `name[:value]` options) as the pod's
/// `dnsConfig`; `None` when it holds nothing.
fn dns_config(d: &cri::DnsConfig) -> Option<k8s::PodDNSConfig> {
    if d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty() {
        return None;
    }
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Some(k8s::PodDNSConfig {
        nameservers: list(&d.servers),
        searches: list(&d.searches),
        options: (!d.options.is_empty()).then(|| {
            d.options
                .iter()
                .map(|o| {
                    let (name, value) = match o.split_once(':') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (o.clone(), None),
                    };
                    k8s::PodDNSConfigOption {
                        name: Some(name),
                        value,
                    }
                })
                .collect()
        }),
    })
}

/// The pod as one `/status` round sends it: identity, container names and
/// `status.phase: Running` (only pods created and not finished are polled).
/// Upstream's API server asks its plugin again only for pods whose phase is
/// Running/Pending; without a phase it would answer its cache for ever.
/// What the pod's spec in the Kubernetes API says that CRI does not: probes,
/// ports, security contexts, lifecycle hooks and terminal settings of each
/// container (matched by name), and the pod's service account, scheduling
/// and security fields. Everything CRI decided (image, command, env, mounts,
/// resources) stays as converted.
pub fn apply_pod_spec(pod: &mut k8s::Pod, real: &k8s::Pod) {
    let (Some(spec), Some(rs)) = (pod.spec.as_mut(), real.spec.as_ref()) else {
        return;
    };
    for c in spec.containers.iter_mut() {
        let Some(k) = rs.containers.iter().find(|k| k.name == c.name) else {
            continue;
        };
        c.liveness_probe = k.liveness_probe.clone();
        c.readiness_probe = k.readiness_probe.clone();
        c.startup_probe = k.startup_probe.clone();
        if k.ports.as_ref().is_some_and(|p| !p.is_empty()) {
            c.ports = k.ports.clone();
        }
        c.security_context = k.security_context.clone().or(c.security_context.take());
        c.lifecycle = k.lifecycle.clone();
        c.stdin = k.stdin.or(c.stdin);
        c.stdin_once = k.stdin_once.or(c.stdin_once);
        c.tty = k.tty.or(c.tty);
        c.termination_message_path = k.termination_message_path.clone();
        c.termination_message_policy = k.termination_message_policy.clone();
    }
    spec.service_account_name = rs.service_account_name.clone();
    spec.automount_service_account_token = rs.automount_service_account_token;
    spec.security_context = rs.security_context.clone().or(spec.security_context.take());
    spec.node_selector = rs.node_selector.clone();
    spec.tolerations = rs.tolerations.clone();
    spec.affinity = rs.affinity.clone();
    spec.priority_class_name = rs.priority_class_name.clone();
    spec.priority = rs.priority;
    spec.runtime_class_name = rs.runtime_class_name.clone();
    spec.subdomain = rs.subdomain.clone();
    // kubelet's DNS config, when it sent one, is the whole answer (`None`)
    if spec.dns_config.is_none() {
        spec.dns_policy = rs.dns_policy.clone();
    }
    spec.active_deadline_seconds = rs.active_deadline_seconds;
}

pub fn status_pod(remote: &RemotePod, container_names: Vec<String>) -> k8s::Pod {
    k8s::Pod {
        metadata: ObjectMeta {
            name: Some(remote.name.clone()),
            namespace: Some(remote.namespace.clone()),
            uid: Some(remote.uid.clone()),
            ..Default::default()
        },
        spec: Some(k8s::PodSpec {
            containers: container_names
                .into_iter()
                .map(|n| k8s::Container {
                    name: n,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(k8s::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

/// The pod as `/status`, `/delete` and `/updateCache` need it: metadata and container names.
pub fn minimal_pod(remote: &RemotePod, container_names: Vec<String>) -> k8s::Pod {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_SANDBOX_ID.to_string(), remote.sandbox_id.clone());
    k8s::Pod {
        metadata: ObjectMeta {
            name: Some(remote.name.clone()),
            namespace: Some(remote.namespace.clone()),
            uid: Some(remote.uid.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(k8s::PodSpec {
            containers: container_names
                .into_iter()
                .map(|n| k8s::Container {
                    name: n,
                    ..Default::default()
                })
                .collect(),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: remote.grace_seconds,
            ..Default::default()
        }),
        status: None,
    }
}

impl Container {
    /// The container's name in its remote pod (its CRI name mapped to a DNS label).
    pub fn name(&self) -> String {
        crate::names::dns_label(
            self.config
                .metadata
                .as_ref()
                .map(|m| m.name.as_str())
                .unwrap_or_default(),
        )
    }
    pub fn attempt(&self) -> u32 {
        self.config
            .metadata
            .as_ref()
            .map(|m| m.attempt)
            .unwrap_or(0)
    }
}

/// Append the items of `from` whose key is not in `to` yet (objects shared by
/// several containers of one remote pod are sent once).
fn push_new<T: Clone, K: PartialEq>(to: &mut Vec<T>, from: &[T], key: impl Fn(&T) -> K) {
    for item in from {
        let k = key(item);
        if !to.iter().any(|x| key(x) == k) {
            to.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::NoHooks;

    #[test]
    fn default_resource_mapping() {
        let r = CriResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 1 << 30,
            ..Default::default()
        };
        let d = vec![
            hooks::Device {
                host_path: "/dev/nvidia0".into(),
                ..Default::default()
            },
            hooks::Device {
                host_path: "/dev/nvidiactl".into(),
                ..Default::default()
            },
        ];
        let out = default_resources(&r, &d, &["nvidia.com/gpu=1".into()]);
        assert_eq!(out.limits["cpu"], "500m");
        assert_eq!(out.requests["cpu"], "500m");
        assert_eq!(out.limits["memory"], "1073741824");
        assert_eq!(out.limits["nvidia.com/gpu"], "2");
        assert!(
            default_resources(
                &CriResources {
                    cpu_shares: 2,
                    ..Default::default()
                },
                &[],
                &[]
            )
            .requests
            .is_empty()
        );
    }

    #[test]
    fn volume_kinds() {
        assert_eq!(
            volume_kind("/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/cfg"),
            VolumeKind::ConfigMap("cfg")
        );
        assert_eq!(
            volume_kind("/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/scratch"),
            VolumeKind::EmptyDir("scratch")
        );
        assert_eq!(
            volume_kind("/var/lib/kubelet/pods/u/etc-hosts"),
            VolumeKind::NodeFile
        );
        assert_eq!(volume_kind("/data"), VolumeKind::Host);
        // kubelet with another --root-dir
        assert_eq!(
            volume_kind("/srv/kubelet/pods/u/etc-hosts"),
            VolumeKind::NodeFile
        );
        assert_eq!(
            volume_kind("/srv/kubelet/pods/u/containers/main/1a2b"),
            VolumeKind::NodeFile
        );
        assert_eq!(volume_kind("/data/pods"), VolumeKind::Host);
    }

    #[test]
    fn converts_a_container_with_a_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let cm = dir
            .path()
            .join("pods/u/volumes/kubernetes.io~configmap/settings");
        std::fs::create_dir_all(&cm).unwrap();
        std::fs::write(cm.join("a.conf"), "x=1").unwrap();
        let sb = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            ..Default::default()
        };
        let cfg = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            command: vec!["sh".into()],
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: b"1".to_vec(),
            }],
            mounts: vec![cri::Mount {
                container_path: "/etc/app".into(),
                host_path: cm.display().to_string(),
                readonly: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = convert_container(
            &sb,
            &cfg,
            "docker.io/library/busybox:latest",
            false,
            &NoHooks,
        );
        assert_eq!(
            out.container.command.as_ref().unwrap(),
            &vec!["sh".to_string()]
        );
        assert_eq!(
            out.container.env.as_ref().unwrap()[0].value.as_deref(),
            Some("1")
        );
        assert_eq!(out.configmaps[0].data.as_ref().unwrap()["a.conf"], "x=1");
        assert_eq!(out.volumes[0].name, "settings");
        assert_eq!(
            out.container.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/etc/app"
        );
    }
    /// kubelet's DNS config goes to the pod as `dnsConfig` (options split at
    /// the first ':'), and a real pod spec's policy does not replace `None`.
    #[test]
    fn dns_config_from_the_sandbox() {
        assert!(dns_config(&cri::DnsConfig::default()).is_none());
        let d = dns_config(&cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        })
        .unwrap();
        assert_eq!(d.nameservers.unwrap(), ["10.96.0.10"]);
        assert_eq!(d.searches.unwrap(), ["ns.svc.cluster.local"]);
        let o = d.options.unwrap();
        assert_eq!(
            (o[0].name.as_deref(), o[0].value.as_deref()),
            (Some("ndots"), Some("5"))
        );
        assert_eq!(
            (o[1].name.as_deref(), o[1].value.as_deref()),
            (Some("edns0"), None)
        );

        let mut pod = k8s::Pod {
            spec: Some(k8s::PodSpec {
                dns_policy: Some("None".into()),
                dns_config: Some(k8s::PodDNSConfig::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let real = k8s::Pod {
            spec: Some(k8s::PodSpec {
                dns_policy: Some("ClusterFirst".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        apply_pod_spec(&mut pod, &real);
        assert_eq!(pod.spec.unwrap().dns_policy.as_deref(), Some("None"));
    }
}
