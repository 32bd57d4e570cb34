//! Reading a request body: bounded by `MaxBodyBytes` (413), then parsed as
//! JSON (400 naming the problem).

use std::borrow::Cow;

use axum::body::Body;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The body's bytes, at most `limit` of them.
pub async fn read(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if let Some(t) = super::connections::body_read_timeout(&e) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, t.to_string());
        }
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Parse `bytes` as `what` (named in the error).
pub fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "empty body, expected {what}"
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON, expected {what}: {e}")))
}

/// Read and parse in one go.
pub async fn json<T: DeserializeOwned>(
    body: Body,
    limit: usize,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = read(body, limit).await?;
    parse(&bytes, what)
}

/// [`pod_list`], or the count of the last accepted body when `bytes` is it:
/// a client that polls sends the same pods round after round (`/status`,
/// `/stats`, `/status/watch` alike), and the same bytes are not checked again.
pub fn pod_list_kept(
    last: &crate::last_body::LastBody<usize>,
    bytes: &bytes::Bytes,
) -> Result<usize, ApiError> {
    last.get_or_make(bytes, pod_list)
}

/// A JSON array of pods (`/status`, `/stats`): each pod's UID, name and
/// namespace checked, nothing else decoded; answers how many there are. An
/// empty body and `null` (what Go sends for a nil slice) are no pods.
pub fn pod_list(bytes: &[u8]) -> Result<usize, ApiError> {
    // borrowed where the JSON has no escapes: nothing allocated per pod
    #[derive(serde::Deserialize)]
    struct PodRef<'a> {
        #[serde(default, borrow)]
        metadata: MetaRef<'a>,
    }
    #[derive(serde::Deserialize, Default)]
    struct MetaRef<'a> {
        #[serde(default, borrow)]
        uid: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        namespace: Option<Cow<'a, str>>,
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let pods: Option<Vec<PodRef<'_>>> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed JSON, expected a JSON array of Pod objects: {e}"
        ))
    })?;
    let pods = pods.unwrap_or_default();
    for (i, p) in pods.iter().enumerate() {
        let m = &p.metadata;
        crate::validate::check_pod_ref_fields(
            m.uid.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
            m.namespace.as_deref().unwrap_or(""),
        )
        .map_err(|e| ApiError::bad_request(format!("pod [{i}]: {e}")))?;
    }
    Ok(pods.len())
}
