//! `POST /updateCache`.
//!
//! Two callers, two meanings, told apart by the body:
//! - a Pod object (what our `interlink-cri` sends after the server restarted,
//!   and what upstream's virtual kubelet sends for a pod it found in the
//!   cluster but no longer tracks): the pod is (re-)registered, so `/getLogs`
//!   knows it again. Upstream's server means to drop the entry here, but it
//!   looks the whole body up as a UID, so in practice it keeps it: registering
//!   keeps the cache as upstream's clients see it.
//! - a bare UID (a JSON string or plain text), upstream's `deleteCachedStatus`
//!   key: the entry is removed.
//!
//! Both answer 200 with a short text, as upstream (`Updated cache`).

use axum::body::Body;
use axum::extract::State;
use k8s_openapi::api::core::v1::Pod;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::types::pod_uid;
use crate::validate;

pub async fn update_cache(State(st): State<AppState>, req: Body) -> Result<String, ApiError> {
    let bytes = body::read(req, st.max_body).await?;
    if let Some(uid) = bare_uid(&bytes) {
        validate::check_pod_ref_fields(&uid, "", "")
            .map_err(|e| ApiError::bad_request(format!("UID: {e}")))?;
        let removed = st.cache.remove(&uid).is_some();
        st.metrics.set_cached_pods(st.cache.len());
        tracing::debug!(pod = %uid, removed, "cache entry dropped");
        return Ok("Updated cache".to_string());
    }
    let pod: Pod = body::parse(&bytes, "a Pod object or a pod UID")?;
    validate::check_pod_ref(&pod).map_err(|e| ApiError::bad_request(format!("pod: {e}")))?;
    st.cache.register(&pod, None);
    st.metrics.set_cached_pods(st.cache.len());
    tracing::debug!(pod = %pod_uid(&pod), "pod re-registered");
    Ok(format!("pod {} registered", pod_uid(&pod)))
}

/// The UID when the body is one: a JSON string, or plain text without JSON
/// punctuation.
fn bare_uid(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).ok();
    }
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    plain.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::bare_uid;

    #[test]
    fn tells_uids_from_pods() {
        let u = "bc5db411-1759-4961-bd03-bb18c31396d4";
        assert_eq!(bare_uid(u.as_bytes()).unwrap(), u);
        assert_eq!(bare_uid(format!("\"{u}\"\n").as_bytes()).unwrap(), u);
        assert!(bare_uid(br#"{"metadata":{"uid":"x"}}"#).is_none());
        assert!(bare_uid(b"").is_none());
    }
}
