//! A set of keys a task claims while it works on them (a remote pod being
//! sent or deleted, a container whose log is followed), so no two tasks do
//! the same work.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<HashSet<String>>,
    /// Notified when a claim is released or its holder reports progress.
    progress: tokio::sync::Notify,
}

impl Claims {
    /// Claim `key`; false when someone holds it already.
    pub fn claim(&self, key: &str) -> bool {
        self.lock().insert(key.to_string())
    }

    pub fn release(&self, key: &str) {
        self.lock().remove(key);
        self.progress.notify_waiters();
    }

    /// The holder of a claim made progress that waiters may look at.
    pub fn progressed(&self) {
        self.progress.notify_waiters();
    }

    /// Wait until `done()` holds or `key` is not claimed, looked at after each
    /// release or progress.
    pub async fn wait(&self, key: &str, done: impl Fn() -> bool) {
        loop {
            let n = self.progress.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if done() || !self.is_held(key) {
                return;
            }
            n.await;
        }
    }

    pub fn is_held(&self, key: &str) -> bool {
        self.lock().contains(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_holder_at_a_time() {
        let c = super::Claims::default();
        assert!(c.claim("a"));
        assert!(!c.claim("a"));
        assert!(c.is_held("a"));
        c.release("a");
        assert!(c.claim("a"));
    }
}
