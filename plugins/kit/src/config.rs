//! The plugin config file: YAML with the kit's common keys at the top level and
//! the plugin's own keys in one section named after it (`local:`, `slurm:`,
//! `docker:`). Unknown keys are errors that name the key.
//!
//! ```yaml
//! listen: unix:///run/interlink/plugin.sock   # or 127.0.0.1:4000
//! data_root: /var/lib/interlink-slurm
//! log: info                                   # a tracing filter
//! log_format: text                            # or json
//! max_body_bytes: 33554432
//! drain_timeout_seconds: 10
//! header_read_timeout_seconds: 10             # a request head must arrive in time
//! body_read_timeout_seconds: 60               # a whole request body must arrive in time (408)
//! idle_timeout_seconds: 90                    # kept-alive connection without a request
//! max_connections: 0                          # 0: half the file descriptor limit
//! slurm:                                      # the plugin's section
//!   partition: debug
//! ```
//!
//! Precedence, highest first: command-line flags, environment
//! (`INTERLINK_PLUGIN_*`), this file, defaults (see [`crate::cli`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use interlink::server::connections::ConnectionLimits;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A plugin's own settings: the section `SECTION` of the config file. Use
/// `#[serde(deny_unknown_fields, default)]` on it so a typo is an error.
pub trait PluginSettings: DeserializeOwned + Default + Send + Sync + 'static {
    /// Key of the plugin's section in the config file.
    const SECTION: &'static str;
}

/// For a plugin without settings of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl PluginSettings for NoSettings {
    const SECTION: &'static str = "plugin";
}

/// Output format of the plugin's own log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The keys every plugin understands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommonConfig {
    /// `unix:///path`, `host:port` or `http://host:port`.
    pub listen: Option<String>,
    /// Where the plugin keeps its state.
    pub data_root: Option<PathBuf>,
    /// A `tracing` filter such as `info` or `interlink_plugin_local=debug`.
    pub log: Option<String>,
    pub log_format: LogFormat,
    pub max_body_bytes: Option<usize>,
    pub drain_timeout_seconds: Option<u64>,
    /// Time for a request head to arrive on a new connection (or from the first
    /// byte of a later request); a connection that sends nothing is closed then.
    pub header_read_timeout_seconds: Option<f64>,
    /// Time for a whole request body to arrive after its head (408 after it).
    pub body_read_timeout_seconds: Option<f64>,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: Option<f64>,
    /// Connections open at once (0: half the file descriptor limit).
    pub max_connections: Option<usize>,
}

impl CommonConfig {
    /// The connection bounds set here, over the defaults; a key that is not a
    /// positive number of seconds is an error naming it.
    pub fn connection_limits(&self) -> Result<ConnectionLimits, ConfigError> {
        let mut l = ConnectionLimits::default();
        let secs = |key: &str, v: Option<f64>, into: &mut Duration| {
            if let Some(v) = v {
                if !(v > 0.0 && v <= 1e9) {
                    return Err(ConfigError::Invalid {
                        origin: "common keys".into(),
                        message: format!("{key} must be a positive number of seconds, got {v}"),
                    });
                }
                *into = Duration::from_secs_f64(v);
            }
            Ok(())
        };
        secs(
            "header_read_timeout_seconds",
            self.header_read_timeout_seconds,
            &mut l.header_read_timeout,
        )?;
        secs(
            "body_read_timeout_seconds",
            self.body_read_timeout_seconds,
            &mut l.body_read_timeout,
        )?;
        secs(
            "idle_timeout_seconds",
            self.idle_timeout_seconds,
            &mut l.idle_timeout,
        )?;
        if let Some(n) = self.max_connections.filter(|n| *n > 0) {
            l.max_connections = n;
        }
        Ok(l)
    }
}

/// A loaded config file.
#[derive(Debug, Clone, Default)]
pub struct Config<T> {
    pub common: CommonConfig,
    pub plugin: T,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Read and parse a config file.
pub fn load<T: PluginSettings>(path: &Path) -> Result<Config<T>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse config text; `origin` names it in errors.
pub fn parse<T: PluginSettings>(text: &str, origin: &str) -> Result<Config<T>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut map = match doc {
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err(invalid("the top level must be a mapping of keys".into())),
    };
    let plugin = match map.remove(T::SECTION) {
        None | Some(serde_yaml::Value::Null) => T::default(),
        Some(v) => serde_yaml::from_value(v)
            .map_err(|e| invalid(format!("section `{}`: {e}", T::SECTION)))?,
    };
    let common: CommonConfig =
        serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(|e| {
            invalid(format!(
                "{e} (a plugin's own keys go in its section `{}:`)",
                T::SECTION
            ))
        })?;
    Ok(Config { common, plugin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        partition: Option<String>,
        cpus: u32,
    }
    impl PluginSettings for Demo {
        const SECTION: &'static str = "demo";
    }

    #[test]
    fn sections_and_unknown_keys() {
        let c: Config<Demo> = parse(
            "listen: unix:///tmp/s\ndata_root: /d\ndemo:\n  partition: debug\n  cpus: 2\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.common.listen.as_deref(), Some("unix:///tmp/s"));
        assert_eq!(
            c.plugin,
            Demo {
                partition: Some("debug".into()),
                cpus: 2
            }
        );

        let e = parse::<Demo>("listn: x\n", "t").unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
        let e = parse::<Demo>("demo:\n  partiton: x\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("partiton") && e.contains("demo"), "{e}");
        let e = parse::<Demo>("- a\n", "t").unwrap_err().to_string();
        assert!(e.contains("mapping"), "{e}");

        let empty: Config<Demo> = parse("", "t").unwrap();
        assert_eq!(empty.plugin, Demo::default());
        let json: Config<Demo> = parse("log_format: json\n", "t").unwrap();
        assert_eq!(json.common.log_format, LogFormat::Json);
    }

    #[test]
    fn connection_limits() {
        let c: Config<Demo> = parse(
            "header_read_timeout_seconds: 0.5\nbody_read_timeout_seconds: 3\nidle_timeout_seconds: 7\nmax_connections: 12\n",
            "t",
        )
        .unwrap();
        let l = c.common.connection_limits().unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_millis(500));
        assert_eq!(l.body_read_timeout, Duration::from_secs(3));
        assert_eq!(l.idle_timeout, Duration::from_secs(7));
        assert_eq!(l.max_connections, 12);
        let d: Config<Demo> = parse("", "t").unwrap();
        assert_eq!(
            d.common.connection_limits().unwrap(),
            ConnectionLimits::default()
        );
        let bad: Config<Demo> = parse("body_read_timeout_seconds: 0\n", "t").unwrap();
        let e = bad.common.connection_limits().unwrap_err().to_string();
        assert!(e.contains("body_read_timeout_seconds"), "{e}");
    }
}
