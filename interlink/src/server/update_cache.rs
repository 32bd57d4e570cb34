//! `POST /updateCache`: re-register a pod (clients re-send their pods after
//! the server restarted).

use axum::body::Body;
use axum::extract::State;
use k8s_openapi::api::core::v1::Pod;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::types::pod_uid;
use crate::validate;

pub async fn update_cache(State(st): State<AppState>, req: Body) -> Result<String, ApiError> {
    let pod: Pod = body::json(req, st.max_body, "a Pod object").await?;
    validate::check_pod_ref(&pod).map_err(|e| ApiError::bad_request(format!("pod: {e}")))?;
    st.cache.register(&pod, None);
    st.metrics.set_cached_pods(st.cache.len());
    tracing::debug!(pod = %pod_uid(&pod), "pod re-registered");
    Ok(format!("pod {} registered", pod_uid(&pod)))
}
