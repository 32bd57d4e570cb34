//! One host per data root: a second one would corrupt the state. The lock is
//! an exclusive `flock` on `<DataRootFolder>/lock`, holding the holder's pid.
//! A process killed with `kill -9` holds it until the kernel has closed its
//! files, which can take a moment (a systemd restart is that fast): the next
//! one waits for it, bounded, instead of failing.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// How long a starting host waits for the previous holder to go.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data root {dir} is in use by another interlink-cri{holder} (still held after waiting {waited:?})"
    )]
    Busy {
        dir: PathBuf,
        holder: String,
        waited: Duration,
    },
    #[error("lock {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
}

/// The held lock; dropping it releases the data root.
pub struct DataRootLock {
    _lock: Flock<File>,
}

/// Lock `dir` (created if missing), waiting up to `wait` for a holder to exit.
pub fn lock(dir: &Path, wait: Duration) -> Result<DataRootLock, LockError> {
    let path = dir.join("lock");
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Open {
                path: path.clone(),
                source,
            })
    };
    let start = Instant::now();
    let mut told = false;
    loop {
        match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                // who holds it, for the next one's message
                let _ = held.set_len(0);
                let _ = writeln!(&mut *held, "{}", std::process::id());
                return Ok(DataRootLock { _lock: held });
            }
            Err((_, nix::Error::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                if start.elapsed() >= wait {
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        holder,
                        waited: wait,
                    });
                }
                if !told {
                    tracing::info!(dir = %dir.display(), %holder, "data root held; waiting for the previous interlink-cri to exit");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, source)) => return Err(LockError::Lock { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_holder_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), Duration::ZERO).unwrap();
        let e = match lock(dir.path(), Duration::from_millis(100)) {
            Err(e) => e,
            Ok(_) => panic!("a second holder got the lock"),
        };
        let msg = e.to_string();
        assert!(msg.contains("is in use"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // the holder goes while the next one waits
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        lock(dir.path(), Duration::from_secs(30)).expect("taken once released");
        t.join().unwrap();
    }
}
