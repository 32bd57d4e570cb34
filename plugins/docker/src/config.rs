//! The plugin's own settings: the `docker:` section of the kit's config file.
//!
//! ```yaml
//! listen: 127.0.0.1:4000          # the kit's common keys
//! data_root: /var/lib/interlink-docker
//! docker:
//!   docker_host: unix:///run/podman/podman.sock   # else DOCKER_HOST, else /var/run/docker.sock
//!   infra_image: localhost/mini:latest
//!   infra_command: [sleep, "2147483647"]
//!   image_pull_policy: IfNotPresent
//!   # host-reaching pod settings, refused (400 naming the field) unless allowed:
//!   allow_privileged: false         # securityContext.privileged
//!   allowed_capabilities: []        # securityContext.capabilities.add (names, or ALL)
//!   allow_host_namespaces: false    # hostNetwork, hostPID, hostIPC
//!   allowed_host_paths: []          # hostPath volumes under these directories
//! ```

use interlink_plugin_kit::config::PluginSettings;
use serde::Deserialize;

/// Where the engine listens when neither the config nor `DOCKER_HOST` says.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The API version spoken to the engine: old enough for podman 4's compat API,
/// still accepted by current Docker.
pub const DEFAULT_API_VERSION: &str = "1.41";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Engine address: `unix:///path.sock`, `tcp://host:port` or `http://host:port`.
    /// Falls back to `DOCKER_HOST`, then [`DEFAULT_DOCKER_HOST`].
    #[serde(alias = "DockerHost")]
    pub docker_host: Option<String>,
    /// Engine API version to speak (`"1.41"`).
    pub api_version: String,
    /// Image of the container that holds a pod's namespaces (network, IPC, UTS).
    pub infra_image: String,
    /// Command of the infra container; empty = the image's own (`/pause`).
    pub infra_command: Vec<String>,
    /// Network mode of the infra container (`none`, `bridge`, a network name).
    pub network_mode: String,
    /// Pull policy for every container, overriding the pod's (`IfNotPresent` or
    /// `Never` suit sites whose images are made locally, without a registry).
    pub image_pull_policy: Option<String>,
    /// Longest an image pull may take.
    pub pull_timeout_seconds: u64,
    /// Longest any other engine request may take.
    pub request_timeout_seconds: u64,
    /// Pods this plugin accepts, reported by ping.
    pub max_pods: Option<u64>,
    /// Let pods run privileged containers (`securityContext.privileged: true`),
    /// which own the host. Off: such a pod is refused with a 400.
    pub allow_privileged: bool,
    /// Capabilities a container may add (`securityContext.capabilities.add`),
    /// without the `CAP_` prefix; `ALL` allows any. Others are refused with a 400.
    pub allowed_capabilities: Vec<String>,
    /// Let pods use the host's network, process or IPC namespace
    /// (`hostNetwork`, `hostPID`, `hostIPC`). Off: refused with a 400.
    pub allow_host_namespaces: bool,
    /// Directories under which pods may mount `hostPath` volumes (the real
    /// path, symlinks resolved, must lie under one). Empty: hostPath volumes
    /// are refused. Checked on this plugin's machine: the engine must be on it
    /// (a `unix://` socket).
    pub allowed_host_paths: Vec<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            docker_host: None,
            api_version: DEFAULT_API_VERSION.into(),
            infra_image: "registry.k8s.io/pause:3.10".into(),
            infra_command: vec![],
            network_mode: "none".into(),
            image_pull_policy: None,
            pull_timeout_seconds: 300,
            request_timeout_seconds: 60,
            max_pods: None,
            allow_privileged: false,
            allowed_capabilities: vec![],
            allow_host_namespaces: false,
            allowed_host_paths: vec![],
        }
    }
}

impl PluginSettings for Config {
    const SECTION: &'static str = "docker";
}

impl Config {
    /// Parse the `docker:` section alone (tests, tools).
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        parse_api_version(&self.api_version).ok_or_else(|| {
            format!(
                "docker.api_version {:?} is not MAJOR.MINOR",
                self.api_version
            )
        })?;
        if let Some(p) = &self.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&p.as_str())
        {
            return Err(format!(
                "docker.image_pull_policy {p:?}: expected Always, IfNotPresent or Never"
            ));
        }
        if let Some(p) = self.allowed_host_paths.iter().find(|p| !p.is_absolute()) {
            return Err(format!(
                "docker.allowed_host_paths: {} is not an absolute path",
                p.display()
            ));
        }
        if !self.allowed_host_paths.is_empty() && !self.engine_host().starts_with("unix://") {
            return Err(
                "docker.allowed_host_paths needs the engine on this machine (a unix:// docker_host)"
                    .into(),
            );
        }
        if self.infra_image.trim().is_empty() {
            return Err("docker.infra_image is empty".into());
        }
        check_host(&self.engine_host())
    }

    /// May a container add capability `cap` (`NET_ADMIN` or `CAP_NET_ADMIN`)?
    pub fn capability_allowed(&self, cap: &str) -> bool {
        let want = capability_name(cap);
        self.allowed_capabilities
            .iter()
            .map(|c| capability_name(c))
            .any(|c| c == "ALL" || c == want)
    }

    /// The engine address: config, then `DOCKER_HOST`, then the default socket.
    pub fn engine_host(&self) -> String {
        self.docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }
}

/// A capability's name as the engine takes it: upper case, no `CAP_` prefix.
pub fn capability_name(cap: &str) -> String {
    let c = cap.trim().to_ascii_uppercase();
    c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
}

/// `"1.41"` -> `(1, 41)`.
pub fn parse_api_version(v: &str) -> Option<(usize, usize)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Accept only the schemes the engine client speaks.
pub fn check_host(h: &str) -> Result<(), String> {
    if ["unix://", "tcp://", "http://"]
        .iter()
        .any(|p| h.starts_with(p))
    {
        Ok(())
    } else {
        Err(format!(
            "docker host {h:?}: expected unix:///path, tcp://host:port or http://host:port"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_keys() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.api_version, "1.41");
        assert_eq!(c.network_mode, "none");
        let c = Config::parse(
            "docker_host: unix:///tmp/x.sock\ninfra_image: localhost/mini:latest\ninfra_command: [sleep, '100']\n",
        )
        .unwrap();
        assert_eq!(c.engine_host(), "unix:///tmp/x.sock");
        assert_eq!(c.infra_command, vec!["sleep", "100"]);
        let c = Config::parse("DockerHost: tcp://h:2375\n").unwrap();
        assert_eq!(c.engine_host(), "tcp://h:2375");
        assert!(!c.allow_privileged && !c.allow_host_namespaces);
        assert!(!c.capability_allowed("NET_ADMIN"));
        let c = Config::parse("allowed_capabilities: [cap_net_admin, SYS_TIME]\n").unwrap();
        assert!(c.capability_allowed("NET_ADMIN"));
        assert!(c.capability_allowed("CAP_SYS_TIME"));
        assert!(!c.capability_allowed("SYS_ADMIN"));
        let c = Config::parse("allowed_capabilities: [ALL]\n").unwrap();
        assert!(c.capability_allowed("SYS_ADMIN"));
    }

    #[test]
    fn example_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/plugins/docker.yaml");
        let c = interlink_plugin_kit::config::load::<Config>(&path).unwrap();
        c.plugin.validate().unwrap();
        assert_eq!(c.plugin.infra_image, "localhost/mini:latest");
        assert_eq!(
            c.common.data_root.as_deref(),
            Some(std::path::Path::new("/var/lib/interlink-docker"))
        );
    }

    #[test]
    fn bad_input_is_named() {
        let e = Config::parse("docker_host: ftp://x\n").unwrap_err();
        assert!(e.contains("ftp://x"), "{e}");
        let e = Config::parse("nope: 1\n").unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = Config::parse("api_version: one\n").unwrap_err();
        assert!(e.contains("api_version"), "{e}");
        let e = Config::parse("image_pull_policy: Sometimes\n").unwrap_err();
        assert!(e.contains("Sometimes"), "{e}");
    }
}
