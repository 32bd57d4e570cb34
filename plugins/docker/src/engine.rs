//! The connection to the container engine (Docker or podman's compat API) and the
//! mapping of its failures to plugin errors.

use std::sync::Mutex;

use bollard::{ClientVersion, Docker};
use interlink_plugin_kit::PluginError;

use crate::config::{Config, parse_api_version};

/// A lazily (re)connected engine client. Creating the client fails while a Unix
/// socket is missing (engine stopped); the next call tries again.
pub struct Engine {
    host: String,
    version: ClientVersion,
    timeout_secs: u64,
    client: Mutex<Option<Docker>>,
}

impl Engine {
    pub fn new(config: &Config) -> Engine {
        let (major_version, minor_version) =
            parse_api_version(&config.api_version).unwrap_or((1, 41));
        Engine {
            host: config.engine_host(),
            version: ClientVersion {
                major_version,
                minor_version,
            },
            timeout_secs: config.request_timeout_seconds.max(1),
            client: Mutex::new(None),
        }
    }

    /// The engine's address, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A client, connecting now if needed.
    pub fn client(&self) -> Result<Docker, PluginError> {
        let mut g = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = g.as_ref() {
            return Ok(d.clone());
        }
        let d = if let Some(path) = self.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, self.timeout_secs, &self.version)
        } else {
            let h = self.host.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&h, self.timeout_secs, &self.version)
        }
        .map_err(|e| self.unavailable(&e))?;
        *g = Some(d.clone());
        Ok(d)
    }

    pub fn unavailable(&self, e: &dyn std::fmt::Display) -> PluginError {
        PluginError::Unavailable(format!(
            "container engine at {} is unreachable: {e}",
            self.host
        ))
    }

    /// Map an engine error: connection trouble -> 503, 404 -> not found, the
    /// engine refusing a request -> `refused` (422 for pod content, 500 otherwise).
    pub fn error(
        &self,
        what: &str,
        e: bollard::errors::Error,
        refused: fn(String) -> PluginError,
    ) -> PluginError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } => PluginError::NotFound(format!("{what}: {message}")),
            E::DockerResponseServerError {
                status_code,
                message,
            } if status_code < 500 => refused(format!("{what}: {message}")),
            E::DockerResponseServerError { message, .. } => refused(format!("{what}: {message}")),
            e if is_connection_error(&e) => self.unavailable(&format!("{what}: {e}")),
            e => PluginError::Internal(format!("{what}: {e}")),
        }
    }
}

/// Errors that mean "the engine is not there" rather than "the engine said no".
pub fn is_connection_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::SocketNotFoundError(_)
            | E::HyperLegacyError { .. }
            | E::HyperResponseError { .. }
            | E::IOError { .. }
            | E::RequestTimeoutError
    )
}

/// Is this the engine's "no such container/image" answer?
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
