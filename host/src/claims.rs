//! A set of keys a task claims while it works on them (a remote pod being
//! sent or deleted, a container whose log is followed), so no two tasks do
//! the same work.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<HashSet<String>>,
}

impl Claims {
    /// Claim `key`; false when someone holds it already.
    pub fn claim(&self, key: &str) -> bool {
        self.lock().insert(key.to_string())
    }

    pub fn release(&self, key: &str) {
        self.lock().remove(key);
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
