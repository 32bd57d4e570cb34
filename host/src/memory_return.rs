//! Giving freed memory back to the system. glibc's allocator keeps what a
//! burst of pods used (one arena per thread that allocated, free pages kept
//! for reuse), so a node whose pods were removed would stay at its peak RSS.
//! After the number of pods this runtime tracks went down, and once it has
//! been steady for a check, the free pages of every arena are returned
//! (`malloc_trim`), after the store's maps gave back the room they kept for
//! the removed records; once more after the request caches that outlive the
//! pods ([`interlink::last_body`]) let go. Nothing is done while the count only
//! grows or holds.

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Runtime;

/// How often the count of tracked pods is looked at.
const CHECK: Duration = Duration::from_secs(10);

/// After memory was returned, how long until it is returned once more: the
/// last request bodies and what was made of them (the API server's and the
/// plugin's pod lists, the last status answer: [`interlink::last_body`]) are
/// let go only after they went unused this long, after the pods were gone.
const AGAIN_AFTER: Duration = interlink::last_body::UNUSED_FOR.saturating_add(CHECK);

/// Watch the number of tracked sandboxes and containers; after a drop that has
/// settled, return freed memory, and once more after the request caches let go.
pub async fn run(rt: Arc<Runtime>) {
    let count = |rt: &Runtime| {
        let st = rt.store.read();
        st.sandboxes.len() + st.containers.len() + st.remotes.len()
    };
    let mut last = count(&rt);
    // the most seen since memory was last returned
    let mut peak_since_trim = last;
    // when memory is to be returned once more
    let mut again_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(CHECK).await;
        let now = count(&rt);
        peak_since_trim = peak_since_trim.max(now);
        let settled = now == last;
        last = now;
        let dropped = settled && now < peak_since_trim;
        let again = again_at.is_some_and(|t| tokio::time::Instant::now() >= t);
        if dropped || again {
            let t0 = std::time::Instant::now();
            if dropped {
                rt.store.update(|st, _| st.shrink_to_fit());
            }
            let returned = trim();
            tracing::debug!(
                records = now,
                peak = peak_since_trim,
                returned,
                took = ?t0.elapsed(),
                "returned freed memory to the system"
            );
            peak_since_trim = now;
            again_at = dropped.then(|| tokio::time::Instant::now() + AGAIN_AFTER);
        }
    }
}

/// At start: one allocator arena unless the admin set `MALLOC_ARENA_MAX`
/// (glibc makes one per thread that allocates, up to eight per core; memory
/// freed in one cannot serve another, so a burst of pods spread over many
/// arenas stays resident, and each arena's heap grows apart from the others). Measured with the `status_watch`
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
/// With a second trim after the request caches let go (2026-12-03, night):
/// 36.8 -> 41.4 -> 41.9 MiB (+13.9 %); anonymous 18.3 -> 23.4 MiB, file-backed
/// 18.5 MiB throughout, heap in use 7.8–7.9 MiB; the second trim gave back
/// 0.2–0.3 MiB. A fixed `MALLOC_MMAP_THRESHOLD_=131072`: 32.6 -> 37.3 MiB
/// (+14.6 %), no steadier. A heap profile (valgrind's dhat, the process ended
/// right after a 300-pod cycle) finds 4.2 MB live, most of it allocated at start (the
/// event and status broadcast rings, 2.6 MB) and the rest capacity kept for
/// reuse (HTTP/2 stream slabs, the server's status map): no pod's data.
/// One arena (2026-12-03, night, three runs): 37.5 -> 39.7 MiB (+6.0 %),
/// 31.8 -> 33.6 MiB (+5.7 %), 32.9 -> 34.3 MiB (+4.3 %); the allocator's heap stays the size it
/// reached in the first cycle (74–90 MiB of address space, mostly given back)
/// where with two it grew each cycle (68 -> 100 -> 106 MiB). Throughput did
/// not change: lifecycle 30.0–31.8 pods/s with one arena, 30.8–30.9 with two;
/// `ListContainers` of 10,000 p50 20.3 / 20.6 ms (threads keep their own
/// caches of small blocks, so they seldom meet at the arena's lock).
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
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
