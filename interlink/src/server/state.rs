//! What every handler shares.

use std::sync::Arc;

use super::cache::StatusCache;
use super::metrics::Metrics;
use super::plugin_client::PluginClient;

#[derive(Clone)]
pub struct AppState {
    pub plugin: PluginClient,
    pub cache: Arc<StatusCache>,
    /// The last pod list accepted (see [`super::body::pod_list_kept`]).
    pub pod_lists: Arc<crate::last_body::LastBody<usize>>,
    pub metrics: Metrics,
    pub max_body: usize,
    pub job_config: Option<serde_json::Value>,
    /// The plugin's extensions, asked and cached (see `extensions`).
    pub plugin_extensions: Arc<super::extensions::PluginExtensions>,
}
