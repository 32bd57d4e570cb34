//! Helpers for the WebAssembly extension tests: the built guest modules and
//! dropping them into an extension folder.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::repo_root;

/// The guest modules, built for wasm32-wasip2 by `scripts/build-guests.sh`.
pub fn guest_dir() -> PathBuf {
    repo_root().join("guests/target/wasm32-wasip2/release")
}

static BUILD: Mutex<bool> = Mutex::new(false);

/// Path of a built guest module (`accelerator_resources`, `hostile`, ...).
/// Builds the guests (scripts/build-guests.sh) once if one is missing.
pub fn guest(name: &str) -> PathBuf {
    let path = guest_dir().join(format!("{name}.wasm"));
    if path.is_file() {
        return path;
    }
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !*built && !path.is_file() {
        let status =
            std::process::Command::new(repo_root().join("scripts/build-guests.sh")).status();
        *built = true;
        if !matches!(status, Ok(s) if s.success()) {
            panic!(
                "building the WebAssembly guests failed ({status:?}): run scripts/build-guests.sh \
                 (needs `rustup target add wasm32-wasip2`)"
            );
        }
    }
    assert!(
        path.is_file(),
        "guest module {} missing: run scripts/build-guests.sh",
        path.display()
    );
    path
}

/// Write a file atomically (temporary file + rename), as a careful admin does.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("parent");
    std::fs::create_dir_all(dir).expect("create folder");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Drop guest `guest` into `<dir>/<hook>/<file>` with its configuration
/// (`<file stem>.json`) when given; removes a stale configuration otherwise.
pub fn install(
    dir: &Path,
    hook: &str,
    file: &str,
    guest_name: &str,
    config: Option<&str>,
) -> PathBuf {
    let target = dir.join(hook).join(file);
    let cfg = target.with_extension("json");
    match config {
        Some(c) => write_atomic(&cfg, c.as_bytes()),
        None => {
            let _ = std::fs::remove_file(&cfg);
        }
    }
    let bytes = std::fs::read(guest(guest_name)).expect("read guest");
    write_atomic(&target, &bytes);
    target
}
