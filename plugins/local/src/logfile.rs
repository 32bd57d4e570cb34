//! Answering `/getLogs` from a container's log file (CRI format, one entry per
//! line: `<RFC 3339 time> <stdout|stderr> <F|P> <text>`, `P` for a piece of a
//! longer line): since-filter, tail, timestamps, byte limit, follow.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use interlink::ContainerLogOpts;
use jiff::Timestamp;

/// How often a following reader looks for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Largest chunk a following reader emits at once.
const CHUNK: usize = 64 * 1024;

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

/// The start offsets of the last `n` logical lines (an `F` entry ends one).
fn tail_start(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    // walk entries backwards; count F entries except the trailing incomplete line
    let mut count = 0;
    let mut end = data.len();
    while end > 0 {
        let start = data[..end - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        if let Some(e) = parse(&data[start..end - 1])
            && !e.partial
        {
            count += 1;
            if count > n {
                return end;
            }
        }
        end = start;
    }
    0
}

/// Everything the file holds now, filtered by `opts` (no follow). Answers the
/// bytes and the offset just past the last whole entry read.
pub fn read_bounded(
    path: &std::path::Path,
    opts: &ContainerLogOpts,
    r: &Render,
) -> std::io::Result<(Vec<u8>, u64, bool)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, false)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if r.since.is_none() && opts.tail > 0 {
        return read_tail(&mut f, len, opts, r);
    }
    if r.since.is_none() && opts.limit_bytes > 0 {
        return read_head(&mut f, len, opts.limit_bytes as usize, r);
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let data = &data[..whole];
    let start = if opts.tail > 0 {
        tail_start(data, opts.tail as usize)
    } else {
        0
    };
    let mut out = Vec::new();
    let mut mid = false;
    // a since-filtered tail: filter first, as kubelet does, then take the tail
    if r.since.is_some() && opts.tail > 0 {
        let mut filtered = Vec::new();
        for line in data.split_inclusive(|b| *b == b'\n') {
            if parse(line.strip_suffix(b"\n").unwrap_or(line))
                .is_some_and(|e| r.since.is_none_or(|s| e.ts >= s))
            {
                filtered.extend_from_slice(line);
            }
        }
        let s = tail_start(&filtered, opts.tail as usize);
        render(
            &filtered[s..],
            &Render {
                since: None,
                ..r.clone()
            },
            &mut mid,
            &mut out,
        );
    } else {
        render(&data[start..], r, &mut mid, &mut out);
    }
    if opts.limit_bytes > 0 && out.len() > opts.limit_bytes as usize {
        out.truncate(opts.limit_bytes as usize);
    }
    Ok((out, whole as u64, mid))
}

fn read_range(f: &mut std::fs::File, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((end - start) as usize);
    f.take(end - start).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The last `opts.tail` lines, reading only as much of the end of the file as needed.
fn read_tail(
    f: &mut std::fs::File,
    len: u64,
    opts: &ContainerLogOpts,
    r: &Render,
) -> std::io::Result<(Vec<u8>, u64, bool)> {
    let tail = opts.tail as usize;
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let buf = read_range(f, start, len)?;
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        // a window that starts inside the file starts inside an entry: skip it
        let skip = if start > 0 {
            buf[..whole]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(whole, |p| p + 1)
        } else {
            0
        };
        let data = &buf[skip..whole];
        let complete = data
            .split(|b| *b == b'\n')
            .filter(|l| parse(l).is_some_and(|e| !e.partial))
            .count();
        // more whole lines than asked: the first asked for starts inside the window
        if start == 0 || complete > tail {
            let s = tail_start(data, tail);
            let (mut out, mut mid) = (Vec::new(), false);
            render(&data[s..], r, &mut mid, &mut out);
            if opts.limit_bytes > 0 {
                out.truncate(opts.limit_bytes as usize);
            }
            return Ok((out, start + whole as u64, mid));
        }
        window = window.saturating_mul(4);
    }
}

/// The first `limit` bytes, reading only as much of the file as needed.
fn read_head(
    f: &mut std::fs::File,
    len: u64,
    limit: usize,
    r: &Render,
) -> std::io::Result<(Vec<u8>, u64, bool)> {
    let (mut out, mut mid, mut off) = (Vec::new(), false, 0u64);
    while off < len && out.len() < limit {
        let buf = read_range(f, off, (off + 256 * 1024).min(len))?;
        let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
            break;
        };
        render(&buf[..=last], r, &mut mid, &mut out);
        off += last as u64 + 1;
    }
    out.truncate(limit);
    Ok((out, off, mid))
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
}

impl Follower {
    /// New whole entries, rendered; empty when there are none yet.
    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
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
        f.take(want).read_to_end(&mut buf)?;
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

    /// The log as a stream: whatever comes, until the container ends (and its
    /// last output is sent) or the byte limit is reached.
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
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(tail: i64, bytes: i64, ts: bool) -> ContainerLogOpts {
        ContainerLogOpts {
            tail,
            limit_bytes: bytes,
            timestamps: ts,
            ..Default::default()
        }
    }

    #[test]
    fn tail_bytes_since_timestamps() {
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
        let all = |o: &ContainerLogOpts| {
            String::from_utf8(read_bounded(&p, o, &Render::new(o, now)).unwrap().0).unwrap()
        };
        assert_eq!(all(&opts(0, 0, false)), "one\ntwo\nthree\n");
        assert_eq!(all(&opts(2, 0, false)), "two\nthree\n");
        assert_eq!(all(&opts(1, 0, false)), "three\n");
        assert_eq!(all(&opts(0, 6, false)), "one\ntw");
        assert_eq!(all(&opts(1, 0, true)), "2026-01-01T00:00:03Z three\n");
        let mut since = opts(0, 0, false);
        since.since_seconds = 8; // from 00:00:02
        assert_eq!(all(&since), "two\nthree\n");
        since.tail = 1;
        assert_eq!(all(&since), "three\n");
        since.since_seconds = 0;
        since.since_time = Some("2026-01-01T00:00:03Z".parse().unwrap());
        since.tail = 0;
        assert_eq!(all(&since), "three\n");
    }

    #[test]
    fn large_files_tail_and_head() {
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
        let read = |o: &ContainerLogOpts| {
            let (b, off, _) = read_bounded(&p, o, &Render::new(o, now)).unwrap();
            (String::from_utf8(b).unwrap(), off)
        };
        let (out, off) = read(&opts(2, 0, false));
        assert_eq!(out, "line 19999 of the big log\naaabbb\n");
        assert_eq!(off, text.len() as u64);
        let (out, _) = read(&opts(15_000, 0, false));
        assert_eq!(out.lines().count(), 15_000);
        assert!(out.starts_with("line 05001 of"), "{}", &out[..40]);
        let (out, _) = read(&opts(50_000, 0, false));
        assert_eq!(out.lines().count(), 20_001);
        let (out, off) = read(&opts(0, 30, false));
        assert_eq!(out, "line 00000 of the big log\nline");
        assert!(off > 0 && off < text.len() as u64);
        let (out, off) = read(&opts(0, 10_000_000, false));
        assert_eq!(out.lines().count(), 20_001);
        assert_eq!(off, text.len() as u64);
    }

    /// A bounded Follower streams the file in chunks with what read_bounded
    /// answers in one piece, and stops at `end` even when the file grows.
    #[tokio::test]
    async fn bounded_stream_matches_the_whole_read() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.log");
        let mut text = String::new();
        for i in 0..10_000 {
            let ts = if i < 5_000 { "01" } else { "05" };
            text.push_str(&format!(
                "2026-01-01T00:00:{ts}Z stdout F line {i:05} of the big log\n"
            ));
        }
        text.push_str("2026-01-01T00:00:06Z stdout P aaa\n2026-01-01T00:00:06Z stdout F bbb\n");
        std::fs::write(&p, &text).unwrap();
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let mut since = opts(0, 0, true);
        since.since_seconds = 6;
        for o in [opts(0, 0, false), opts(0, 100_000, true), since] {
            let r = Render::new(&o, now);
            let whole = read_bounded(&p, &o, &r).unwrap().0;
            let f = Follower {
                path: p.clone(),
                offset: 0,
                render: r,
                mid_line: false,
                remaining: (o.limit_bytes > 0).then_some(o.limit_bytes as usize),
                finished: Arc::new(|| true),
                end: Some(text.len() as u64),
            };
            let mut s = f.into_stream(Vec::new());
            let mut streamed = Vec::new();
            let mut chunks = 0;
            while let Some(c) = s.next().await {
                streamed.extend_from_slice(&c.unwrap());
                chunks += 1;
                if chunks == 1 {
                    // output written after the request is not part of the answer
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                    f.write_all(b"2026-01-01T00:00:07Z stdout F late\n")
                        .unwrap();
                }
            }
            assert!(chunks > 1, "streamed in chunks");
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(whole).unwrap()
            );
            std::fs::write(&p, &text).unwrap();
        }
    }
}
