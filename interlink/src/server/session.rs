//! Request correlation and error logging.
//!
//! Upstream's clients send `InterLink-Http-Session` (the virtual kubelet
//! writes `GetStatus#1234`, `CreatePod#...`), and upstream's API server hands
//! the same value to the plugin. This server does too: the session (or a new
//! `Request-<n>` when the client sent none) is kept for the request, put on
//! every log line of it, and forwarded on each plugin call it makes.
//!
//! Every 4xx/5xx answer is logged with its message (4xx at warn, 5xx at error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header upstream uses for request correlation.
pub const HEADER: &str = "InterLink-Http-Session";

/// Longest session value kept (a longer one is cut).
const MAX_LEN: usize = 128;

tokio::task_local! {
    static SESSION: String;
}

/// The message of an error answer, attached to the response for the log.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

/// The session of the request being handled, if any.
pub fn current() -> Option<String> {
    SESSION.try_with(|s| s.clone()).ok()
}

/// A client's session value made safe to log and forward: printable ASCII,
/// at most [`MAX_LEN`] characters; `None` when nothing is left.
fn clean(v: &HeaderValue) -> Option<String> {
    let s: String = v
        .as_bytes()
        .iter()
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .take(MAX_LEN)
        .map(|b| *b as char)
        .collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn new_session() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("Request-{t:x}-{n}")
}

/// The middleware: session scope, a span per request, errors logged.
pub async fn track(req: Request, next: Next) -> Response {
    let session = req
        .headers()
        .get(HEADER)
        .and_then(clean)
        .unwrap_or_else(new_session);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        %method,
        path,
        session = %session,
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    crate::telemetry::adopt_parent(&span, req.headers());
    let resp = SESSION
        .scope(session, next.run(req))
        .instrument(span.clone())
        .await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_client_error() || status.is_server_error() {
        let message = resp
            .extensions()
            .get::<ErrorMessage>()
            .map(|m| m.0.as_str())
            .unwrap_or("");
        crate::telemetry::fail(&span, &format!("{}: {message}", status.as_u16()));
        let _g = span.enter();
        if status.is_server_error() {
            tracing::error!(code = status.as_u16(), "request failed: {message}");
        } else {
            tracing::warn!(code = status.as_u16(), "request refused: {message}");
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_values_are_cleaned() {
        let v = HeaderValue::from_static("GetStatus#29918");
        assert_eq!(clean(&v).unwrap(), "GetStatus#29918");
        let v = HeaderValue::from_bytes(b"a\tb\xffc").unwrap();
        assert_eq!(clean(&v).unwrap(), "abc");
        let long = "x".repeat(500);
        let v = HeaderValue::from_str(&long).unwrap();
        assert_eq!(clean(&v).unwrap().len(), MAX_LEN);
        assert!(clean(&HeaderValue::from_static("  ")).is_none());
        assert!(new_session().starts_with("Request-"));
        assert_ne!(new_session(), new_session());
    }
}
