//! A container's probes (liveness, readiness, startup) and lifecycle hooks
//! (postStart, preStop) as the job script runs them on the compute node, as
//! upstream's Slurm plugin does (`EnableProbes`).
//!
//! Everything here is the pod author's, so it is data: an exec probe's or hook's
//! command runs inside the container (through the same runtime as the container,
//! each word quoted); an httpGet/tcpSocket probe connects to the pod's own
//! address (`127.0.0.1`, jobs share the node's network) and a port of the pod,
//! never to a host the pod names.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe as K8sProbe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// A command run in the container; success = exit code 0.
    Exec(Vec<String>),
    /// `GET scheme://127.0.0.1:port/path`; success = 200..399.
    Http {
        scheme: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection to `127.0.0.1:port`.
    Tcp { port: u16 },
}

/// One probe with Kubernetes' timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub action: ProbeAction,
    pub initial_delay_s: u32,
    pub period_s: u32,
    pub timeout_s: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A container's probes and hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    pub startup: Option<Probe>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    /// postStart exec command: run in the container once it started; when it
    /// fails the container is killed (Kubernetes' `FailedPostStartHook`).
    pub post_start: Option<Vec<String>>,
    /// preStop exec command: run in the container when the pod is deleted,
    /// before the container is sent TERM.
    pub pre_stop: Option<Vec<String>>,
}

impl Checks {
    pub fn is_empty(&self) -> bool {
        self == &Checks::default()
    }
    /// The container starts not ready (a readiness or startup probe decides).
    pub fn gates_readiness(&self) -> bool {
        self.readiness.is_some() || self.startup.is_some()
    }
}

fn port(c: &Container, p: &IntOrString, what: &str) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{what}: port {n} is not a TCP port")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("{what}: no container port is named {name:?}")),
    }
}

fn local_host(host: Option<&str>, what: &str) -> Result<(), String> {
    match host.map(str::trim) {
        None | Some("") | Some("localhost") | Some("127.0.0.1") => Ok(()),
        Some(h) => Err(format!(
            "{what}: host {h:?} is not supported: probes connect to the pod's own address \
             (leave host unset)"
        )),
    }
}

fn command(cmd: &Option<Vec<String>>, what: &str) -> Result<Vec<String>, String> {
    let cmd = cmd.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err(format!("{what}: exec has no command"));
    }
    Ok(cmd)
}

fn probe(c: &Container, p: &K8sProbe, what: &str) -> Result<Probe, String> {
    let action = if let Some(e) = &p.exec {
        ProbeAction::Exec(command(&e.command, what)?)
    } else if let Some(h) = &p.http_get {
        local_host(h.host.as_deref(), what)?;
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{what}: scheme {scheme:?} is not HTTP or HTTPS"));
        }
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("{what}: path {path:?} is not a URL path"));
        }
        let mut headers = Vec::new();
        for hd in h.http_headers.iter().flatten() {
            if hd.name.is_empty()
                || !hd
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || hd.value.chars().any(|c| c.is_control())
            {
                return Err(format!("{what}: header {:?} is not valid", hd.name));
            }
            headers.push((hd.name.clone(), hd.value.clone()));
        }
        ProbeAction::Http {
            scheme,
            port: port(c, &h.port, what)?,
            path,
            headers,
        }
    } else if let Some(t) = &p.tcp_socket {
        local_host(t.host.as_deref(), what)?;
        ProbeAction::Tcp {
            port: port(c, &t.port, what)?,
        }
    } else if p.grpc.is_some() {
        return Err(format!(
            "{what}: grpc probes are not supported by the slurm plugin (use exec, httpGet or tcpSocket)"
        ));
    } else {
        return Err(format!(
            "{what}: the probe has no exec, httpGet or tcpSocket"
        ));
    };
    let n = |v: Option<i32>, default: u32, min: u32| -> u32 {
        v.map(|v| v.max(0) as u32).unwrap_or(default).max(min)
    };
    Ok(Probe {
        action,
        initial_delay_s: n(p.initial_delay_seconds, 0, 0),
        period_s: n(p.period_seconds, 10, 1),
        timeout_s: n(p.timeout_seconds, 1, 1),
        success_threshold: n(p.success_threshold, 1, 1),
        failure_threshold: n(p.failure_threshold, 3, 1),
    })
}

fn hook(h: &LifecycleHandler, what: &str) -> Result<Option<Vec<String>>, String> {
    if let Some(e) = &h.exec {
        return command(&e.command, what).map(Some);
    }
    if h.http_get.is_some() || h.tcp_socket.is_some() {
        return Err(format!(
            "{what}: only exec hooks are supported by the slurm plugin"
        ));
    }
    // `sleep` hooks: a pause before TERM, as the kubelet does
    if let Some(s) = &h.sleep {
        return Ok(Some(vec!["sleep".into(), s.seconds.max(0).to_string()]));
    }
    Ok(None)
}

/// A container's probes and hooks, or why they cannot run here.
pub fn checks(c: &Container) -> Result<Checks, String> {
    let what = |k: &str| format!("container {:?}: {k}", c.name);
    let mut out = Checks::default();
    if let Some(p) = &c.startup_probe {
        out.startup = Some(probe(c, p, &what("startupProbe"))?);
    }
    if let Some(p) = &c.readiness_probe {
        out.readiness = Some(probe(c, p, &what("readinessProbe"))?);
    }
    if let Some(p) = &c.liveness_probe {
        out.liveness = Some(probe(c, p, &what("livenessProbe"))?);
    }
    if let Some(l) = &c.lifecycle {
        if let Some(h) = &l.post_start {
            out.post_start = hook(h, &what("lifecycle.postStart"))?;
        }
        if let Some(h) = &l.pre_stop {
            out.pre_stop = hook(h, &what("lifecycle.preStop"))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn translates_kubernetes_probes_and_hooks() {
        let c = container(serde_json::json!({
            "name": "web",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 2},
            "livenessProbe": {"httpGet": {"path": "healthz", "port": "http",
                "httpHeaders": [{"name": "X-A", "value": "b c"}]}, "failureThreshold": 5},
            "startupProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 3},
            "lifecycle": {"postStart": {"exec": {"command": ["touch", "/tmp/x"]}},
                          "preStop": {"sleep": {"seconds": 4}}}
        }));
        let k = checks(&c).unwrap();
        let r = k.readiness.unwrap();
        assert_eq!(
            r.action,
            ProbeAction::Exec(vec!["cat".into(), "/tmp/ready".into()])
        );
        assert_eq!((r.period_s, r.timeout_s, r.failure_threshold), (2, 1, 3));
        let l = k.liveness.unwrap();
        assert_eq!(
            l.action,
            ProbeAction::Http {
                scheme: "http".into(),
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "b c".into())],
            }
        );
        assert_eq!(l.failure_threshold, 5);
        let s = k.startup.unwrap();
        assert_eq!(s.action, ProbeAction::Tcp { port: 8080 });
        assert_eq!(s.initial_delay_s, 3);
        assert_eq!(k.post_start, Some(vec!["touch".into(), "/tmp/x".into()]));
        assert_eq!(k.pre_stop, Some(vec!["sleep".into(), "4".into()]));
    }

    #[test]
    fn refuses_what_cannot_run_here() {
        for (probe, says) in [
            (
                serde_json::json!({"httpGet": {"host": "10.0.0.1", "port": 80}}),
                "host \"10.0.0.1\"",
            ),
            (
                serde_json::json!({"httpGet": {"port": "web"}}),
                "named \"web\"",
            ),
            (serde_json::json!({"grpc": {"port": 80}}), "grpc"),
            (serde_json::json!({"exec": {"command": []}}), "no command"),
            (
                serde_json::json!({"tcpSocket": {"port": 70000}}),
                "not a TCP port",
            ),
        ] {
            let c = container(serde_json::json!({"name": "c", "readinessProbe": probe}));
            let e = checks(&c).unwrap_err();
            assert!(e.contains(says) && e.contains("readinessProbe"), "{e}");
        }
        let c = container(serde_json::json!({"name": "c",
            "lifecycle": {"preStop": {"httpGet": {"port": 80}}}}));
        assert!(checks(&c).unwrap_err().contains("only exec hooks"));
    }
}
