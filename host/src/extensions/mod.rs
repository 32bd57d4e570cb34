//! WebAssembly extensions: components implementing the hooks of `wit/`, loaded
//! from a folder, hot-reloaded, sandboxed.
//!
//! Layout of [`ExtensionSettings::dir`]:
//! ```text
//! resources/    10-gpu.wasm  10-gpu.json   (resource-mapping world)
//! annotations/  slurm.wasm                 (annotation-handling world)
//! state/        slurm.wasm                 (state-mapping world)
//! admission/    registries.wasm registries.json (admission-policy world)
//! .cache/       compiled native code, by content hash and engine settings
//! ```
//! Modules of one hook apply in file-name order, each seeing the previous
//! result. `<name>.json`/`.yaml`/`.yml` next to a module is its configuration
//! (the `config` import). Adding, changing or removing a file takes effect
//! within a second; a module that fails to compile, link, or pass a smoke call
//! is rejected with a logged reason and the previous version keeps serving.
//!
//! Every call is bounded in time (CPU time of the calling thread, checked at
//! each epoch tick, with a wall-clock backstop), memory, and host resources
//! (pollables, streams: at most 1024 held at once, and an instance still
//! holding more than 64 after a call is replaced by a fresh one, so each call
//! is bounded on its own); a module that
//! traps, times out, exhausts memory or answers nonsense is logged with its
//! name, counted in the metrics, and skipped (the previous stage's result
//! stands). Admission is the exception: a failing policy denies the pod unless
//! [`ExtensionSettings::admission_fail_open`].
//!
//! WASI gives a module clocks, randomness, an empty environment, stdout/stderr
//! into the log and non-blocking streams; no file and no network. A module that
//! imports another WASI interface (`wasi:sockets/*`, ...) still loads: each of
//! those functions traps when called ("... is not available to interlink
//! extensions"). Imports from outside WASI and `interlink:extensions` make the
//! module fail to link.

mod bindings;
mod loader;
mod metrics;
mod module;
mod runtime;
mod sandbox;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::hooks::Hooks;

pub use metrics::register_metrics;
pub use module::Hook;
pub use runtime::{Extensions, LoadedModule, Rejection};

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
    let ext: Arc<dyn Hooks> = Extensions::start(settings)?;
    Ok(ext)
}
