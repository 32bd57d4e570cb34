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
//! slurm:                                      # the plugin's section
//!   partition: debug
//! ```
//!
//! Precedence, highest first: command-line flags, environment
//! (`INTERLINK_PLUGIN_*`), this file, defaults (see [`crate::cli`]).

use std::path::{Path, PathBuf};

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
}
