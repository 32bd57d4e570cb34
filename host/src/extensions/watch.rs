//! Hot reload: a `notify` watcher on the extension folder feeds a thread that
//! waits for the changes to settle (debounce), then rescans. A slow periodic
//! rescan covers events a file system does not deliver.

use std::path::{Component, Path};
use std::sync::Weak;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};

use super::runtime::Inner;

/// Quiet time after the last change before rescanning.
const DEBOUNCE: Duration = Duration::from_millis(40);
/// Longest wait for quiet while changes keep coming.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);
/// Rescan this often even without events.
const RESCAN: Duration = Duration::from_secs(10);

pub(crate) type Watcher = notify::RecommendedWatcher;

fn relevant(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|p| {
            !p.components()
                .any(|c| matches!(c, Component::Normal(n) if n == ".cache"))
        })
}

pub(crate) fn start(dir: &Path, inner: Weak<Inner>) -> notify::Result<Watcher> {
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if relevant(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("extension folder watch error: {e}"),
        })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    std::thread::Builder::new()
        .name("wasm-reload".into())
        .spawn(move || {
            loop {
                match rx.recv_timeout(RESCAN) {
                    Ok(()) => {
                        let first = Instant::now();
                        // wait until nothing changed for DEBOUNCE
                        loop {
                            let left = DEBOUNCE_MAX.saturating_sub(first.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            match rx.recv_timeout(DEBOUNCE.min(left)) {
                                Ok(()) => continue,
                                Err(RecvTimeoutError::Timeout) => break,
                                Err(RecvTimeoutError::Disconnected) => return,
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(inner) = inner.upgrade() else { return };
                inner.reload();
            }
        })
        .map_err(|e| notify::Error::generic(&format!("cannot start the reload thread: {e}")))?;
    Ok(watcher)
}
