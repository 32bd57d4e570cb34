//! The client's typed errors.

use crate::error_chain::chain;

/// Why a call to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client configuration is unusable (bad address, unreadable certificate, ...).
    #[error("client configuration: {0}")]
    Config(String),
    /// The server could not be reached (connection refused, DNS, TLS handshake, reset).
    #[error("interLink API server unreachable: {0}")]
    Unreachable(String),
    /// 401 or 403: the token is missing, invalid or not allowed.
    #[error("unauthorized ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// 404: the pod (or endpoint) is not known.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other 4xx: the server refused the request.
    #[error("bad request ({status}): {message}")]
    BadRequest { status: u16, message: String },
    /// 5xx: the server or the plugin behind it failed.
    #[error("server error ({status}): {message}")]
    Server { status: u16, message: String },
    /// The request did not complete within its timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The answer does not parse as what the endpoint promises.
    #[error("cannot decode the answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status this error came from, if it came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized { status, .. }
            | ClientError::BadRequest { status, .. }
            | ClientError::Server { status, .. } => Some(*status),
            ClientError::NotFound(_) => Some(404),
            _ => None,
        }
    }

    /// The server, or the plugin behind it, does not implement what was asked
    /// (501: an extension it lacks; the message names it).
    pub fn is_unimplemented(&self) -> bool {
        self.status() == Some(501)
    }

    /// Map an error response (status + body) to a typed error; the message is the
    /// body's `{"error": ...}` field when it has one, else its text (shortened).
    pub(crate) fn from_response(status: u16, body: &[u8]) -> ClientError {
        let message = error_message(body);
        match status {
            401 | 403 => ClientError::Unauthorized { status, message },
            404 => ClientError::NotFound(message),
            400..=499 => ClientError::BadRequest { status, message },
            _ => ClientError::Server { status, message },
        }
    }

    /// Map a transport error of reqwest.
    pub(crate) fn from_reqwest(e: reqwest::Error, what: &str) -> ClientError {
        let detail = chain(&e);
        if e.is_timeout() {
            ClientError::Timeout(format!("{what}: {detail}"))
        } else if e.is_decode() {
            ClientError::Decode(format!("{what}: {detail}"))
        } else if e.is_builder() {
            ClientError::Config(format!("{what}: {detail}"))
        } else {
            // connect, request, body: the server is not there or went away
            ClientError::Unreachable(format!("{what}: {detail}"))
        }
    }
}

fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("error").and_then(|m| m.as_str())
    {
        return m.to_string();
    }
    // upstream's server answers errors as HTML-escaped text
    // ("... call exit status: 500. Body: {&#34;error&#34;: ...}")
    let text = String::from_utf8_lossy(body)
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let text = text.trim();
    if text.chars().count() > 512 {
        let short: String = text.chars().take(512).collect();
        format!("{short}...")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses() {
        assert!(matches!(
            ClientError::from_response(401, br#"{"error":"missing bearer token"}"#),
            ClientError::Unauthorized { status: 401, message } if message == "missing bearer token"
        ));
        assert!(matches!(
            ClientError::from_response(403, b"no"),
            ClientError::Unauthorized { status: 403, .. }
        ));
        assert!(
            matches!(ClientError::from_response(404, b"x"), ClientError::NotFound(m) if m == "x")
        );
        assert!(matches!(
            ClientError::from_response(413, b""),
            ClientError::BadRequest { status: 413, .. }
        ));
        assert!(matches!(
            ClientError::from_response(502, b"plugin"),
            ClientError::Server { status: 502, .. }
        ));
    }
}
