//! `GET /status` with a body (POST accepted): one request for many pods,
//! passed to the plugin as is; the answers refresh the status cache.
//! `[]` (or an empty body) answers every cached status without asking the
//! plugin, as upstream's server does (upstream's plugins answer `[]` with
//! their ping map, not statuses).
//!
//! Only what is checked is decoded (each pod's metadata, each status' ids),
//! so a request for 10,000 pods costs little more than moving its bytes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body;
use super::error::ApiError;
use super::state::AppState;

pub async fn status(State(st): State<AppState>, req: Body) -> Result<Response, ApiError> {
    let bytes = body::read(req, st.max_body).await?;
    let pods = body::pod_list_kept(&st.pod_lists, &bytes)?;
    if pods == 0 {
        let all = st.cache.statuses();
        let body = serde_json::to_vec(&all).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}"))
        })?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let answer = st
        .plugin
        .status(bytes)
        .await
        .map_err(|e| e.into_api(st.plugin.target()))?;
    let garbage = |m: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("plugin answered something unreadable: {m}"),
        )
    };
    // Go writes a nil slice as `null`; answer a list either way
    if answer.trim_ascii() == b"null" {
        return Ok(([(header::CONTENT_TYPE, "application/json")], "[]").into_response());
    }
    st.cache.record_answer(&answer).map_err(garbage)?;
    st.metrics.set_cached_pods(st.cache.len());
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}
