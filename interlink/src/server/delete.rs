//! `DELETE /delete` (any method accepted): forward to the plugin, which treats
//! an unknown pod as already gone, then forget the pod.

use axum::body::Body;
use axum::extract::State;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::types::pod_uid;
use crate::validate;
use k8s_openapi::api::core::v1::Pod;

pub async fn delete(State(st): State<AppState>, req: Body) -> Result<String, ApiError> {
    let pod: Pod = body::json(req, st.max_body, "a Pod object").await?;
    validate::check_pod_ref(&pod).map_err(|e| ApiError::bad_request(format!("pod: {e}")))?;
    let uid = pod_uid(&pod).to_string();
    st.plugin
        .delete(&pod)
        .await
        .map_err(|e| e.into_api(st.plugin.target()))?;
    st.cache.remove(&uid);
    st.metrics.set_cached_pods(st.cache.len());
    tracing::info!(pod = %uid, "pod deleted");
    Ok(format!("pod {uid} deleted"))
}
