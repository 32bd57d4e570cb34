//! `GET /getLogs` with a body (POST accepted): validated as upstream does,
//! the pod must be known, then the plugin's answer is streamed through. On
//! `Opts.Follow` the stream stays open; a slow reader slows the plugin down
//! (the body is pulled from the plugin only as fast as the client takes it).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::types::LogStruct;
use crate::validate;

pub async fn logs(State(st): State<AppState>, req: Body) -> Result<Response, ApiError> {
    let req: LogStruct = body::json(req, st.max_body, "a LogStruct object").await?;
    validate::check_log_names(&req).map_err(ApiError::bad_request)?;
    let known = st.cache.get(&req.pod_uid);
    // upstream's rule: a lowercase UUID; pods this server created pass whatever their UID form
    if known.is_none() && !validate::is_lowercase_uuid(&req.pod_uid) {
        return Err(ApiError::bad_request(format!(
            "PodUID {:?} is not a lowercase UUID",
            req.pod_uid
        )));
    }
    let Some(pod) = known else {
        return Err(ApiError::not_found(format!(
            "pod {} is not known to this server (create it, or re-register it with /updateCache)",
            req.pod_uid
        )));
    };
    if !pod.containers.is_empty() && !pod.containers.contains(&req.container_name) {
        return Err(ApiError::not_found(format!(
            "pod {} has no container {:?}",
            req.pod_uid, req.container_name
        )));
    }
    let resp = st
        .plugin
        .logs(&req)
        .await
        .map_err(|e| e.into_api(st.plugin.target()))?;
    let follow = req.opts.follow;
    let uid = req.pod_uid.clone();
    let stream = resp.bytes_stream().map(move |r| {
        r.map_err(|e| {
            tracing::debug!(pod = %uid, follow, "log stream from the plugin ended: {e}");
            std::io::Error::other(e)
        })
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}
