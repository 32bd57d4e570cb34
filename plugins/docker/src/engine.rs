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
    raw: raw::RawClient,
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
            raw: raw::RawClient::new(
                &config.engine_host(),
                &format!("{major_version}.{minor_version}"),
                std::time::Duration::from_secs(config.request_timeout_seconds.max(1)),
            ),
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

    /// The JSON reader (list, inspect).
    pub fn raw(&self) -> &raw::RawClient {
        &self.raw
    }

    /// Map a failed JSON read.
    pub fn raw_error(&self, what: &str, e: raw::RawError) -> PluginError {
        match e {
            raw::RawError::Connect(m) => self.unavailable(&format!("{what}: {m}")),
            raw::RawError::Status {
                status: 404,
                message,
            } => PluginError::NotFound(format!("{what}: {message}")),
            e => PluginError::Internal(format!("{what}: {e}")),
        }
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

/// Plain JSON reads of the Engine API, for answers whose enums differ between
/// engines (podman's list reports states such as `stopped` that bollard's typed
/// models refuse). Same address and API version as the bollard client.
pub mod raw {
    use std::collections::HashMap;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use serde::Deserialize;

    #[derive(Debug, thiserror::Error)]
    pub enum RawError {
        /// The engine could not be reached (or did not answer in time).
        #[error("{0}")]
        Connect(String),
        /// The engine answered with an error status.
        #[error("engine answered {status}: {message}")]
        Status { status: u16, message: String },
        #[error("unexpected answer from the engine: {0}")]
        Decode(String),
    }

    impl RawError {
        pub fn is_not_found(&self) -> bool {
            matches!(self, RawError::Status { status: 404, .. })
        }
    }

    enum Transport {
        Unix(String, Client<hyperlocal::UnixConnector, Full<Bytes>>),
        Tcp(String, Client<HttpConnector, Full<Bytes>>),
    }

    pub struct RawClient {
        transport: Transport,
        version: String,
        timeout: Duration,
    }

    /// One container of a list answer.
    #[derive(Debug, Clone, Deserialize)]
    pub struct Summary {
        #[serde(rename = "Id")]
        pub id: String,
        #[serde(rename = "State", default)]
        pub state: String,
        #[serde(rename = "Labels", default)]
        pub labels: Option<HashMap<String, String>>,
    }

    /// The parts of an inspect answer the plugin reads.
    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct Inspect {
        #[serde(rename = "Id", default)]
        pub id: String,
        #[serde(rename = "Image", default)]
        pub image: String,
        #[serde(rename = "State", default)]
        pub state: Option<State>,
        #[serde(rename = "Config", default)]
        pub config: Option<ContainerConfig>,
        #[serde(rename = "NetworkSettings", default)]
        pub network: Option<NetworkSettings>,
    }

    /// The parts of a container's config that exec and attach read.
    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct ContainerConfig {
        #[serde(rename = "OpenStdin", default)]
        pub open_stdin: bool,
        #[serde(rename = "Tty", default)]
        pub tty: bool,
    }

    /// Where a container is reachable on the engine's networks.
    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct NetworkSettings {
        #[serde(rename = "IPAddress", default)]
        pub ip_address: Option<String>,
        #[serde(rename = "Networks", default)]
        pub networks: Option<HashMap<String, Endpoint>>,
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct Endpoint {
        #[serde(rename = "IPAddress", default)]
        pub ip_address: Option<String>,
    }

    impl NetworkSettings {
        /// The container's addresses, the default network's first.
        pub fn addresses(&self) -> Vec<String> {
            self.ip_address
                .iter()
                .chain(
                    self.networks
                        .iter()
                        .flat_map(|n| n.values())
                        .filter_map(|e| e.ip_address.as_ref()),
                )
                .filter(|a| !a.is_empty())
                .cloned()
                .collect()
        }
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    pub struct State {
        #[serde(rename = "Status", default)]
        pub status: String,
        #[serde(rename = "ExitCode", default)]
        pub exit_code: i64,
        #[serde(rename = "OOMKilled", default)]
        pub oom_killed: bool,
        #[serde(rename = "Error", default)]
        pub error: String,
        #[serde(rename = "StartedAt", default)]
        pub started_at: String,
        #[serde(rename = "FinishedAt", default)]
        pub finished_at: String,
        /// The main process on the engine's host (0 when not running).
        #[serde(rename = "Pid", default)]
        pub pid: i64,
    }

    impl State {
        /// Docker's state names; podman's transitional ones mapped onto them.
        pub fn normalized(&self) -> &str {
            normalize(&self.status)
        }
    }

    pub fn normalize(s: &str) -> &str {
        match s {
            "stopped" => "exited",
            "configured" | "initialized" => "created",
            s => s,
        }
    }

    impl RawClient {
        pub fn new(host: &str, version: &str, timeout: Duration) -> RawClient {
            let transport = if let Some(p) = host.strip_prefix("unix://") {
                Transport::Unix(
                    p.to_string(),
                    Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector),
                )
            } else {
                let base = host
                    .replacen("tcp://", "http://", 1)
                    .trim_end_matches('/')
                    .to_string();
                Transport::Tcp(base, Client::builder(TokioExecutor::new()).build_http())
            };
            RawClient {
                transport,
                version: version.to_string(),
                timeout,
            }
        }

        /// GET `/v<version><path>` and decode its JSON.
        pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RawError> {
            let full = format!("/v{}{}", self.version, path);
            let fut = async {
                let resp = match &self.transport {
                    Transport::Unix(sock, c) => {
                        let uri: hyper::Uri = hyperlocal::Uri::new(sock, &full).into();
                        c.get(uri).await
                    }
                    Transport::Tcp(base, c) => {
                        let uri: hyper::Uri = format!("{base}{full}")
                            .parse()
                            .map_err(|e| RawError::Connect(format!("{e}")))?;
                        c.get(uri).await
                    }
                }
                .map_err(|e| RawError::Connect(format!("{e:?}")))?;
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| RawError::Connect(e.to_string()))?
                    .to_bytes();
                if status >= 400 {
                    let message = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.get("message")
                                .and_then(|m| m.as_str())
                                .map(str::to_string)
                        })
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                    return Err(RawError::Status { status, message });
                }
                serde_json::from_slice(&body).map_err(|e| RawError::Decode(e.to_string()))
            };
            match tokio::time::timeout(self.timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(RawError::Connect(format!(
                    "no answer in {:?}",
                    self.timeout
                ))),
            }
        }

        /// Every container carrying label `label` (`key` or `key=value`).
        pub async fn list_labelled(&self, label: &str) -> Result<Vec<Summary>, RawError> {
            let filters = serde_json::json!({ "label": [label] }).to_string();
            self.get(&format!(
                "/containers/json?all=1&filters={}",
                urlencode(&filters)
            ))
            .await
        }

        pub async fn inspect(&self, id: &str) -> Result<Inspect, RawError> {
            self.get(&format!("/containers/{}/json", urlencode(id)))
                .await
        }
    }

    fn urlencode(s: &str) -> String {
        let mut o = String::with_capacity(s.len() * 2);
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                o.push(b as char);
            } else {
                o.push_str(&format!("%{b:02X}"));
            }
        }
        o
    }
}
