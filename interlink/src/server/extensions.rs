//! `GET /extensions`: the extensions of the upstream contract this server
//! offers (see [`crate::extensions`]). The server proxies an extension only
//! when its plugin has it too, so it asks the plugin (at start, then again on
//! the first need after [`REASK`] or after the plugin failed a call of an
//! extension or could not be reached) and caches the plugin's answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::extensions::{
    EXEC, EXEC_VERSION, Extensions, STATS, STATS_VERSION, STATUS_WATCH, STATUS_WATCH_VERSION,
};

/// How long the plugin's answer is trusted before it is asked again.
pub const REASK: Duration = Duration::from_secs(60);

/// The extensions this server can proxy, with their versions.
fn proxied() -> Extensions {
    Extensions::none()
        .with(STATS, STATS_VERSION)
        .with(EXEC, EXEC_VERSION)
        .with(STATUS_WATCH, STATUS_WATCH_VERSION)
}

/// The plugin's extensions, as last asked.
#[derive(Default)]
pub struct PluginExtensions {
    last: Mutex<Option<(Extensions, Instant)>>,
}

impl PluginExtensions {
    /// The plugin's extensions, asked again when the cached answer is old.
    pub async fn get(&self, st: &AppState) -> Extensions {
        if let Some((e, at)) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && at.elapsed() < REASK
        {
            return e.clone();
        }
        match st.plugin.extensions().await {
            Ok(e) => {
                tracing::debug!(extensions = ?e.extensions, "the plugin's extensions");
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((e.clone(), Instant::now()));
                e
            }
            Err(e) => {
                tracing::warn!("cannot ask the plugin for its extensions: {}", describe(&e));
                Extensions::none()
            }
        }
    }

    /// Forget the cached answer (the plugin went away or changed).
    pub fn forget(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn describe(e: &super::plugin_client::PluginFailure) -> String {
    format!("{e:?}")
}

/// What this server offers now: what it proxies and its plugin has.
pub async fn offered(st: &AppState) -> Extensions {
    let plugin = st.plugin_extensions.get(st).await;
    let mut out = Extensions::none();
    for (name, version) in proxied().extensions {
        if let Some(pv) = plugin.extensions.get(&name) {
            out = out.with(&name, version.min(*pv));
        }
    }
    out
}

pub async fn extensions(State(st): State<AppState>) -> Response {
    axum::Json(offered(&st).await).into_response()
}
