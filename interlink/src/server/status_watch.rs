//! `POST /status/watch` (extension `statusWatch`, see [`crate::extensions`]):
//! the body of `/status`, passed to the plugin when it has the extension (404
//! when it has not); its stream of status lines is passed through as it
//! comes, each status refreshing the status cache on the way. The stream ends
//! when the plugin's does (it restarted, it went): the client reconnects.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::body;
use super::error::ApiError;
use super::plugin_client::PluginFailure;
use super::state::AppState;
use crate::extensions::{STATUS_WATCH, STATUS_WATCH_CONTENT_TYPE};

/// Longest status line taken from the plugin.
const MAX_LINE: usize = 16 << 20;

pub async fn status_watch(State(st): State<AppState>, req: Body) -> Result<Response, ApiError> {
    let bytes = body::read(req, st.max_body).await?;
    body::pod_list_kept(&st.pod_lists, &bytes)?;
    if !st.plugin_extensions.get(&st).await.has(STATUS_WATCH) {
        return Err(ApiError::not_found(
            "the plugin has no statusWatch extension (GET /extensions)",
        ));
    }
    let resp = match st.plugin.status_watch(bytes).await {
        Ok(r) => r,
        Err(e) => {
            if matches!(
                e,
                PluginFailure::Status(404 | 405 | 501, _) | PluginFailure::Unreachable(_)
            ) {
                st.plugin_extensions.forget();
            }
            return Err(e.into_api(st.plugin.target()));
        }
    };
    let cache = st.cache.clone();
    let mut partial = BytesMut::new();
    let stream = resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            tracing::debug!("status watch from the plugin ended: {e}");
            std::io::Error::other(e)
        })?;
        record_lines(&cache, &mut partial, &chunk)?;
        Ok::<Bytes, std::io::Error>(chunk)
    });
    Ok((
        [
            (header::CONTENT_TYPE, STATUS_WATCH_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Record in the cache each whole status line of `chunk` (the rest waits in
/// `partial` for the next chunk). A line that is not a status ends the stream.
fn record_lines(
    cache: &super::cache::StatusCache,
    partial: &mut BytesMut,
    chunk: &[u8],
) -> std::io::Result<()> {
    partial.extend_from_slice(chunk);
    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
        let line = partial.split_to(nl + 1);
        let line = line[..nl].trim_ascii();
        if line.is_empty() {
            continue;
        }
        let raw: &serde_json::value::RawValue = serde_json::from_slice(line).map_err(|e| {
            std::io::Error::other(format!(
                "the plugin sent a status line that is not JSON: {e}"
            ))
        })?;
        cache.record(&[raw]).map_err(std::io::Error::other)?;
    }
    if partial.len() > MAX_LINE {
        return Err(std::io::Error::other(format!(
            "the plugin sent a status line longer than {MAX_LINE} bytes"
        )));
    }
    Ok(())
}
