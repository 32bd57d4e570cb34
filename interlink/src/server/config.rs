//! The server's configuration: upstream's `InterLinkConfig.yaml` keys plus
//! what TLS client certificates, auth and limits need. Unknown keys are errors
//! that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::connections::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    default_max_connections,
};

/// Largest accepted value of a setting in seconds (about 31 years).
const MAX_SECONDS: f64 = 1e9;

/// The whole `InterLinkConfig.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `http://host`, `https://host` or `unix:///path.sock` to listen on.
    #[serde(rename = "InterlinkAddress")]
    pub interlink_address: String,
    /// TCP port (ignored for `unix://`); 0 picks a free one.
    #[serde(rename = "InterlinkPort", deserialize_with = "port")]
    pub interlink_port: u16,
    /// The plugin: `http://host` or `unix:///path.sock`.
    #[serde(rename = "SidecarURL")]
    pub sidecar_url: String,
    /// The plugin's TCP port (ignored for `unix://`).
    #[serde(rename = "SidecarPort", deserialize_with = "port")]
    pub sidecar_port: u16,
    #[serde(rename = "VerboseLogging")]
    pub verbose_logging: bool,
    #[serde(rename = "ErrorsOnlyLogging")]
    pub errors_only_logging: bool,
    /// Root of the per-pod paths handed to the plugin (emptyDirs).
    #[serde(rename = "DataRootFolder")]
    pub data_root_folder: String,
    #[serde(rename = "TLS")]
    pub tls: TlsConfig,
    /// Upstream's job script settings, handed to the plugin as `jobConfig`.
    #[serde(rename = "JobScriptBuildConfig")]
    pub job_script_build_config: Option<serde_yaml::Value>,
    // Keys existing sites still set in their InterLinkConfig.yaml (upstream's
    // current file, and the original README's file shared with the virtual
    // kubelet and the sidecars): each is taken with its documented meaning or
    // refused by `check` naming what replaced it.
    /// `docker` or `slurm`: the plugin's port is 4000 or 4001 when
    /// `SidecarPort` is not given (env `SIDECARSERVICE`).
    #[serde(rename = "SidecarService")]
    pub sidecar_service: Option<String>,
    /// The virtual kubelet's token file: not the server's business, ignored
    /// (`interlink-cri` reads `TokenFile`, env `VK_TOKEN_FILE`/`VKTOKENFILE`).
    #[serde(rename = "VKTokenFile")]
    pub vk_token_file: Option<String>,
    /// Export ConfigMaps and Secrets to the plugin: always done; `false` is refused.
    #[serde(rename = "ExportPodData")]
    pub export_pod_data: Option<bool>,
    /// Upstream's pprof server: accepted, not served (`Enabled: true` is logged).
    #[serde(rename = "Pprof")]
    pub pprof: Option<serde_yaml::Value>,
    /// Upstream's Go-template job script: an empty value is accepted; a path is
    /// refused, naming the Slurm plugin's `job_script_template` that replaces it.
    #[serde(rename = "JobScriptTemplate")]
    pub job_script_template: Option<String>,
    /// Sidecar keys of the original shared file, refused with their replacement.
    #[serde(rename = "SbatchPath")]
    pub sbatch_path: Option<serde_yaml::Value>,
    #[serde(rename = "ScancelPath")]
    pub scancel_path: Option<serde_yaml::Value>,
    #[serde(rename = "CommandPrefix")]
    pub command_prefix: Option<serde_yaml::Value>,
    #[serde(rename = "Auth")]
    pub auth: AuthConfig,
    /// Largest request body accepted (413 above it).
    #[serde(rename = "MaxBodyBytes")]
    pub max_body_bytes: usize,
    /// Time allowed to a plugin call (504 after it); not applied to log follow streams.
    #[serde(rename = "PluginTimeoutSeconds")]
    pub plugin_timeout_seconds: f64,
    /// How long shutdown waits for requests in flight.
    #[serde(rename = "ShutdownGraceSeconds")]
    pub shutdown_grace_seconds: f64,
    /// Time for a request head to arrive on a new connection (or from the first
    /// byte of a later request); a connection that sends nothing is closed then.
    #[serde(rename = "HeaderReadTimeoutSeconds")]
    pub header_read_timeout_seconds: f64,
    /// Time for a whole request body to arrive after its head (408 after it).
    /// Responses, such as followed logs, are not bounded.
    #[serde(rename = "BodyReadTimeoutSeconds")]
    pub body_read_timeout_seconds: f64,
    /// Time a kept-alive connection may wait for its next request.
    #[serde(rename = "IdleTimeoutSeconds")]
    pub idle_timeout_seconds: f64,
    /// Connections open at once; at the limit the longest idle one is closed
    /// to make room, or new ones wait. 0: half the file descriptor limit.
    #[serde(rename = "MaxConnections")]
    pub max_connections: usize,
    /// The plugin is known to speak HTTP/2 without TLS (this project's plugin
    /// kit, e.g. the embedded local plugin): all calls to it, log follows
    /// included, share one connection. Not a file key: set by who embeds the
    /// server.
    #[serde(skip)]
    pub plugin_http2_prior_knowledge: bool,
}

impl ServerConfig {
    /// The plugin port a `SidecarService` implies.
    pub fn sidecar_service_port(service: &str) -> Result<u16, ConfigError> {
        match service.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(4000),
            "slurm" => Ok(4001),
            other => Err(ConfigError(format!(
                "SidecarService {other:?}: only \"docker\" (port 4000) or \"slurm\" (port 4001); \
                 or set SidecarPort"
            ))),
        }
    }

    /// Refuse legacy keys that have no meaning here, naming what replaced them.
    fn check_legacy(&self) -> Result<(), ConfigError> {
        let moved = |key: &str, instead: &str| {
            ConfigError(format!(
                "{key} is a Slurm sidecar setting of the original interLink config; \
                 it belongs to interlink-slurm's config file now: {instead}"
            ))
        };
        if self.sbatch_path.is_some() {
            return Err(moved("SbatchPath", "`sbatch: /path/to/sbatch`"));
        }
        if self.scancel_path.is_some() {
            return Err(moved("ScancelPath", "`scancel: /path/to/scancel`"));
        }
        if self.command_prefix.is_some() {
            return Err(moved(
                "CommandPrefix",
                "no shell prefix is run outside the container; use `extra_flags` for \
                 #SBATCH flags or the container's own command",
            ));
        }
        if self.export_pod_data == Some(false) {
            return Err(ConfigError(
                "ExportPodData: false is not supported: ConfigMaps and Secrets a pod \
                 references are always handed to the plugin (remove the key)"
                    .into(),
            ));
        }
        if self
            .job_script_template
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
        {
            return Err(ConfigError(
                "JobScriptTemplate is not rendered by this server (upstream's Go template \
                 prints pod fields into the script unquoted): the Slurm plugin writes the job \
                 script; move the template to interlink-slurm's config as \
                 `job_script_template: /path` (placeholders such as {{ .Job }}, \
                 {{ .SbatchFlags }}, {{ .Pod.Name }}; values are shell-quoted) and set \
                 JobScriptTemplate: \"\" here"
                    .into(),
            ));
        }
        if let Some(s) = &self.sidecar_service {
            Self::sidecar_service_port(s)?;
        }
        Ok(())
    }
}

/// `TLS:` — serve HTTPS, optionally verifying client certificates.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    #[serde(rename = "Enabled")]
    pub enabled: bool,
    #[serde(rename = "CertFile")]
    pub cert_file: Option<PathBuf>,
    #[serde(rename = "KeyFile")]
    pub key_file: Option<PathBuf>,
    /// CA bundle that client certificates are verified against.
    #[serde(rename = "CACertFile")]
    pub ca_cert_file: Option<PathBuf>,
    /// Refuse clients without a valid certificate (default: true when
    /// `CACertFile` is set).
    #[serde(rename = "RequireClientCert")]
    pub require_client_cert: Option<bool>,
}

/// `Auth:` — who may call the API. Nothing set: no authentication.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Static bearer tokens, one per line (`TOKEN [NAME]`, `#` comments),
    /// reloaded when the file changes.
    #[serde(rename = "TokensFile")]
    pub tokens_file: Option<PathBuf>,
    #[serde(rename = "OIDC")]
    pub oidc: Option<OidcConfig>,
}

/// `Auth.OIDC:` — JWTs signed by an identity provider.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// Expected `iss`; also where `/.well-known/openid-configuration` is
    /// fetched when neither `JWKSFile` nor `JWKSURL` is set.
    #[serde(rename = "Issuer")]
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    #[serde(rename = "Audiences", deserialize_with = "one_or_many")]
    pub audiences: Vec<String>,
    /// A JWKS document on disk, reloaded when it changes.
    #[serde(rename = "JWKSFile")]
    pub jwks_file: Option<PathBuf>,
    /// Where to fetch the JWKS.
    #[serde(rename = "JWKSURL")]
    pub jwks_url: Option<String>,
    /// CA bundle for fetching from the issuer over https (default: webpki roots).
    #[serde(rename = "CACertFile")]
    pub ca_cert_file: Option<PathBuf>,
    /// Subjects (`sub`) allowed to call; with `AllowedGroups` empty too, every
    /// valid token is allowed.
    #[serde(rename = "AllowedSubjects")]
    pub allowed_subjects: Vec<String>,
    /// Groups allowed to call (from the `GroupsClaim` claim).
    #[serde(rename = "AllowedGroups")]
    pub allowed_groups: Vec<String>,
    #[serde(rename = "GroupsClaim")]
    pub groups_claim: String,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(rename = "LeewaySeconds")]
    pub leeway_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            interlink_address: "http://127.0.0.1".into(),
            interlink_port: 3000,
            sidecar_url: "http://127.0.0.1".into(),
            sidecar_port: 4000,
            verbose_logging: false,
            errors_only_logging: false,
            data_root_folder: "/var/lib/interlink".into(),
            tls: TlsConfig::default(),
            job_script_build_config: None,
            sidecar_service: None,
            vk_token_file: None,
            export_pod_data: None,
            pprof: None,
            job_script_template: None,
            sbatch_path: None,
            scancel_path: None,
            command_prefix: None,
            auth: AuthConfig::default(),
            max_body_bytes: 32 * 1024 * 1024,
            plugin_timeout_seconds: 30.0,
            shutdown_grace_seconds: 10.0,
            header_read_timeout_seconds: DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64(),
            body_read_timeout_seconds: DEFAULT_BODY_READ_TIMEOUT.as_secs_f64(),
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT.as_secs_f64(),
            max_connections: 0,
            plugin_http2_prior_knowledge: false,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// Read a YAML file; an unknown key is an error naming it.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_yaml_str(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parse YAML text (an empty document gives the defaults).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut cfg: ServerConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        // SidecarService picks the port only when SidecarPort is not given
        if let Some(service) = &cfg.sidecar_service {
            let raw: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
            if raw.get("SidecarPort").is_none() {
                cfg.sidecar_port = Self::sidecar_service_port(service)?;
            }
        }
        Ok(cfg)
    }

    /// Apply the environment overrides (see [`ServerConfig::apply_env_from`]).
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env_from(|k| std::env::var(k).ok())
    }

    /// Apply overrides from `get(name)`: upstream's `INTERLINKURL`,
    /// `INTERLINKPORT`, `SIDECARURL`, `SIDECARPORT`, and `INTERLINK_VERBOSE_LOGGING`,
    /// `INTERLINK_ERRORS_ONLY_LOGGING`, `INTERLINK_DATA_ROOT_FOLDER`,
    /// `INTERLINK_TOKENS_FILE`, `INTERLINK_MAX_BODY_BYTES`,
    /// `INTERLINK_PLUGIN_TIMEOUT_SECONDS`.
    pub fn apply_env_from(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let parse_port = |k: &str, v: String| {
            v.trim()
                .parse::<u16>()
                .map_err(|_| ConfigError(format!("{k}={v:?} is not a port number")))
        };
        let parse_bool = |k: &str, v: String| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" | "" => Ok(false),
            _ => Err(ConfigError(format!("{k}={v:?} is not a boolean"))),
        };
        if let Some(v) = get("INTERLINKURL") {
            self.interlink_address = v;
        }
        if let Some(v) = get("INTERLINKPORT") {
            self.interlink_port = parse_port("INTERLINKPORT", v)?;
        }
        if let Some(v) = get("SIDECARURL") {
            self.sidecar_url = v;
        }
        if let Some(v) = get("SIDECARSERVICE") {
            // the original README: the service's port unless SIDECARPORT is set
            self.sidecar_port = Self::sidecar_service_port(&v)?;
            self.sidecar_service = Some(v);
        }
        if let Some(v) = get("SIDECARPORT") {
            self.sidecar_port = parse_port("SIDECARPORT", v)?;
        }
        if let Some(v) = get("INTERLINK_VERBOSE_LOGGING") {
            self.verbose_logging = parse_bool("INTERLINK_VERBOSE_LOGGING", v)?;
        }
        if let Some(v) = get("INTERLINK_ERRORS_ONLY_LOGGING") {
            self.errors_only_logging = parse_bool("INTERLINK_ERRORS_ONLY_LOGGING", v)?;
        }
        if let Some(v) = get("INTERLINK_DATA_ROOT_FOLDER") {
            self.data_root_folder = v;
        }
        if let Some(v) = get("INTERLINK_TOKENS_FILE") {
            self.auth.tokens_file = (!v.is_empty()).then(|| v.into());
        }
        if let Some(v) = get("INTERLINK_MAX_BODY_BYTES") {
            self.max_body_bytes = v.trim().parse().map_err(|_| {
                ConfigError(format!("INTERLINK_MAX_BODY_BYTES={v:?} is not a number"))
            })?;
        }
        if let Some(v) = get("INTERLINK_PLUGIN_TIMEOUT_SECONDS") {
            self.plugin_timeout_seconds = v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "INTERLINK_PLUGIN_TIMEOUT_SECONDS={v:?} is not a number"
                ))
            })?;
        }
        Ok(())
    }

    /// Check what serde cannot: consistent TLS, auth and limits.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_legacy()?;
        let https = self.interlink_address.starts_with("https://");
        if (self.tls.enabled || https)
            && (self.tls.cert_file.is_none() || self.tls.key_file.is_none())
        {
            return Err(ConfigError("TLS needs TLS.CertFile and TLS.KeyFile".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError("MaxBodyBytes must be positive".into()));
        }
        // both become Durations: above MAX_SECONDS they would not fit
        if self.plugin_timeout_seconds.is_nan()
            || self.plugin_timeout_seconds <= 0.0
            || self.plugin_timeout_seconds > MAX_SECONDS
        {
            return Err(ConfigError(format!(
                "PluginTimeoutSeconds must be a positive number of at most {MAX_SECONDS}"
            )));
        }
        if self.shutdown_grace_seconds.is_nan()
            || self.shutdown_grace_seconds < 0.0
            || self.shutdown_grace_seconds > MAX_SECONDS
        {
            return Err(ConfigError(format!(
                "ShutdownGraceSeconds must be between 0 and {MAX_SECONDS}"
            )));
        }
        for (key, v) in [
            ("HeaderReadTimeoutSeconds", self.header_read_timeout_seconds),
            ("BodyReadTimeoutSeconds", self.body_read_timeout_seconds),
            ("IdleTimeoutSeconds", self.idle_timeout_seconds),
        ] {
            if v.is_nan() || v <= 0.0 || v > MAX_SECONDS {
                return Err(ConfigError(format!(
                    "{key} must be a positive number of at most {MAX_SECONDS}"
                )));
            }
        }
        if let Some(o) = &self.auth.oidc {
            if o.issuer.is_empty() {
                return Err(ConfigError("Auth.OIDC.Issuer is required".into()));
            }
            if o.audiences.is_empty() {
                return Err(ConfigError(
                    "Auth.OIDC.Audiences needs at least one audience".into(),
                ));
            }
        }
        Ok(())
    }

    /// The bounds on client connections (after [`ServerConfig::check`]).
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs_f64(self.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs_f64(self.body_read_timeout_seconds),
            idle_timeout: Duration::from_secs_f64(self.idle_timeout_seconds),
            max_connections: match self.max_connections {
                0 => default_max_connections(),
                n => n,
            },
        }
    }

    /// Is any authentication configured?
    pub fn auth_enabled(&self) -> bool {
        self.auth.tokens_file.is_some() || self.auth.oidc.is_some()
    }
}

/// A port written as a number or as a string (upstream writes `"3000"`).
fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(u64),
        S(String),
    }
    let n = match P::deserialize(d)? {
        P::N(n) => n,
        // upstream's unix-socket examples write `InterlinkPort: ""`
        P::S(s) if s.trim().is_empty() => 0,
        P::S(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| serde::de::Error::custom(format!("port {s:?} is not a number")))?,
    };
    u16::try_from(n).map_err(|_| serde::de::Error::custom(format!("port {n} is out of range")))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        One(String),
        Many(Vec<String>),
    }
    Ok(match V::deserialize(d)? {
        V::One(s) => vec![s],
        V::Many(v) => v,
    })
}

impl OidcConfig {
    /// The claim groups are read from (`groups` unless set).
    pub fn groups_claim(&self) -> &str {
        if self.groups_claim.is_empty() {
            "groups"
        } else {
            &self.groups_claim
        }
    }

    /// The leeway on `exp`/`nbf` (30 s unless set).
    pub fn leeway(&self) -> u64 {
        if self.leeway_seconds == 0 {
            30
        } else {
            self.leeway_seconds
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of upstream's `InterLinkConfig` (its `config.go`) loads as
    /// written: `Pprof` enabled (accepted, not served), an empty
    /// `JobScriptTemplate`, a `JobScriptBuildConfig`; a template path is refused
    /// naming the Slurm plugin's key that replaces it.
    #[test]
    fn upstream_keys_load_as_written() {
        let cfg = ServerConfig::from_yaml_str(
            r#"
InterlinkAddress: "http://0.0.0.0"
InterlinkPort: "3000"
SidecarURL: "http://plugin"
SidecarPort: "4000"
VerboseLogging: true
ErrorsOnlyLogging: false
DataRootFolder: "~/.interlink"
JobScriptTemplate: ""
JobScriptBuildConfig:
  SingularityHubProxy: {server: "https://shub", master_token: "", cache_validity_seconds: 60}
  ApptainerOptions: {executable: /usr/bin/apptainer, fakeroot: false, containall: true,
    fuseMode: "", noInit: false, noHome: false, noPrivs: false, nvidiaSupport: true,
    cleanenv: true, unsquash: false}
  Volumes: {scratch_area: /scratch, apptainer_cachedir: /cache, image_dir: /images,
    additional_directories_in_path: [/opt/bin], fuse_sleep_seconds: 2}
Pprof:
  Enabled: true
  Address: "127.0.0.1"
  Port: "6061"
TLS:
  Enabled: false
"#,
        )
        .unwrap();
        cfg.check().unwrap();
        assert!(cfg.job_script_build_config.is_some() && cfg.pprof.is_some());

        let with_template =
            ServerConfig::from_yaml_str("SidecarURL: http://p\nJobScriptTemplate: /etc/job.tmpl\n")
                .unwrap();
        let e = with_template.check().unwrap_err().to_string();
        assert!(
            e.contains("JobScriptTemplate") && e.contains("job_script_template"),
            "{e}"
        );

        // upstream's own sample files, when its source is on this machine
        for f in [
            "/tmp/up/interLink/ci/manifests/interlink-config.yaml",
            "/tmp/up/interLink/scripts/interlink-config.yaml",
        ] {
            if std::path::Path::new(f).exists() {
                let c = ServerConfig::from_yaml_file(f).unwrap_or_else(|e| panic!("{f}: {e}"));
                c.check().unwrap_or_else(|e| panic!("{f}: {e}"));
                assert_eq!(c.sidecar_port, 4000);
            }
        }
    }

    #[test]
    fn upstream_file_parses() {
        let cfg = ServerConfig::from_yaml_str(
            r#"
InterlinkAddress: "http://0.0.0.0"
InterlinkPort: "3000"
SidecarURL: "unix:///var/run/.plugin.sock"
SidecarPort: "0"
VerboseLogging: true
ErrorsOnlyLogging: false
DataRootFolder: "/tmp/il"
TLS:
  Enabled: true
  CertFile: /etc/tls/server.crt
  KeyFile: /etc/tls/server.key
  CACertFile: /etc/tls/ca.crt
Auth:
  TokensFile: /etc/interlink/tokens
  OIDC:
    Issuer: https://idp.example
    Audiences: interlink
    JWKSFile: /etc/interlink/jwks.json
    AllowedGroups: [offload]
"#,
        )
        .unwrap();
        assert_eq!(cfg.interlink_port, 3000);
        assert_eq!(cfg.sidecar_port, 0);
        assert!(cfg.tls.enabled);
        assert_eq!(cfg.auth.oidc.as_ref().unwrap().audiences, vec!["interlink"]);
        assert_eq!(cfg.auth.oidc.as_ref().unwrap().groups_claim(), "groups");
        cfg.check().unwrap();
    }

    #[test]
    fn out_of_range_durations_are_refused() {
        for (key, bad) in [
            ("PluginTimeoutSeconds", "1e30"),
            ("PluginTimeoutSeconds", "0"),
            ("PluginTimeoutSeconds", ".inf"),
            ("ShutdownGraceSeconds", "1e30"),
            ("ShutdownGraceSeconds", "-1"),
            ("ShutdownGraceSeconds", ".nan"),
            ("HeaderReadTimeoutSeconds", "0"),
            ("BodyReadTimeoutSeconds", "-2"),
            ("IdleTimeoutSeconds", ".inf"),
        ] {
            let cfg = ServerConfig::from_yaml_str(&format!("{key}: {bad}\n")).unwrap();
            let err = cfg.check().unwrap_err();
            assert!(err.0.contains(key), "{key}: {bad}: {err}");
        }
        let cfg = ServerConfig::from_yaml_str("PluginTimeoutSeconds: 3600\n").unwrap();
        cfg.check().unwrap();
    }

    #[test]
    fn connection_limits() {
        let d = ServerConfig::default().connection_limits();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.body_read_timeout, Duration::from_secs(60));
        assert!(d.max_connections >= 16);
        let cfg = ServerConfig::from_yaml_str(
            "HeaderReadTimeoutSeconds: 0.5\nBodyReadTimeoutSeconds: 2\nIdleTimeoutSeconds: 30\nMaxConnections: 64\n",
        )
        .unwrap();
        cfg.check().unwrap();
        let l = cfg.connection_limits();
        assert_eq!(l.header_read_timeout, Duration::from_millis(500));
        assert_eq!(l.body_read_timeout, Duration::from_secs(2));
        assert_eq!(l.idle_timeout, Duration::from_secs(30));
        assert_eq!(l.max_connections, 64);
        let err = ServerConfig::from_yaml_str("MaxConnection: 3\n").unwrap_err();
        assert!(err.0.contains("MaxConnection"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            ServerConfig::from_yaml_str("InterlinkPort: 3000\nSidecarPrt: 4000\n").unwrap_err();
        assert!(err.0.contains("SidecarPrt"), "{err}");
        let err = ServerConfig::from_yaml_str("TLS:\n  Enable: true\n").unwrap_err();
        assert!(err.0.contains("Enable"), "{err}");
        let err = ServerConfig::from_yaml_str("InterlinkPort: \"70000\"\n").unwrap_err();
        assert!(err.0.contains("70000"), "{err}");
    }

    #[test]
    fn env_overrides() {
        let mut cfg = ServerConfig::default();
        let env = |k: &str| match k {
            "INTERLINKPORT" => Some("3999".to_string()),
            "SIDECARURL" => Some("unix:///tmp/p.sock".to_string()),
            "INTERLINK_VERBOSE_LOGGING" => Some("true".to_string()),
            _ => None,
        };
        cfg.apply_env_from(env).unwrap();
        assert_eq!(cfg.interlink_port, 3999);
        assert_eq!(cfg.sidecar_url, "unix:///tmp/p.sock");
        assert!(cfg.verbose_logging);
        let err = cfg
            .apply_env_from(|k| (k == "SIDECARPORT").then(|| "x".to_string()))
            .unwrap_err();
        assert!(err.0.contains("SIDECARPORT"));
    }
}
