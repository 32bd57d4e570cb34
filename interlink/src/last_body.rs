//! The last body of one kind of message, with what was made of it. A CRI host
//! polls the same pods round after round with the same request body, and gets
//! the same answer while nothing changes: the server and the plugin kit keep
//! the last body and what they made of it (decoded pods, a count, a
//! generation), and a body that is the same bytes is compared instead of
//! decoded or checked again.
//!
//! What is kept is let go after it was not used for a while (so memory comes
//! back when the host stops asking, e.g. after its last pod went away), and
//! replaced by the next body of another kind.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a kept body may go unused before it is let go.
pub const UNUSED_FOR: Duration = Duration::from_secs(30);

pub struct LastBody<T> {
    kept: Mutex<Option<Kept<T>>>,
}

struct Kept<T> {
    body: Bytes,
    value: T,
    used: Instant,
}

impl<T: Clone + Send + 'static> LastBody<T> {
    /// An empty one; inside a Tokio runtime, a task lets go of what was not
    /// used for [`UNUSED_FOR`] (it ends when the `LastBody` is dropped).
    pub fn new() -> Arc<LastBody<T>> {
        Self::letting_go_after(UNUSED_FOR)
    }

    fn letting_go_after(idle: Duration) -> Arc<LastBody<T>> {
        let me = Arc::new(LastBody {
            kept: Mutex::new(None),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<LastBody<T>> = Arc::downgrade(&me);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(idle / 2).await;
                    let Some(me) = weak.upgrade() else { break };
                    me.forget_unused(idle);
                }
            });
        }
        me
    }

    /// What was made of `body`, if it is the last body kept.
    pub fn get(&self, body: &[u8]) -> Option<T> {
        let mut kept = self.lock();
        let k = kept.as_mut().filter(|k| k.body == body)?;
        k.used = Instant::now();
        Some(k.value.clone())
    }

    /// Keep `body` and what was made of it, in place of the last one.
    pub fn put(&self, body: Bytes, value: T) {
        *self.lock() = Some(Kept {
            body,
            value,
            used: Instant::now(),
        });
    }

    /// What was made of `body`: kept, or made by `make` (and kept when it
    /// succeeds; a failure keeps the last body as it was).
    pub fn get_or_make<E>(
        &self,
        body: &Bytes,
        make: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(v) = self.get(body) {
            return Ok(v);
        }
        let v = make(body)?;
        self.put(body.clone(), v.clone());
        Ok(v)
    }

    /// Let go of the kept body if it was not used for `idle`.
    pub fn forget_unused(&self, idle: Duration) {
        let mut kept = self.lock();
        if kept.as_ref().is_some_and(|k| k.used.elapsed() >= idle) {
            *kept = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept<T>>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_give_what_was_made_and_a_failure_keeps_the_last() {
        let m = LastBody::<usize>::new();
        let a = Bytes::from_static(b"[1,2,3]");
        let count = |b: &[u8]| serde_json::from_slice::<Vec<u8>>(b).map(|v| v.len());
        assert_eq!(m.get_or_make(&a, count).unwrap(), 3);
        let again = m.get_or_make(
            &Bytes::from(b"[1,2,3]".to_vec()),
            |_| -> Result<usize, ()> { panic!("made twice") },
        );
        assert_eq!(again, Ok(3));
        assert!(m.get_or_make(&Bytes::from_static(b"[1,"), count).is_err());
        assert_eq!(m.get(b"[1,2,3]"), Some(3));
        assert_eq!(m.get_or_make(&Bytes::from_static(b"[]"), count).unwrap(), 0);
        assert_eq!(m.get(b"[1,2,3]"), None);
    }

    #[test]
    fn what_goes_unused_is_let_go() {
        let m = LastBody::<u8>::new();
        m.put(Bytes::from_static(b"x"), 1);
        m.forget_unused(Duration::from_secs(3600));
        assert_eq!(m.get(b"x"), Some(1));
        m.forget_unused(Duration::ZERO);
        assert_eq!(m.get(b"x"), None);
    }

    #[tokio::test]
    async fn inside_a_runtime_a_task_lets_go_of_it() {
        let m = LastBody::<u8>::letting_go_after(Duration::from_millis(100));
        m.put(Bytes::from_static(b"x"), 1);
        for _ in 0..100 {
            if m.lock().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("still kept after 5 s");
    }
}
