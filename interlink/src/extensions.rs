//! Extensions of the upstream contract: how a peer (an API server, a plugin)
//! tells which of them it has, and the wire types of each.
//!
//! A peer with extensions answers `GET /extensions` with
//! `{"extensions": {"stats": 1, "exec": 1}}` (name → version). Any other answer (404,
//! 405, not JSON: upstream's server and plugins) means it has none. Every
//! extension (stats, exec; status streams later) is discovered this one
//! way: ask once on connect, cache, ask again on reconnect or after a while.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The discovery endpoint.
pub const PATH: &str = "/extensions";

/// The usage-statistics extension: `POST /stats`.
pub const STATS: &str = "stats";
/// Its version.
pub const STATS_VERSION: u32 = 1;
/// Its endpoint.
pub const STATS_PATH: &str = "/stats";

/// The exec extension: `GET /exec`, `GET /attach`, `GET /portforward`, each a
/// WebSocket upgrade (see [`crate::exec`]).
pub const EXEC: &str = "exec";
/// Its version.
pub const EXEC_VERSION: u32 = 1;
/// Run a command in a container.
pub const EXEC_PATH: &str = "/exec";
/// Attach to a container's main process.
pub const ATTACH_PATH: &str = "/attach";
/// Forward one TCP connection to a port of a pod.
pub const PORT_FORWARD_PATH: &str = "/portforward";

/// The status-watch extension: `POST /status/watch` with the body of
/// `/status` (a JSON array of pods; `[]`: every pod the peer has, now and
/// later) answers a long-lived stream of newline-delimited JSON `PodStatus`
/// objects: first the current status of each pod, then one line each time a
/// pod's status changes. An empty line is a keep-alive, sent at least every
/// [`WATCH_KEEPALIVE`]. The stream ends when the peer stops (or falls behind);
/// a client reconnects and gets the current statuses again. A peer without the
/// extension answers 404 (or 501): the client keeps polling `/status`.
pub const STATUS_WATCH: &str = "statusWatch";
/// Its version.
pub const STATUS_WATCH_VERSION: u32 = 1;
/// Its endpoint.
pub const STATUS_WATCH_PATH: &str = "/status/watch";
/// Its content type.
pub const STATUS_WATCH_CONTENT_TYPE: &str = "application/x-ndjson";
/// The longest a watch stays silent: a keep-alive line follows at the latest.
/// A client that hears nothing for three of these takes the stream as dead.
pub const WATCH_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a peer answers at [`PATH`]: extension name → version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extensions {
    #[serde(default)]
    pub extensions: BTreeMap<String, u32>,
}

impl Extensions {
    /// No extension (what an upstream peer has).
    pub fn none() -> Extensions {
        Extensions::default()
    }

    /// This set with `name` at `version` added.
    pub fn with(mut self, name: &str, version: u32) -> Extensions {
        self.extensions.insert(name.to_string(), version);
        self
    }

    /// Whether the peer has `name` (at any version).
    pub fn has(&self, name: &str) -> bool {
        self.extensions.contains_key(name)
    }

    /// Read a peer's answer to `GET /extensions`: a 2xx with the JSON object
    /// above is the peer's set; anything else (an error status, another body)
    /// is the answer of a peer without extensions.
    pub fn from_answer(status: u16, body: &[u8]) -> Extensions {
        if !(200..300).contains(&status) {
            return Extensions::none();
        }
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// One pod's usage, as `POST /stats` answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodStats {
    #[serde(rename = "PodUID", default)]
    pub pod_uid: String,
    #[serde(rename = "Containers", default)]
    pub containers: Vec<ContainerStats>,
}

/// One container's usage; a figure is absent when it is not known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    #[serde(rename = "Name")]
    pub name: String,
    /// When the figures were read (RFC 3339).
    #[serde(rename = "Timestamp")]
    pub timestamp: Timestamp,
    /// CPU time used since the container started, in nanoseconds (cumulative).
    #[serde(
        rename = "CPUUsageCoreNanoSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_usage_core_nano_seconds: Option<u64>,
    /// Memory that cannot be reclaimed, in bytes (resident set for processes).
    #[serde(
        rename = "MemoryWorkingSetBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_working_set_bytes: Option<u64>,
    /// All memory used, in bytes, where the backend tells it apart.
    #[serde(
        rename = "MemoryUsageBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_usage_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_answers() {
        let ours = Extensions::none().with(STATS, STATS_VERSION);
        let body = serde_json::to_vec(&ours).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"extensions":{"stats":1}}"#
        );
        assert!(Extensions::from_answer(200, &body).has(STATS));
        assert!(!Extensions::from_answer(404, &body).has(STATS));
        assert!(!Extensions::from_answer(200, b"404 page not found").has(STATS));
        assert!(!Extensions::from_answer(200, b"[]").has(STATS));
    }

    #[test]
    fn stats_wire_format() {
        let s: Vec<PodStats> = serde_json::from_str(
            r#"[{"PodUID":"u","Containers":[{"Name":"c","Timestamp":"2026-01-01T00:00:00Z","CPUUsageCoreNanoSeconds":5}]}]"#,
        )
        .unwrap();
        assert_eq!(s[0].containers[0].cpu_usage_core_nano_seconds, Some(5));
        assert_eq!(s[0].containers[0].memory_working_set_bytes, None);
        let back = serde_json::to_string(&s).unwrap();
        assert!(!back.contains("Memory"), "{back}");
    }
}
