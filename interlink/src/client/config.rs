//! How to reach an interLink API server.

use std::path::PathBuf;
use std::time::Duration;

/// Where the API server is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host`, `https://host` or `unix:///path.sock`.
    pub address: String,
    /// Appended to an `http(s)` address when set; ignored for `unix://`.
    pub port: Option<u16>,
    /// Bearer token file, re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// PEM bundle to verify the server with (default: the webpki roots).
    pub ca_cert_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
    /// Whole-request timeout (not applied to follow streams).
    pub request_timeout: Duration,
    /// Connection establishment timeout.
    pub connect_timeout: Duration,
    /// The server is known to speak HTTP/2 without TLS (this project's server,
    /// e.g. the embedded one): every request, log follows and watches
    /// included, then shares one connection instead of holding one each. An
    /// upstream server does not take this.
    pub http2_prior_knowledge: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            address: "http://127.0.0.1".to_string(),
            port: Some(3000),
            token_file: None,
            ca_cert_file: None,
            client_cert_file: None,
            client_key_file: None,
            insecure_skip_verify: false,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            http2_prior_knowledge: false,
        }
    }
}
