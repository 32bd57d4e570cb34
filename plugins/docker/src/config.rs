//! The plugin's configuration file (YAML, upstream-style `PascalCase` keys).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the engine listens when neither the config nor `DOCKER_HOST` says.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The API version spoken to the engine: old enough for podman 4's compat API,
/// still accepted by current Docker.
pub const DEFAULT_API_VERSION: &str = "1.41";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Engine address: `unix:///path.sock`, `tcp://host:port` or `http://host:port`.
    /// Falls back to `DOCKER_HOST`, then [`DEFAULT_DOCKER_HOST`].
    #[serde(rename = "DockerHost", default)]
    pub docker_host: Option<String>,
    /// Engine API version to speak (`"1.41"`).
    #[serde(rename = "ApiVersion", default = "default_api_version")]
    pub api_version: String,
    /// Where volumes of each pod and the plugin's state live (`--data-root` wins).
    #[serde(rename = "DataRoot", default)]
    pub data_root: Option<PathBuf>,
    /// Address to listen on (`--listen` wins): `http://127.0.0.1:4000`, `unix:///path`.
    #[serde(rename = "Listen", default)]
    pub listen: Option<String>,
    /// Image of the container that holds a pod's namespaces (network, IPC, UTS).
    #[serde(rename = "InfraImage", default = "default_infra_image")]
    pub infra_image: String,
    /// Command of the infra container; empty = the image's own (`/pause`).
    #[serde(rename = "InfraCommand", default)]
    pub infra_command: Vec<String>,
    /// Network mode of the infra container (`none`, `bridge`, a network name).
    #[serde(rename = "NetworkMode", default = "default_network_mode")]
    pub network_mode: String,
    /// Longest an image pull may take.
    #[serde(rename = "PullTimeoutSeconds", default = "default_pull_timeout")]
    pub pull_timeout_seconds: u64,
    /// Longest any other engine request may take.
    #[serde(rename = "RequestTimeoutSeconds", default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Pods this plugin accepts, reported by ping.
    #[serde(rename = "MaxPods", default)]
    pub max_pods: Option<u64>,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}
fn default_infra_image() -> String {
    "registry.k8s.io/pause:3.10".to_string()
}
fn default_network_mode() -> String {
    "none".to_string()
}
fn default_pull_timeout() -> u64 {
    300
}
fn default_request_timeout() -> u64 {
    60
}

impl Default for Config {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("empty config")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("invalid config {path}: {err}")]
    Parse {
        path: PathBuf,
        err: serde_yaml::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.into(),
            err,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { err, .. } => ConfigError::Parse {
                path: path.into(),
                err,
            },
            e => e,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|err| ConfigError::Parse {
                path: PathBuf::new(),
                err,
            })?
        };
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        parse_api_version(&self.api_version).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "ApiVersion {:?} is not MAJOR.MINOR",
                self.api_version
            ))
        })?;
        if self.infra_image.trim().is_empty() {
            return Err(ConfigError::Invalid("InfraImage is empty".into()));
        }
        if let Some(h) = &self.docker_host {
            check_host(h).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// The engine address: config, then `DOCKER_HOST`, then the default socket.
    pub fn engine_host(&self) -> String {
        self.docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }
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
            "DockerHost {h:?}: expected unix:///path, tcp://host:port or http://host:port"
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
            "DockerHost: unix:///tmp/x.sock\nInfraImage: localhost/mini:latest\nInfraCommand: [sleep, '100']\n",
        )
        .unwrap();
        assert_eq!(c.engine_host(), "unix:///tmp/x.sock");
        assert_eq!(c.infra_command, vec!["sleep", "100"]);
    }

    #[test]
    fn bad_input_is_named() {
        let e = Config::parse("DockerHost: ftp://x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp://x"), "{e}");
        let e = Config::parse("Nope: 1\n").unwrap_err().to_string();
        assert!(e.contains("Nope"), "{e}");
        let e = Config::parse("ApiVersion: one\n").unwrap_err().to_string();
        assert!(e.contains("ApiVersion"), "{e}");
    }
}
