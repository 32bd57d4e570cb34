//! WebAssembly extensions: components implementing the hooks of `wit/`, loaded
//! from a folder, hot-reloaded, sandboxed. (Being built: until then `start`
//! refuses, and the host runs with its defaults.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::hooks::Hooks;

/// How the extension system runs.
#[derive(Debug, Clone)]
pub struct ExtensionSettings {
    /// The folder with one subfolder per hook (`resources/`, `annotations/`,
    /// `state/`, `admission/`), each holding `.wasm` components.
    pub dir: PathBuf,
    /// Bound on one hook call (epoch deadline).
    pub call_timeout: Duration,
    /// Bound on a module's linear memory, in bytes.
    pub memory_limit: usize,
    /// When an admission module fails (trap, timeout): allow (true) or deny (false).
    pub admission_fail_open: bool,
}

impl Default for ExtensionSettings {
    fn default() -> Self {
        ExtensionSettings {
            dir: PathBuf::from("/etc/interlink/cri/extensions"),
            call_timeout: Duration::from_millis(10),
            memory_limit: 16 << 20,
            admission_fail_open: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("extensions: {0}")]
    Setup(String),
}

/// Load the modules under `settings.dir`, watch it for changes, and return the
/// hooks that apply them.
pub fn start(settings: ExtensionSettings) -> Result<Arc<dyn Hooks>, ExtensionError> {
    Err(ExtensionError::Setup(format!(
        "WebAssembly extensions are not built yet (dir {})",
        settings.dir.display()
    )))
}
