//! What the host's benches share: a CRI client connection made as kubelet
//! makes one, percentiles, and this process's CPU time and memory.
//! (Each bench uses a part of it.)
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Uri};

/// A client connection to the CRI socket at `path`, as kubelet's makes one:
/// grpc-go, which kubelet's CRI client leaves at its defaults, sizes its
/// HTTP/2 receive windows from the bandwidth-delay product it measures (up to
/// 16 MiB); hyper's adaptive window is the same estimator.
pub async fn connect(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .http2_adaptive_window(true)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

/// The `p` quantile (0..=1) of `v` (sorted in place).
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU time of this process so far, user and system.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`):
/// what the process holds, apart from what the allocator keeps free.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Anonymous and file-backed resident memory and thread count of this
/// process, from `/proc/self/status`, and what the allocator holds free.
pub fn memory_breakdown() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    // SAFETY: mallinfo2 only reads the allocator's counters
    let m = unsafe { libc::mallinfo2() };
    format!(
        "anon {:.1} MiB, file {:.1} MiB, {} threads, allocator free {:.1} MiB",
        field("RssAnon:") as f64 / 1024.0,
        field("RssFile:") as f64 / 1024.0,
        field("Threads:"),
        m.fordblks as f64 / 1048576.0
    )
}
