//! Answering `/getLogs` from a container's log file (CRI format, one entry per
//! line: `<RFC 3339 time> <stdout|stderr> <F|P> <text>`, `P` for a piece of a
//! longer line): since-filter, tail, timestamps, byte limit, follow.
//!
//! The file is never read whole: the tail's start is found by reading backwards
//! from the end ([`interlink_plugin_kit::log_tail`]) and the answer is streamed
//! from there in [`CHUNK`]-sized pieces.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use interlink::ContainerLogOpts;
use interlink_plugin_kit::log_tail;
use jiff::Timestamp;

/// How often a following reader looks for new output when the file cannot
/// be watched (no inotify, or the file does not exist yet).
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// While the file does not exist yet (a follow asked right after the pod was
/// created), the reader looks again after this, doubling up to
/// [`FOLLOW_POLL`]: the container's first line is not held back 100 ms.
pub const FOLLOW_FIRST_POLL: Duration = Duration::from_millis(2);

/// With a watch, a following reader still looks this often (a safety net:
/// every change wakes it before).
pub const FOLLOW_SAFETY: Duration = Duration::from_secs(30);

/// Set (to anything but `0`) in the environment, followed logs are polled
/// every [`FOLLOW_POLL`] instead of watched: for filesystems where inotify
/// does not see the writes (some network filesystems), and for comparison.
pub const POLL_ENV: &str = "INTERLINK_LOCAL_LOG_POLL";

fn poll_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os(POLL_ENV).is_some_and(|v| v != "0"))
}

/// Largest piece of the file read (and emitted) at once.
pub const CHUNK: usize = 64 * 1024;

struct Entry<'a> {
    ts: Timestamp,
    partial: bool,
    text: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    Some(Entry {
        ts,
        partial: tag == b"P",
        text,
    })
}

/// The render settings taken from the request.
#[derive(Debug, Clone)]
pub struct Render {
    pub since: Option<Timestamp>,
    pub timestamps: bool,
}

impl Render {
    pub fn new(opts: &ContainerLogOpts, now: Timestamp) -> Render {
        let since = match (opts.since_time, opts.since_seconds) {
            (Some(t), _) => Some(t),
            (None, s) if s > 0 => now.checked_sub(jiff::SignedDuration::from_secs(s)).ok(),
            _ => None,
        };
        Render {
            since,
            timestamps: opts.timestamps,
        }
    }
}

/// Render whole entries of `data` (each ending in `\n`). `mid_line` says the
/// previous entry was a partial one (its line continues here); it is updated.
fn render(data: &[u8], r: &Render, mid_line: &mut bool, out: &mut Vec<u8>) {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Some(e) = parse(line) else { continue };
        if r.since.is_some_and(|s| e.ts < s) {
            *mid_line = e.partial;
            continue;
        }
        if r.timestamps && !*mid_line {
            out.extend_from_slice(e.ts.to_string().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.text);
        if !e.partial {
            out.push(b'\n');
        }
        *mid_line = e.partial;
    }
}

/// Where the answer starts and, for a plain read, where it ends: the start of
/// the last `Tail` logical lines kept by the since-filter (0 without `Tail`),
/// and the end of the file's last whole entry. The file is read backwards from
/// its end in blocks ([`interlink_plugin_kit::log_tail`]), never whole.
pub fn range(path: &Path, opts: &ContainerLogOpts, r: &Render) -> std::io::Result<(u64, u64)> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let whole = log_tail::end_of_last_line(&f, len)?;
    let tail = u64::try_from(opts.tail).unwrap_or(0);
    // a logical line ends with an `F` entry; since-filtered first, as kubelet does
    let start = log_tail::start_of_last_lines(&f, whole, tail, |head| {
        parse(head).is_some_and(|e| !e.partial && r.since.is_none_or(|s| e.ts >= s))
    })?;
    Ok((start, whole))
}

/// The answer to `/getLogs` for the log file at `path`: its entries from the
/// start of the tail, since-filtered, with timestamps if asked and at most
/// `LimitBytes`; streamed in pieces of at most [`CHUNK`] bytes. Without
/// `finished` it stops at what the file holds now; with it, it follows the file
/// until `finished()` says no more output can come.
pub async fn stream(
    path: PathBuf,
    opts: &ContainerLogOpts,
    now: Timestamp,
    finished: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
) -> std::io::Result<interlink_plugin_kit::LogStream> {
    stream_notified(path, opts, now, finished, None).await
}

/// [`stream`], woken by `ended` (changed each time `finished` may have
/// changed its answer) instead of asking `finished` on a timer.
pub async fn stream_notified(
    path: PathBuf,
    opts: &ContainerLogOpts,
    now: Timestamp,
    finished: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ended: Option<tokio::sync::watch::Receiver<u64>>,
) -> std::io::Result<interlink_plugin_kit::LogStream> {
    let render = Render::new(opts, now);
    let (p, o, r) = (path.clone(), opts.clone(), render.clone());
    let (start, whole) = tokio::task::spawn_blocking(move || range(&p, &o, &r))
        .await
        .map_err(std::io::Error::other)??;
    let end = finished.is_none().then_some(whole);
    let f = Follower {
        path,
        offset: start,
        render,
        mid_line: false,
        remaining: (opts.limit_bytes > 0)
            .then(|| usize::try_from(opts.limit_bytes).unwrap_or(usize::MAX)),
        finished: finished.unwrap_or_else(|| Arc::new(|| true)),
        end,
        file: None,
        watch: None,
        ended,
        absent_wait: FOLLOW_FIRST_POLL,
    };
    Ok(f.into_stream(Vec::new()))
}

/// Reads new entries of a growing log file from `offset`.
pub struct Follower {
    pub path: PathBuf,
    pub offset: u64,
    pub render: Render,
    pub mid_line: bool,
    /// Bytes still allowed (`None`: no limit).
    pub remaining: Option<usize>,
    /// True once no more output can come (the container ended, the pod is gone).
    pub finished: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Read no further than this offset (`None`: follow the file as it grows).
    pub end: Option<u64>,
    /// The log file, kept open once it exists: what the container wrote before
    /// it ended is read even after the pod's directory has been removed.
    pub file: Option<std::fs::File>,
    /// The file's watch (see [`crate::file_watch`]), once the file exists.
    pub watch: Option<crate::file_watch::Watch>,
    /// Changes when `finished` may have changed its answer (`None`: ask it
    /// on every wake-up only).
    pub ended: Option<tokio::sync::watch::Receiver<u64>>,
    /// The next wait while the file does not exist yet (see [`FOLLOW_FIRST_POLL`]).
    pub absent_wait: Duration,
}

impl Follower {
    /// New whole entries, rendered; empty when there are none yet.
    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        if self.file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let want = match self.end {
            Some(end) => end.saturating_sub(self.offset).min(CHUNK as u64),
            None => CHUNK as u64,
        };
        if want == 0 {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.by_ref().take(want).read_to_end(&mut buf)?;
        let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
            if buf.len() >= CHUNK {
                // one entry larger than a chunk cannot happen (entries are at most 16 KiB)
                self.offset += buf.len() as u64;
            }
            return Ok(Vec::new());
        };
        self.offset += last_nl as u64 + 1;
        let mut out = Vec::new();
        render(&buf[..=last_nl], &self.render, &mut self.mid_line, &mut out);
        Ok(out)
    }

    /// Wait for the file to change or the container to end: by the file's
    /// watch and `ended` when there are both, else [`FOLLOW_POLL`].
    async fn wait(&mut self) {
        if self.watch.as_ref().is_some_and(|w| w.is_dead()) {
            self.watch = None;
        }
        if self.watch.is_none() && self.file.is_some() && self.ended.is_some() && !poll_forced() {
            self.watch = crate::file_watch::watch(&self.path);
            if self.watch.is_some() {
                // what was written before the watch began: read it first
                return;
            }
        }
        if self.file.is_none() {
            // not created yet: look again soon, then less and less often
            tokio::time::sleep(self.absent_wait).await;
            self.absent_wait = (self.absent_wait * 2).min(FOLLOW_POLL);
            return;
        }
        let (Some(w), Some(rx)) = (self.watch.as_ref(), self.ended.as_mut()) else {
            tokio::time::sleep(FOLLOW_POLL).await;
            return;
        };
        tokio::select! {
            _ = w.changed() => {}
            r = rx.changed() => {
                if r.is_err() {
                    // the pod's entry is gone: `finished` says so now
                    self.ended = None;
                }
            }
            _ = tokio::time::sleep(FOLLOW_SAFETY) => {}
        }
    }

    /// The log as a stream: whatever comes, until the container ends (and its
    /// last output is sent) or the byte limit is reached. `finished` is asked
    /// before each read, so once it says the container ended, the file is read
    /// to its end (everything written before the end) before the stream ends.
    pub fn into_stream(self, first: Vec<u8>) -> interlink_plugin_kit::LogStream {
        let state = (self, Some(first));
        Box::pin(futures::stream::unfold(
            state,
            |(mut f, first)| async move {
                if let Some(first) = first.filter(|b| !b.is_empty()) {
                    return Some((Ok(Bytes::from(first)), (f, None)));
                }
                loop {
                    if f.remaining == Some(0) {
                        return None;
                    }
                    if let Some(rx) = f.ended.as_mut() {
                        // seen now: a change after this wakes the wait below
                        rx.borrow_and_update();
                    }
                    let done = (f.finished)();
                    let before = f.offset;
                    let mut chunk = match f.read_new() {
                        Ok(c) => c,
                        Err(e) => return Some((Err(e), (f, None))),
                    };
                    if !chunk.is_empty() {
                        if let Some(rem) = f.remaining.as_mut() {
                            chunk.truncate(*rem);
                            *rem -= chunk.len();
                        }
                        return Some((Ok(Bytes::from(chunk)), (f, None)));
                    }
                    if f.offset != before {
                        // entries were read but all filtered out (since): read on
                        tokio::task::yield_now().await;
                        continue;
                    }
                    if done {
                        return None;
                    }
                    f.wait().await;
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn opts(tail: i64, bytes: i64, ts: bool) -> ContainerLogOpts {
        ContainerLogOpts {
            tail,
            limit_bytes: bytes,
            timestamps: ts,
            ..Default::default()
        }
    }

    /// What a plain (not following) `/getLogs` answers, and in how many pieces.
    async fn read(p: &Path, o: &ContainerLogOpts, now: Timestamp) -> (String, usize) {
        let mut s = stream(p.to_path_buf(), o, now, None).await.unwrap();
        let (mut out, mut pieces) = (Vec::new(), 0);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
            pieces += 1;
        }
        (String::from_utf8(out).unwrap(), pieces)
    }

    #[tokio::test]
    async fn tail_bytes_since_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        std::fs::write(
            &p,
            "2026-01-01T00:00:01Z stdout F one\n\
             2026-01-01T00:00:02Z stderr F two\n\
             2026-01-01T00:00:03Z stdout P thr\n\
             2026-01-01T00:00:03Z stdout F ee\n\
             2026-01-01T00:00:04Z stdout P no-newline",
        )
        .unwrap();
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let all = async |o: &ContainerLogOpts| read(&p, o, now).await.0;
        assert_eq!(all(&opts(0, 0, false)).await, "one\ntwo\nthree\n");
        assert_eq!(all(&opts(2, 0, false)).await, "two\nthree\n");
        assert_eq!(all(&opts(1, 0, false)).await, "three\n");
        assert_eq!(all(&opts(0, 6, false)).await, "one\ntw");
        assert_eq!(all(&opts(1, 0, true)).await, "2026-01-01T00:00:03Z three\n");
        let mut since = opts(0, 0, false);
        since.since_seconds = 8; // from 00:00:02
        assert_eq!(all(&since).await, "two\nthree\n");
        since.tail = 1;
        assert_eq!(all(&since).await, "three\n");
        since.since_seconds = 0;
        since.since_time = Some("2026-01-01T00:00:03Z".parse().unwrap());
        since.tail = 0;
        assert_eq!(all(&since).await, "three\n");
        // a SinceSeconds before the earliest time there is: every line, no panic
        for secs in [400_000_000_000, i64::MAX] {
            let mut o = opts(0, 0, false);
            o.since_seconds = secs;
            assert_eq!(all(&o).await, "one\ntwo\nthree\n");
        }
        assert_eq!(
            read(&dir.path().join("none"), &opts(1, 0, false), now)
                .await
                .0,
            ""
        );
    }

    #[tokio::test]
    async fn large_files_tail_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!(
                "2026-01-01T00:00:01Z stdout F line {i:05} of the big log\n"
            ));
        }
        // a long line split into pieces, at the end
        text.push_str("2026-01-01T00:00:02Z stdout P aaa\n2026-01-01T00:00:02Z stdout F bbb\n");
        std::fs::write(&p, &text).unwrap();
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let r = |o: &ContainerLogOpts| range(&p, o, &Render::new(o, now)).unwrap();
        assert_eq!(r(&opts(0, 0, false)), (0, text.len() as u64));
        let (start, _) = r(&opts(2, 0, false));
        assert_eq!(
            &text[start as usize..],
            "2026-01-01T00:00:01Z stdout F line 19999 of the big log\n\
             2026-01-01T00:00:02Z stdout P aaa\n2026-01-01T00:00:02Z stdout F bbb\n"
        );
        let (out, _) = read(&p, &opts(2, 0, false), now).await;
        assert_eq!(out, "line 19999 of the big log\naaabbb\n");
        let (out, pieces) = read(&p, &opts(15_000, 0, false), now).await;
        assert_eq!(out.lines().count(), 15_000);
        assert!(out.starts_with("line 05001 of"), "{}", &out[..40]);
        assert!(pieces > 1, "streamed in pieces");
        let (out, _) = read(&p, &opts(50_000, 0, false), now).await;
        assert_eq!(out.lines().count(), 20_001);
        let (out, _) = read(&p, &opts(0, 30, false), now).await;
        assert_eq!(out, "line 00000 of the big log\nline");
        let (out, _) = read(&p, &opts(0, 10_000_000, false), now).await;
        assert_eq!(out.lines().count(), 20_001);
        // since-filtered tail: only entries from 00:00:02 on count
        let mut o = opts(5, 0, false);
        o.since_time = Some("2026-01-01T00:00:02Z".parse().unwrap());
        assert_eq!(read(&p, &o, now).await.0, "aaabbb\n");
    }

    /// A plain read stops at what the file held when it was asked, even when
    /// the file grows meanwhile; a follow goes on until the container ends.
    #[tokio::test]
    async fn plain_read_stops_at_the_asked_end_and_follow_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.log");
        let mut text = String::new();
        for i in 0..10_000 {
            let ts = if i < 5_000 { "01" } else { "05" };
            text.push_str(&format!(
                "2026-01-01T00:00:{ts}Z stdout F line {i:05} of the big log\n"
            ));
        }
        std::fs::write(&p, &text).unwrap();
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let mut s = stream(p.clone(), &opts(0, 0, false), now, None)
            .await
            .unwrap();
        let mut streamed = Vec::new();
        let mut chunks = 0;
        while let Some(c) = s.next().await {
            streamed.extend_from_slice(&c.unwrap());
            chunks += 1;
            if chunks == 1 {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(b"2026-01-01T00:00:07Z stdout F late\n")
                    .unwrap();
            }
        }
        assert!(chunks > 1, "streamed in chunks");
        let out = String::from_utf8(streamed).unwrap();
        assert_eq!(out.lines().count(), 10_000);
        assert!(!out.contains("late"));

        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let finished: Arc<dyn Fn() -> bool + Send + Sync> =
            Arc::new(move || d2.load(std::sync::atomic::Ordering::SeqCst));
        let mut s = stream(p.clone(), &opts(1, 0, false), now, Some(finished))
            .await
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap().as_ref(), b"late\n");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b"2026-01-01T00:00:08Z stdout F later\n")
                .unwrap();
        }
        assert_eq!(s.next().await.unwrap().unwrap().as_ref(), b"later\n");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(s.next().await.is_none());
    }

    /// What the container wrote before it ended is delivered even when its
    /// log file is removed (the pod deleted) before the follower read it.
    #[tokio::test]
    async fn follow_drains_what_was_written_before_the_end_even_if_the_file_goes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        std::fs::write(&p, "2026-01-01T00:00:01Z stdout F ready\n").unwrap();
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let finished: Arc<dyn Fn() -> bool + Send + Sync> =
            Arc::new(move || d2.load(std::sync::atomic::Ordering::SeqCst));
        let mut s = stream(p.clone(), &opts(0, 0, false), now, Some(finished))
            .await
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap().as_ref(), b"ready\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"2026-01-01T00:00:02Z stdout F bye\n").unwrap();
        drop(f);
        std::fs::remove_file(&p).unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(s.next().await.unwrap().unwrap().as_ref(), b"bye\n");
        assert!(s.next().await.is_none());
    }
}
