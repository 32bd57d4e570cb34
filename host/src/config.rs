//! `InterLinkCRIConfig.yaml`: the seeds' keys plus this host's own. Every key is
//! optional; an unknown key is an error that names it. Without any config file the
//! host runs its embedded default (API server + local plugin in process).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {msg}")]
    Read { path: String, msg: String },
    #[error("config {path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole file. Key names are as in the seeds (`InterlinkAddress`, `CRI.SocketPath`, ...).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Config {
    /// API server: `http://host`, `https://host` or `unix:///path`. Unset: the
    /// embedded default (API server and local plugin in this process).
    #[serde(default)]
    pub interlink_address: Option<String>,
    /// API server port (ignored for `unix://`). Seeds spell it `Interlinkport`.
    #[serde(
        default,
        rename = "Interlinkport",
        alias = "InterlinkPort",
        deserialize_with = "de_port"
    )]
    pub interlink_port: Option<u16>,
    #[serde(default, rename = "CRI")]
    pub cri: CriSection,
    #[serde(default, rename = "TLS")]
    pub tls: TlsSection,
    #[serde(default)]
    pub verbose_logging: bool,
    #[serde(default)]
    pub errors_only_logging: bool,
    /// Where state, remote-pod records and the embedded backend's data live.
    #[serde(default = "default_data_root")]
    pub data_root_folder: PathBuf,
    /// Bearer token file for the API server (also `VK_TOKEN_FILE`), re-read on change.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// One `/status` for every tracked pod per interval.
    #[serde(default = "d_1s", deserialize_with = "de_dur")]
    pub status_interval: Duration,
    /// Regular containers started within this window of each other go in one
    /// `/create`; a container created meanwhile holds the batch one more
    /// window. kubelet 1.36 starts a pod's containers 7–26 ms apart (measured
    /// here, 15 three-container pods), and what must fit in the window is
    /// less: from one `StartContainer` to the next `CreateContainer`. 50 ms
    /// leaves twice the widest start-to-start gap, and is half of what a
    /// short pod waits before it runs (bench start_to_exit).
    #[serde(default = "d_50ms", deserialize_with = "de_dur")]
    pub batch_window: Duration,
    /// How often `/pinglink` is called.
    #[serde(default = "d_5s", deserialize_with = "de_dur")]
    pub ping_interval: Duration,
    /// `RuntimeReady` turns false when `/pinglink` has not answered for this long.
    #[serde(default = "d_30s", deserialize_with = "de_dur")]
    pub ping_timeout: Duration,
    /// How long a `/create` that cannot reach the API server is retried before the
    /// containers are reported failed.
    #[serde(default = "d_60s", deserialize_with = "de_dur")]
    pub create_retry_for: Duration,
    /// `cgroupfs` or `systemd`, reported by `RuntimeConfig`.
    #[serde(default = "default_cgroup_driver")]
    pub cgroup_driver: String,
    /// Offered to the annotation step, which may put them on the remote pod.
    #[serde(default)]
    pub plugin_config: BTreeMap<String, String>,
    /// emptyDir volumes: `emptyDir` (the plugin's own, per remote pod) or
    /// `hostPath` (kubelet's directory, for plugins on this machine or a shared
    /// filesystem: keeps data between init containers and the main containers).
    /// Unset: `hostPath` on the embedded default (its plugin runs on this
    /// machine), `emptyDir` with a remote API server.
    #[serde(default)]
    pub empty_dir_mode: Option<String>,
    /// Pod IPs come from this IPv4 range when kubelet sends no pod CIDR
    /// (`UpdateRuntimeConfig`); unset: `network::DEFAULT_POD_CIDR`.
    #[serde(default, rename = "PodCIDR")]
    pub pod_cidr: Option<String>,
    /// A kubeconfig (kubelet's own, on a node): with it the host watches this
    /// node's pods in the Kubernetes API, sends a pod's batch the moment its
    /// last container started, and sends the pod's real spec (probes, ports,
    /// security context, service account). Unset: `BatchWindow` alone.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name in Kubernetes (`spec.nodeName` of its pods); default:
    /// the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Prometheus `/metrics` and `/healthz` on this TCP address (off when unset).
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    #[serde(default)]
    pub extensions: Option<ExtensionsSection>,
    /// A local CRI runtime (containerd, CRI-O) beside interLink: pods whose
    /// runtime handler is not `CRI.RuntimeHandler` are forwarded to it (see
    /// [`crate::forward`]). Unset: every pod is offloaded.
    #[serde(default)]
    pub local_runtime: Option<LocalRuntimeSection>,
}

/// `LocalRuntime`: where pods that are not interLink's go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LocalRuntimeSection {
    /// The local runtime's CRI socket (`unix://` prefix accepted), e.g.
    /// `unix:///run/containerd/containerd.sock`.
    pub endpoint: String,
    /// Runtime handlers forwarded besides the default `""`. Unset: every
    /// handler other than `CRI.RuntimeHandler` is forwarded (the local runtime
    /// refuses those it does not know); set: any other handler is refused here.
    #[serde(default)]
    pub handlers: Option<Vec<String>>,
    /// Bound on a forwarded call whose caller set no deadline of its own.
    #[serde(default = "d_2m", deserialize_with = "de_dur")]
    pub request_timeout: Duration,
    /// Bound on connecting to the local runtime; a call for one of its pods
    /// fails `Unavailable` after it.
    #[serde(default = "d_2s", deserialize_with = "de_dur")]
    pub connect_timeout: Duration,
}

impl LocalRuntimeSection {
    /// The socket path without a `unix://` prefix.
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(
            self.endpoint
                .strip_prefix("unix://")
                .unwrap_or(&self.endpoint),
        )
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CriSection {
    /// The gRPC socket kubelet connects to (`unix://` prefix accepted).
    #[serde(default = "default_socket")]
    pub socket_path: String,
    /// Reported in `Status`; sandboxes asking for another handler are refused.
    #[serde(default = "default_handler")]
    pub runtime_handler: String,
    /// Bound on each interLink request.
    #[serde(default = "d_30s", deserialize_with = "de_dur")]
    pub request_timeout: Duration,
    /// Seeds' key, accepted and ignored: the host always serves CRI.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The streaming server (exec/attach/port-forward URLs): `host:port`, port 0
    /// for an ephemeral one.
    #[serde(default = "default_streaming_address")]
    pub streaming_address: SocketAddr,
    /// Exec/attach/port-forward sessions at once; more are refused (HTTP 429).
    #[serde(default = "default_max_streams")]
    pub max_streaming_sessions: usize,
    /// A session with no traffic either way for this long is closed.
    #[serde(default = "d_4h", deserialize_with = "de_dur")]
    pub stream_idle_timeout: Duration,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TlsSection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default, rename = "CACertFile")]
    pub ca_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ExtensionsSection {
    pub dir: PathBuf,
    #[serde(default = "d_10ms", deserialize_with = "de_dur")]
    pub call_timeout: Duration,
    #[serde(default = "default_mem")]
    pub memory_limit_bytes: usize,
    #[serde(default)]
    pub admission_fail_open: bool,
}

fn default_streaming_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_max_streams() -> usize {
    128
}
fn d_4h() -> Duration {
    Duration::from_secs(4 * 3600)
}

impl Default for CriSection {
    fn default() -> Self {
        CriSection {
            socket_path: default_socket(),
            runtime_handler: default_handler(),
            request_timeout: d_30s(),
            enabled: None,
            streaming_address: default_streaming_address(),
            max_streaming_sessions: default_max_streams(),
            stream_idle_timeout: d_4h(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("defaults")
    }
}

fn default_socket() -> String {
    "/var/run/interlink/cri.sock".into()
}
fn default_handler() -> String {
    "interlink".into()
}
fn default_data_root() -> PathBuf {
    PathBuf::from("/var/lib/interlink-cri")
}
fn default_cgroup_driver() -> String {
    "cgroupfs".into()
}
fn default_mem() -> usize {
    16 << 20
}
fn d_10ms() -> Duration {
    Duration::from_millis(10)
}
fn d_50ms() -> Duration {
    Duration::from_millis(50)
}
fn d_1s() -> Duration {
    Duration::from_secs(1)
}
fn d_5s() -> Duration {
    Duration::from_secs(5)
}
fn d_2s() -> Duration {
    Duration::from_secs(2)
}
fn d_2m() -> Duration {
    Duration::from_secs(120)
}
fn d_30s() -> Duration {
    Duration::from_secs(30)
}
fn d_60s() -> Duration {
    Duration::from_secs(60)
}

fn de_dur<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(u64),
    }
    match V::deserialize(d)? {
        V::N(n) => Ok(Duration::from_secs(n)),
        V::S(s) => humantime::parse_duration(s.trim())
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}"))),
    }
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(u16),
    }
    match Option::<V>::deserialize(d)? {
        None => Ok(None),
        Some(V::N(n)) => Ok(Some(n)),
        Some(V::S(s)) if s.trim().is_empty() => Ok(None),
        Some(V::S(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid port {s:?}"))),
    }
}

impl Config {
    /// Parse a YAML document (`path` only names it in errors).
    pub fn from_yaml(text: &str, path: &str) -> Result<Config, ConfigError> {
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.into(),
                msg: e.to_string(),
            })?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            return Err(ConfigError::Invalid(format!(
                "CgroupDriver must be cgroupfs or systemd, not {:?}",
                self.cgroup_driver
            )));
        }
        if let Some(m) = &self.empty_dir_mode
            && !matches!(m.as_str(), "emptyDir" | "hostPath")
        {
            return Err(ConfigError::Invalid(format!(
                "EmptyDirMode must be emptyDir or hostPath, not {m:?}"
            )));
        }
        if self.cri.runtime_handler.is_empty() {
            return Err(ConfigError::Invalid(
                "CRI.RuntimeHandler must not be empty".into(),
            ));
        }
        if self.status_interval.is_zero() || self.ping_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "StatusInterval and PingInterval must be > 0".into(),
            ));
        }
        if let Some(a) = &self.interlink_address
            && !(a.starts_with("http://") || a.starts_with("https://") || a.starts_with("unix://"))
        {
            return Err(ConfigError::Invalid(format!(
                "InterlinkAddress must start with http://, https:// or unix://, not {a:?}"
            )));
        }
        if let Some(c) = &self.pod_cidr {
            crate::network::Cidr::parse(c)
                .map_err(|e| ConfigError::Invalid(format!("PodCIDR: {e}")))?;
        }
        if let Some(l) = &self.local_runtime {
            if !l.endpoint.starts_with("unix://") && !l.endpoint.starts_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "LocalRuntime.Endpoint must be a Unix socket (unix:///path), not {:?}",
                    l.endpoint
                )));
            }
            if l.socket_path() == self.socket_path() {
                return Err(ConfigError::Invalid(
                    "LocalRuntime.Endpoint is CRI.SocketPath itself: calls would loop".into(),
                ));
            }
            if l.handlers
                .iter()
                .flatten()
                .any(|h| *h == self.cri.runtime_handler)
            {
                return Err(ConfigError::Invalid(format!(
                    "LocalRuntime.Handlers lists {:?}, which is CRI.RuntimeHandler (offloaded)",
                    self.cri.runtime_handler
                )));
            }
        }
        if self.tls.enabled && (self.tls.cert_file.is_some() != self.tls.key_file.is_some()) {
            return Err(ConfigError::Invalid(
                "TLS.CertFile and TLS.KeyFile go together".into(),
            ));
        }
        Ok(())
    }

    /// The socket path without a `unix://` prefix.
    pub fn socket_path(&self) -> PathBuf {
        let s = self
            .cri
            .socket_path
            .strip_prefix("unix://")
            .unwrap_or(&self.cri.socket_path);
        PathBuf::from(s)
    }

    /// Do emptyDir volumes map to kubelet's own directory (`hostPath`)?
    pub fn empty_dir_host_path(&self) -> bool {
        match self.empty_dir_mode.as_deref() {
            Some(m) => m == "hostPath",
            None => self.embedded(),
        }
    }

    /// Does the host run its embedded API server and local plugin?
    pub fn embedded(&self) -> bool {
        self.interlink_address.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_example_parses() {
        let y = r#"
InterlinkAddress: "https://interlink-api.example.com"
Interlinkport: "8080"
CRI:
  SocketPath: "unix:///var/run/interlink/cri.sock"
  RuntimeHandler: "interlink"
  RequestTimeout: "15m"
TLS:
  Enabled: true
  CertFile: "/etc/interlink/cri/tls/client.crt"
  KeyFile: "/etc/interlink/cri/tls/client.key"
  CACertFile: "/etc/interlink/cri/tls/ca.crt"
VerboseLogging: true
ErrorsOnlyLogging: false
DataRootFolder: "/var/lib/interlink-cri"
PluginConfig:
  SLURM_PARTITION: "gpu"
"#;
        let c = Config::from_yaml(y, "t").unwrap();
        assert_eq!(c.interlink_port, Some(8080));
        assert_eq!(c.cri.request_timeout, Duration::from_secs(900));
        assert_eq!(
            c.socket_path(),
            PathBuf::from("/var/run/interlink/cri.sock")
        );
        assert_eq!(c.plugin_config["SLURM_PARTITION"], "gpu");
        assert!(!c.embedded());
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cri");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("cri-") && name.ends_with(".yaml") {
                let c = Config::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
                if name == "cri-forward.yaml" {
                    assert!(c.local_runtime.is_some(), "{name}");
                }
                n += 1;
            }
        }
        assert!(n >= 4, "only {n} examples in {}", dir.display());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_yaml("Bogus: 1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Bogus"), "{e}");
        let e = Config::from_yaml("CRI:\n  SockPath: x\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SockPath"), "{e}");
    }

    #[test]
    fn defaults_and_bad_values() {
        let c = Config::from_yaml("", "t").unwrap();
        assert!(c.embedded());
        // the embedded local plugin runs here: init -> main data through emptyDir works
        assert!(c.empty_dir_host_path());
        let remote = Config::from_yaml("InterlinkAddress: http://x\n", "t").unwrap();
        assert!(!remote.empty_dir_host_path());
        let forced =
            Config::from_yaml("InterlinkAddress: http://x\nEmptyDirMode: hostPath\n", "t").unwrap();
        assert!(forced.empty_dir_host_path());
        assert!(Config::from_yaml("EmptyDirMode: tmpfs\n", "t").is_err());
        assert_eq!(c.status_interval, Duration::from_secs(1));
        assert_eq!(c.cri.runtime_handler, "interlink");
        assert!(Config::from_yaml("StatusInterval: soon\n", "t").is_err());
        assert!(Config::from_yaml("CgroupDriver: x\n", "t").is_err());
        assert!(Config::from_yaml("InterlinkAddress: ftp://x\n", "t").is_err());
        assert!(Config::from_yaml("PodCIDR: 10.0.0.0\n", "t").is_err());
        assert!(c.local_runtime.is_none());
        let fwd = Config::from_yaml(
            "LocalRuntime:\n  Endpoint: unix:///run/containerd/containerd.sock\n",
            "t",
        )
        .unwrap();
        let l = fwd.local_runtime.unwrap();
        assert_eq!(
            l.socket_path(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(l.handlers, None);
        assert!(Config::from_yaml("LocalRuntime:\n  Endpoint: http://x:1\n", "t").is_err());
        let e = Config::from_yaml(
            "CRI:\n  SocketPath: /a.sock\nLocalRuntime:\n  Endpoint: unix:///a.sock\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("loop"), "{e}");
        assert!(
            Config::from_yaml(
                "LocalRuntime:\n  Endpoint: /c.sock\n  Handlers: [interlink]\n",
                "t"
            )
            .is_err()
        );
        assert_eq!(
            Config::from_yaml("PodCIDR: 10.9.0.0/24\n", "t")
                .unwrap()
                .pod_cidr
                .as_deref(),
            Some("10.9.0.0/24")
        );
    }
}
