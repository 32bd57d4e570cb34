//! `POST /pinglink` (GET accepted): 200 with the plugin's answer when it is
//! alive, 503 with a JSON message when it is not (upstream answers the text
//! `503`; its virtual kubelet reads only the status code).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::json_error;
use super::state::AppState;

pub async fn ping(State(st): State<AppState>) -> Response {
    match st.plugin.ping(Duration::from_secs(5)).await {
        Ok(body) => {
            let json = matches!(body.trim_ascii_start().first(), Some(b'{' | b'['));
            let ct = if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let body = if body.trim_ascii().is_empty() {
                bytes::Bytes::from_static(b"ok")
            } else {
                body
            };
            ([(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e) => {
            let err = e.into_api(st.plugin.target());
            tracing::warn!("pinglink: {}", err.message);
            json_error(StatusCode::SERVICE_UNAVAILABLE, &err.message)
        }
    }
}
