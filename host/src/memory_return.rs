//! Giving freed memory back to the system. glibc's allocator keeps what a
//! burst of pods used (one arena per thread that allocated, free pages kept
//! for reuse), so a node whose pods were removed would stay at its peak RSS.
//! After the number of pods this runtime tracks went down, and once it has
//! been steady for a check, the free pages of every arena are returned
//! (`malloc_trim`), after the store's maps gave back the room they kept for
//! the removed records. Nothing is done while the count only grows or holds.

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Runtime;

/// How often the count of tracked pods is looked at.
const CHECK: Duration = Duration::from_secs(10);

/// Watch the number of tracked sandboxes and containers; after a drop that has
/// settled, return freed memory.
pub async fn run(rt: Arc<Runtime>) {
    let count = |rt: &Runtime| {
        let st = rt.store.read();
        st.sandboxes.len() + st.containers.len() + st.remotes.len()
    };
    let mut last = count(&rt);
    // the most seen since memory was last returned
    let mut peak_since_trim = last;
    loop {
        tokio::time::sleep(CHECK).await;
        let now = count(&rt);
        peak_since_trim = peak_since_trim.max(now);
        let settled = now == last;
        last = now;
        if settled && now < peak_since_trim {
            let t0 = std::time::Instant::now();
            rt.store.update(|st, _| st.shrink_to_fit());
            let returned = trim();
            tracing::debug!(
                records = now,
                peak = peak_since_trim,
                returned,
                took = ?t0.elapsed(),
                "returned freed memory to the system"
            );
            peak_since_trim = now;
        }
    }
}

/// At start: at most two allocator arenas unless the admin set
/// `MALLOC_ARENA_MAX` (glibc makes one per thread that allocates, up to eight
/// per core; memory freed in one cannot serve another, so a burst of pods
/// spread over many arenas stays resident). Measured with the `status_watch`
/// bench (`cycles`, RSS after each of three 2,000-pod cycles): with glibc's
/// default the third was +23 % over the first; with two arenas +0.8 % to +14 %
/// (2026-12-02, three runs); with two arenas and the store's maps shrunk,
/// 46.1 -> 41.0 -> 43.8 MiB and 40.4 -> 48.1 -> 48.8 MiB (2026-12-03, two
/// runs; 51–57 MiB without the shrink). jemalloc (tikv-jemallocator, two
/// arenas, purged the same way) did no better here: 50.8 -> 54.1 MiB;
/// mimalloc (its own purging plus `mi_collect`) worse: 70.8 -> 92.8 MiB.
/// After the status path stopped churning 10,000-pod bodies (2026-12-03
/// afternoon), four runs: +7.8 %, +7.2 %, and with a fixed 256 KiB mmap
/// threshold -4.4 %, +7.5 % (not set: no steadier). With the status path
/// decoding only what changed (2026-12-03 evening): +23.0 %, -11.1 %, +9.9 %:
/// the RSS after a cycle wanders between 33 and 41 MiB while the heap in use
/// stays at 7.8–8.3 MiB (fragmentation of what glibc keeps, not growth).
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Return the free pages of every arena; whether any were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
