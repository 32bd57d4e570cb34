//! Is the interLink API server answering? The ping loop records each answer;
//! `Status` and `/healthz` read it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Why the runtime is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the interLink API server has not answered /pinglink for {silent_s}s: {last_error}")]
pub struct NotReady {
    pub silent_s: i64,
    pub last_error: String,
}

#[derive(Debug)]
pub struct Readiness {
    last_ok: AtomicI64,
    last_error: Mutex<String>,
}

impl Readiness {
    /// Ready as of `now` (ns): the first ping has its whole timeout.
    pub fn new(now: i64) -> Readiness {
        Readiness {
            last_ok: AtomicI64::new(now),
            last_error: Mutex::new(String::new()),
        }
    }

    pub fn answered(&self, now: i64) {
        self.last_ok.store(now, Ordering::Relaxed);
    }

    pub fn failed(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
    }

    /// `Ok` when the server answered within `timeout` before `now`.
    pub fn check(&self, now: i64, timeout: Duration) -> Result<(), NotReady> {
        let age = now - self.last_ok.load(Ordering::Relaxed);
        if age > timeout.as_nanos() as i64 {
            return Err(NotReady {
                silent_s: age / 1_000_000_000,
                last_error: self
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_after_the_timeout_with_the_last_error() {
        let r = Readiness::new(0);
        let t = Duration::from_secs(10);
        assert!(r.check(5_000_000_000, t).is_ok());
        r.failed("connection refused");
        let e = r.check(20_000_000_000, t).unwrap_err();
        assert_eq!(e.silent_s, 20);
        assert!(e.to_string().contains("connection refused"));
        r.answered(20_000_000_000);
        assert!(r.check(21_000_000_000, t).is_ok());
    }
}
