//! Settings of the local plugin (the `local:` section of the config file).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings of the local plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalOptions {
    /// `PATH` of the containers (default: the plugin's own `PATH`).
    pub path: Option<String>,
    /// The `interlink-local` binary used as the per-container supervisor
    /// (default: found next to the running executable).
    pub shim: Option<PathBuf>,
    /// Supervise containers inside the plugin process instead of a shim process
    /// (a plugin restart then loses their output and exit status).
    pub in_process: bool,
    /// Most pods tracked at once (default: no limit).
    pub max_pods: Option<usize>,
    /// Grace period on delete when the pod gives none (default 30 s).
    pub default_grace_seconds: Option<i64>,
    /// Offer the `statusWatch` extension (status changes pushed as they
    /// happen; default true). `false`: clients poll `/status`.
    pub status_watch: Option<bool>,
}

impl interlink_plugin_kit::config::PluginSettings for LocalOptions {
    const SECTION: &'static str = "local";
}

/// What supervises container processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// `<binary> __shim`, one process per container.
    Shim(PathBuf),
    /// Tasks of the plugin process.
    InProcess,
}

/// Name of the binary that can act as a supervisor.
pub const SHIM_BINARY: &str = "interlink-local";

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `interlink-local` next to `exe` (or one directory up, for test executables
/// that live in `target/<profile>/deps/`), or `exe` itself.
pub fn find_shim(exe: &Path) -> Option<PathBuf> {
    if exe.file_name().is_some_and(|n| n == SHIM_BINARY) {
        return Some(exe.to_path_buf());
    }
    let dir = exe.parent()?;
    [dir.join(SHIM_BINARY), dir.parent()?.join(SHIM_BINARY)]
        .into_iter()
        .find(|p| executable(p))
}

impl LocalOptions {
    pub fn supervisor(&self) -> Supervisor {
        if self.in_process {
            return Supervisor::InProcess;
        }
        if let Some(p) = &self.shim {
            return Supervisor::Shim(p.clone());
        }
        std::env::current_exe()
            .ok()
            .and_then(|e| find_shim(&e))
            .map(Supervisor::Shim)
            .unwrap_or(Supervisor::InProcess)
    }
}
