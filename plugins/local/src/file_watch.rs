//! Waiting for a file to change without reading it again and again: one
//! inotify instance for the whole process, read by a dedicated thread (so a
//! watch works from any Tokio runtime), waking whoever watches the file.
//! [`watch`] answers `None` when inotify is not available or the file cannot
//! be watched (the caller polls then).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::Notify;

/// One watcher's wake-up.
struct Slot {
    id: u64,
    notify: Notify,
    /// The kernel dropped the watch (the file went): wake-ups stop.
    dead: AtomicBool,
}

struct Shared {
    ino: Inotify,
    slots: Mutex<HashMap<WatchDescriptor, Vec<Arc<Slot>>>>,
    next: AtomicU64,
}

fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Option<&'static Shared>> = OnceLock::new();
    *SHARED.get_or_init(|| {
        let ino = match Inotify::init(InitFlags::IN_CLOEXEC) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("inotify unavailable ({e}): followed logs are polled");
                return None;
            }
        };
        let s: &'static Shared = Box::leak(Box::new(Shared {
            ino,
            slots: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }));
        let spawned = std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || read_loop(s));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the inotify thread ({e}): followed logs are polled");
            return None;
        }
        Some(s)
    })
}

fn read_loop(s: &'static Shared) {
    loop {
        let events = match s.ino.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("reading inotify events failed ({e}): waking every watcher");
                let slots = s.slots.lock().unwrap_or_else(|e| e.into_inner());
                for slot in slots.values().flatten() {
                    slot.dead.store(true, Ordering::Release);
                    slot.notify.notify_one();
                }
                return;
            }
        };
        let mut slots = s.slots.lock().unwrap_or_else(|e| e.into_inner());
        for ev in events {
            let gone = ev.mask.contains(AddWatchFlags::IN_IGNORED);
            let list = if gone {
                slots.remove(&ev.wd).unwrap_or_default()
            } else {
                slots.get(&ev.wd).cloned().unwrap_or_default()
            };
            for slot in list {
                if gone {
                    slot.dead.store(true, Ordering::Release);
                }
                slot.notify.notify_one();
            }
        }
    }
}

/// A watch of one file; dropping it stops watching.
pub struct Watch {
    wd: WatchDescriptor,
    slot: Arc<Slot>,
}

/// Watch `path` for writes (and its removal). `None` when it cannot be watched.
pub fn watch(path: &Path) -> Option<Watch> {
    let s = shared()?;
    // under the lock: the reader cannot see the descriptor before its slot is in
    let mut slots = s.slots.lock().unwrap_or_else(|e| e.into_inner());
    let wd = match s.ino.add_watch(
        path,
        AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF,
    ) {
        Ok(wd) => wd,
        Err(e) => {
            tracing::debug!(path = %path.display(), "cannot watch a log file ({e}): polling it");
            return None;
        }
    };
    let slot = Arc::new(Slot {
        id: s.next.fetch_add(1, Ordering::Relaxed),
        notify: Notify::new(),
        dead: AtomicBool::new(false),
    });
    slots.entry(wd).or_default().push(slot.clone());
    Some(Watch { wd, slot })
}

impl Watch {
    /// Wait for the next change after the last one waited for (a change
    /// that came meanwhile counts: it is not lost).
    pub async fn changed(&self) {
        self.slot.notify.notified().await
    }

    /// Whether the kernel dropped the watch (no more wake-ups will come).
    pub fn is_dead(&self) -> bool {
        self.slot.dead.load(Ordering::Acquire)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(s) = shared() else { return };
        let mut slots = s.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = slots.get_mut(&self.wd) {
            list.retain(|x| x.id != self.slot.id);
            if list.is_empty() {
                slots.remove(&self.wd);
                let _ = s.ino.rm_watch(self.wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_wakes_the_watcher_and_two_watchers_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        std::fs::write(&p, "").unwrap();
        let a = watch(&p).expect("inotify works here");
        let b = watch(&p).expect("inotify works here");
        // nothing written: no wake-up
        assert!(
            tokio::time::timeout(Duration::from_millis(100), a.changed())
                .await
                .is_err()
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"x\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), a.changed())
            .await
            .expect("woken by the write");
        tokio::time::timeout(Duration::from_secs(5), b.changed())
            .await
            .expect("the second watcher too");
        drop(a);
        f.write_all(b"y\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), b.changed())
            .await
            .expect("one watcher gone, the other still woken");
        assert!(watch(&dir.path().join("missing")).is_none());
    }
}
