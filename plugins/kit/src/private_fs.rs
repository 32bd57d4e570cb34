//! Files a plugin keeps for itself (job scripts, env files, state, volume files
//! that can hold Secrets): created with their final mode from the start, never
//! readable by another local user in between, in directories only the plugin's
//! user can traverse.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the plugin's own directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the plugin's own files.
pub const FILE_MODE: u32 = 0o600;

/// `mkdir -p` whose every created directory is 0700 from the start. Existing
/// directories are left as they are.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Make `path` (and missing parents, 0700) and set it to exactly 0700.
pub fn ensure_private_dir(path: &Path) -> std::io::Result<()> {
    create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Write a new file (replacing any old one) created with `mode` from the start
/// (the umask can only take bits away, so the exact mode is set afterwards on
/// the open descriptor, before any content is written).
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & FILE_MODE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents)
}

/// Write a private (0600) file atomically: a temporary file beside it, synced,
/// renamed over it, and the directory synced.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    write_new(&tmp, contents, FILE_MODE)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_final_from_the_start() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b");
        create_dir_all(&deep).unwrap();
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        let f = deep.join("job.sh");
        write_new(&f, b"#!/bin/sh\n", 0o700).unwrap();
        assert_eq!(mode(&f), 0o700);
        write_new(&f, b"x", 0o400).unwrap();
        assert_eq!(
            (mode(&f), std::fs::read(&f).unwrap()),
            (0o400, b"x".to_vec())
        );
        let s = deep.join("state.json");
        write_atomic(&s, b"{}").unwrap();
        write_atomic(&s, b"{\"a\":1}").unwrap();
        assert_eq!(mode(&s), 0o600);
        assert_eq!(std::fs::read_to_string(&s).unwrap(), "{\"a\":1}");
        ensure_private_dir(d.path()).unwrap();
        assert_eq!(mode(d.path()), 0o700);
    }
}
