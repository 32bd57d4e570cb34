//! `GET /exec`, `GET /attach`, `GET /portforward` (extension `exec`, see
//! [`crate::exec`]): authenticated like every endpoint (the auth layer runs
//! first), the query validated, then the same WebSocket is opened to the
//! plugin; only when the plugin accepted it is the client's upgrade answered,
//! so the plugin's refusals (404 unknown pod, 400) reach the client as HTTP
//! errors. Then messages are relayed both ways until either side closes.
//!
//! A plugin without the extension: 501 naming it.

use axum::Router;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;

use super::error::ApiError;
use super::plugin_client::PluginFailure;
use super::state::AppState;
use crate::exec::{AttachRequest, ExecRequest, PortForwardRequest, StreamRequest};
use crate::extensions::EXEC;
use crate::ws::Ws;

/// The three endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ExecRequest::PATH, get(endpoint::<ExecRequest>))
        .route(AttachRequest::PATH, get(endpoint::<AttachRequest>))
        .route(
            PortForwardRequest::PATH,
            get(endpoint::<PortForwardRequest>),
        )
}

/// The handler of one endpoint of the extension (`R` says which).
pub async fn endpoint<R: StreamRequest>(
    State(st): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let r = R::from_query(&query).map_err(|e| ApiError::bad_request(e.0))?;
    relay(
        st,
        req,
        R::PATH,
        r.to_query(),
        R::PROTOCOL,
        &r.target().pod_uid,
    )
    .await
}

async fn relay(
    st: AppState,
    req: Request,
    endpoint: &'static str,
    query: String,
    protocol: Option<&'static str>,
    uid: &str,
) -> Result<Response, ApiError> {
    if !st.plugin_extensions.get(&st).await.has(EXEC) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "the plugin at {} has no {EXEC:?} extension (its GET /extensions does not list it): \
                 exec, attach and port-forward are not available through this server",
                st.plugin.target()
            ),
        ));
    }
    let (mut parts, _body) = req.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|r| {
            ApiError::bad_request(format!(
                "{endpoint} is a WebSocket endpoint (GET with Upgrade: websocket): {}",
                r.body_text()
            ))
        })?;
    let upgrade = match protocol {
        Some(p) => {
            let u = upgrade.protocols([p]);
            if u.selected_protocol().is_none() {
                return Err(ApiError::bad_request(format!(
                    "{endpoint} speaks the WebSocket protocol {p}: offer it in Sec-WebSocket-Protocol"
                )));
            }
            u
        }
        None => upgrade,
    };
    let (plugin, chosen) = match st
        .plugin
        .websocket(endpoint, &format!("{endpoint}?{query}"), protocol)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            if matches!(
                e,
                PluginFailure::Status(404 | 405 | 501, _) | PluginFailure::Unreachable(_)
            ) {
                // the plugin may have changed: ask it again next time
                st.plugin_extensions.forget();
            }
            return Err(e.into_api(st.plugin.target()));
        }
    };
    if let Some(p) = protocol
        && chosen.as_deref() != Some(p)
    {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the plugin did not choose the WebSocket protocol {p} at {endpoint}"),
        ));
    }
    tracing::info!(endpoint, uid, "stream opened");
    let uid = uid.to_string();
    Ok(upgrade
        .on_failed_upgrade(|e| tracing::warn!("the client's WebSocket upgrade failed: {e}"))
        .on_upgrade(move |client| async move {
            pump(client, plugin).await;
            tracing::info!(endpoint, uid = %uid, "stream closed");
        }))
}

fn to_plugin(m: ws::Message) -> Option<TMessage> {
    Some(match m {
        ws::Message::Binary(b) => TMessage::Binary(b),
        ws::Message::Text(t) => TMessage::Text(t.as_str().into()),
        ws::Message::Close(c) => TMessage::Close(c.map(|c| TCloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
        // each hop answers its own pings
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

fn to_client(m: TMessage) -> Option<ws::Message> {
    Some(match m {
        TMessage::Binary(b) => ws::Message::Binary(b),
        TMessage::Text(t) => ws::Message::Text(t.as_str().into()),
        TMessage::Close(c) => ws::Message::Close(c.map(|c| ws::CloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
        TMessage::Ping(_) | TMessage::Pong(_) | TMessage::Frame(_) => return None,
    })
}

/// How long the plugin's side has to end after the client closed (the plugin
/// stops the command first, then closes: see the kit's `exec_ws`).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Relay messages both ways until either side closes or fails; the other
/// side is then closed. When the client closes first, the plugin's end is
/// waited for (bounded by [`CLOSE_GRACE`]) and relayed, so the client learns
/// when what it ran is gone.
async fn pump(client: WebSocket, plugin: Ws) {
    let (mut to_c, mut from_c) = client.split();
    let (mut to_p, mut from_p) = plugin.split();
    let up = async {
        while let Some(Ok(m)) = from_c.next().await {
            let close = matches!(m, ws::Message::Close(_));
            if let Some(m) = to_plugin(m)
                && to_p.send(m).await.is_err()
            {
                break;
            }
            if close {
                break;
            }
        }
        let _ = to_p.close().await;
    };
    let down = async {
        while let Some(Ok(m)) = from_p.next().await {
            let close = matches!(m, TMessage::Close(_));
            if let Some(m) = to_client(m)
                && to_c.send(m).await.is_err()
            {
                break;
            }
            if close {
                break;
            }
        }
        let _ = to_c.close().await;
    };
    tokio::pin!(down);
    tokio::select! {
        _ = up => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut down).await;
        }
        _ = &mut down => {}
    }
}
