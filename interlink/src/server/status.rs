//! `GET /status` with a body (POST accepted): one request for many pods,
//! passed to the plugin as is; the answers refresh the status cache.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::validate;

pub async fn status(State(st): State<AppState>, req: Body) -> Result<Response, ApiError> {
    let bytes = body::read(req, st.max_body).await?;
    let pods: Vec<Pod> = body::parse(&bytes, "a JSON array of Pod objects")?;
    for (i, p) in pods.iter().enumerate() {
        validate::check_pod_ref(p).map_err(|e| ApiError::bad_request(format!("pod [{i}]: {e}")))?;
    }
    let (statuses, answer) = st
        .plugin
        .status(bytes)
        .await
        .map_err(|e| e.into_api(st.plugin.target()))?;
    st.cache.record(&statuses);
    st.metrics.set_cached_pods(st.cache.len());
    // Go writes a nil slice as `null`; answer a list either way
    let answer = if answer.trim_ascii() == b"null" {
        bytes::Bytes::from_static(b"[]")
    } else {
        answer
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}
