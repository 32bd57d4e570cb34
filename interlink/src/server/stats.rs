//! `POST /stats` (extension `stats`, see [`crate::extensions`]): usage of many
//! pods in one call, with the same body as `/status` (a JSON array of pods),
//! passed to the plugin when it has the extension; 404 when it has not.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body;
use super::error::ApiError;
use super::plugin_client::PluginFailure;
use super::state::AppState;
use crate::extensions::{PodStats, STATS};

pub async fn stats(State(st): State<AppState>, req: Body) -> Result<Response, ApiError> {
    let bytes = body::read(req, st.max_body).await?;
    let pods = body::pod_list_kept(&st.pod_lists, &bytes)?;
    if !st.plugin_extensions.get(&st).await.has(STATS) {
        return Err(ApiError::not_found(
            "the plugin has no stats extension (GET /extensions)",
        ));
    }
    if pods == 0 {
        return Ok(([(header::CONTENT_TYPE, "application/json")], "[]").into_response());
    }
    let answer = match st.plugin.stats(bytes).await {
        Ok(a) => a,
        Err(e) => {
            if matches!(
                e,
                PluginFailure::Status(404 | 405, _) | PluginFailure::Unreachable(_)
            ) {
                // the plugin changed (or restarted as another): ask it again next time
                st.plugin_extensions.forget();
            }
            return Err(e.into_api(st.plugin.target()));
        }
    };
    let checked: Vec<PodStats> = serde_json::from_slice(&answer).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("plugin answered something unreadable: /stats answer is not a list of pod stats: {e}"),
        )
    })?;
    Ok(axum::Json(checked).into_response())
}
