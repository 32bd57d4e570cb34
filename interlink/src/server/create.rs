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

/// Why a `jobscriptURL` is refused.
pub const JOB_SCRIPT_URL_REFUSED: &str = "jobscriptURL is not supported: upstream's server would \
     send the pod with its Secrets to the URL named in the request, per pod, and run the answer \
     as the job script outside any container; here the Slurm plugin writes the job script \
     (the site admin can give it a template: job_script_template in its config). \
     Remove JobScriptBuilderURL from the virtual kubelet's config";

pub async fn create(State(st): State<AppState>, req: Body) -> Result<Json<CreateStruct>, ApiError> {
    let req: PodCreateRequests = body::json(req, st.max_body, "a PodCreateRequests object").await?;
    validate::check_pod_for_create(&req.pod)
        .map_err(|e| ApiError::bad_request(format!("pod: {e}")))?;
    if !req.job_script_url.is_empty() {
        // upstream's server POSTs the pod, with its Secrets, to the URL the
        // request names and hands the answer to the plugin as the job script,
        // which runs outside any container: neither fits here
        return Err(ApiError::bad_request(JOB_SCRIPT_URL_REFUSED.to_string()));
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
