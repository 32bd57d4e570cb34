//! `POST /create`: validate the pod, build the plugin's `RetrievedPodData`,
//! forward, register the pod in the status cache.

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use super::body;
use super::error::ApiError;
use super::state::AppState;
use crate::types::{CreateStruct, PodCreateRequests, pod_uid};
use crate::validate;

pub async fn create(State(st): State<AppState>, req: Body) -> Result<Json<CreateStruct>, ApiError> {
    let req: PodCreateRequests = body::json(req, st.max_body, "a PodCreateRequests object").await?;
    validate::check_pod_for_create(&req.pod)
        .map_err(|e| ApiError::bad_request(format!("pod: {e}")))?;
    if !req.job_script_url.is_empty() {
        // upstream's server would fetch a job script there; a URL in a request is
        // not fetched here (the plugin writes the job script)
        tracing::warn!(
            pod = %pod_uid(&req.pod),
            "jobscriptURL is set but this server calls no job-script builder; ignored"
        );
    }
    let data =
        super::retrieve::build(&req, st.job_config.as_ref()).map_err(ApiError::bad_request)?;
    let uid = pod_uid(&req.pod).to_string();
    let mut created = st.plugin.create(&data).await.map_err(|e| {
        let err = e.into_api(st.plugin.target());
        tracing::warn!(pod = %uid, status = %err.status, "create failed: {}", err.message);
        err
    })?;
    if created.pod_uid.is_empty() {
        created.pod_uid = uid.clone();
    }
    st.cache.register(&req.pod, Some(&created.pod_jid));
    st.metrics.set_cached_pods(st.cache.len());
    tracing::info!(pod = %uid, job = %created.pod_jid, "pod created");
    Ok(Json(created))
}
