//! A container's log from its output file: since, tail, timestamps, byte limit,
//! and following while the container runs.
//!
//! The file is never read whole: `Tail` finds where its lines start by reading
//! the file backwards ([`interlink_plugin_kit::log_tail`]), and the answer is
//! streamed from there in [`CHUNK`]-sized reads.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use interlink::ContainerLogOpts;
use jiff::Timestamp;

/// One stored line: `RFC3339 SP text`; lines without a readable time keep `None`.
fn split_line(line: &str) -> (Option<Timestamp>, &str) {
    if let Some((ts, rest)) = line.split_once(' ')
        && ts.ends_with('Z')
        && let Ok(t) = ts.parse::<Timestamp>()
    {
        return (Some(t), rest);
    }
    (None, line)
}

/// The earliest time a line may have, from `SinceSeconds`/`SinceTime`.
pub fn since(opts: &ContainerLogOpts, now: Timestamp) -> Option<Timestamp> {
    if let Some(t) = opts.since_time {
        return Some(t);
    }
    // a `SinceSeconds` before the earliest time there is asks for every line
    (opts.since_seconds > 0)
        .then(|| {
            now.checked_sub(jiff::SignedDuration::from_secs(opts.since_seconds))
                .ok()
        })
        .flatten()
}

fn render_line(out: &mut Vec<u8>, line: &str, timestamps: bool) {
    let (t, text) = split_line(line);
    if timestamps {
        match t {
            Some(_) => out.extend_from_slice(line.as_bytes()),
            None => out.extend_from_slice(text.as_bytes()),
        }
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'\n');
}

fn keep(line: &str, since: Option<Timestamp>) -> bool {
    match (since, split_line(line).0) {
        (Some(s), Some(t)) => t >= s,
        _ => true,
    }
}

/// Largest piece of the file read at once.
pub const CHUNK: usize = interlink_plugin_kit::log_tail::BLOCK;

/// Where the answer starts: the beginning of the last `Tail` lines kept by the
/// since-filter (0 without `Tail`), found by reading `path[..end]` backwards.
fn start_offset(
    file: &std::fs::File,
    end: u64,
    opts: &ContainerLogOpts,
    since: Option<Timestamp>,
) -> std::io::Result<u64> {
    let tail = u64::try_from(opts.tail).unwrap_or(0);
    interlink_plugin_kit::log_tail::start_of_last_lines(file, end, tail, |head| {
        keep(&String::from_utf8_lossy(head), since)
    })
}

/// Where a reader stands.
#[derive(Default)]
struct Reader {
    path: PathBuf,
    /// Bytes of the file already handled.
    offset: u64,
    /// Read no further (`None`: follow the file as it grows).
    end: Option<u64>,
    /// Bytes already sent (for the byte limit).
    sent: u64,
    partial: Vec<u8>,
    opts: ContainerLogOpts,
    since: Option<Timestamp>,
    poll: Duration,
    /// The start (and, for a plain read, the end) has been found.
    started: bool,
    done: bool,
}

/// Read the next piece (at most [`CHUNK`] bytes) from `offset`; answers its
/// complete lines rendered, and whether the end (of the file or `end`) was reached.
fn read_more(f: &mut Reader) -> std::io::Result<(Vec<u8>, bool)> {
    let mut file = match std::fs::File::open(&f.path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(e),
    };
    let want = match f.end {
        Some(end) => end.saturating_sub(f.offset).min(CHUNK as u64),
        None => CHUNK as u64,
    };
    file.seek(SeekFrom::Start(f.offset))?;
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut buf)?;
    let at_end = (buf.len() as u64) < want || f.end.is_some_and(|e| f.offset + want >= e);
    f.offset += buf.len() as u64;
    f.partial.extend_from_slice(&buf);
    let Some(last_nl) = f.partial.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), at_end));
    };
    let rest = f.partial.split_off(last_nl + 1);
    let complete = std::mem::replace(&mut f.partial, rest);
    let text = String::from_utf8_lossy(&complete);
    let mut out = Vec::new();
    for l in text.lines() {
        if keep(l, f.since) {
            render_line(&mut out, l, f.opts.timestamps);
        }
    }
    Ok((out, at_end))
}

/// The log as it is now (no follow): since-filter, tail, timestamps and byte
/// limit applied, streamed in pieces; memory stays bounded by the longest line.
pub fn read(path: &Path, opts: ContainerLogOpts) -> crate::LogStream {
    stream(path, opts, Duration::ZERO, Arc::new(|| true), false)
}

/// Follow a log file: first its lines as [`read`] gives them, then new lines as
/// they come, until `finished()` says the container ended (then the rest is sent).
pub fn follow(
    path: &Path,
    opts: ContainerLogOpts,
    poll: Duration,
    finished: impl Fn() -> bool + Send + Sync + 'static,
) -> crate::LogStream {
    stream(path, opts, poll, Arc::new(finished), true)
}

fn stream(
    path: &Path,
    opts: ContainerLogOpts,
    poll: Duration,
    finished: Arc<dyn Fn() -> bool + Send + Sync>,
    follow: bool,
) -> crate::LogStream {
    let st = Reader {
        path: path.to_path_buf(),
        since: since(&opts, Timestamp::now()),
        opts,
        poll,
        ..Reader::default()
    };
    Box::pin(futures::stream::unfold(
        (st, finished),
        move |(mut st, finished)| async move {
            if !st.started {
                st.started = true;
                let (s, r) = blocking(st, if follow { begin_follow } else { begin_read }).await;
                st = s;
                if let Err(e) = r {
                    st.done = true;
                    return Some((Err(e), (st, finished)));
                }
            }
            loop {
                if st.done {
                    return None;
                }
                // decide "finished" before reading, so the last lines are not lost
                let end_now = !follow || finished();
                let (s, r) = blocking(st, read_more).await;
                st = s;
                let (mut chunk, at_end) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), (st, finished)));
                    }
                };
                if at_end && end_now {
                    if !st.partial.is_empty() {
                        let p =
                            String::from_utf8_lossy(&std::mem::take(&mut st.partial)).into_owned();
                        if keep(&p, st.since) {
                            render_line(&mut chunk, &p, st.opts.timestamps);
                        }
                    }
                    st.done = true;
                } else if chunk.is_empty() {
                    if at_end {
                        tokio::time::sleep(st.poll).await;
                    }
                    continue;
                }
                if st.opts.limit_bytes > 0 {
                    let left = (st.opts.limit_bytes as u64).saturating_sub(st.sent) as usize;
                    if chunk.len() >= left {
                        chunk.truncate(left);
                        st.done = true;
                    }
                }
                st.sent += chunk.len() as u64;
                if chunk.is_empty() {
                    continue;
                }
                return Some((Ok(Bytes::from(chunk)), (st, finished)));
            }
        },
    ))
}

/// A plain read: from the start of the tail to the file's length now.
fn begin_read(st: &mut Reader) -> std::io::Result<()> {
    begin(st, false)
}

/// A follow: from the start of the tail on, as the file grows.
fn begin_follow(st: &mut Reader) -> std::io::Result<()> {
    begin(st, true)
}

fn begin(st: &mut Reader, follow: bool) -> std::io::Result<()> {
    let file = match std::fs::File::open(&st.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // no output yet: a follow waits for it, a read answers nothing
            st.end = (!follow).then_some(0);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if !follow {
        st.end = Some(len);
    }
    st.offset = start_offset(&file, len, &st.opts, st.since)?;
    Ok(())
}

/// Run `f` on the reader's state on a blocking thread (file reads), and give
/// the state back.
async fn blocking<T: Send + 'static>(
    mut st: Reader,
    f: fn(&mut Reader) -> std::io::Result<T>,
) -> (Reader, std::io::Result<T>) {
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut st);
        (st, r)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => (
            Reader {
                done: true,
                ..Reader::default()
            },
            Err(std::io::Error::other(e)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const STORED: &str = "2026-11-22T07:00:00.000001Z one\n2026-11-22T07:00:05.5Z two\nno time here\n2026-11-22T07:00:10Z three\n";

    async fn collect(s: crate::LogStream) -> String {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    async fn read_text(text: &str, opts: ContainerLogOpts) -> String {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, text).unwrap();
        collect(read(&p, opts)).await
    }

    fn tail(n: i64) -> ContainerLogOpts {
        ContainerLogOpts {
            tail: n,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn plain_tail_timestamps_bytes() {
        let o = ContainerLogOpts::default();
        assert_eq!(
            read_text(STORED, o).await,
            "one\ntwo\nno time here\nthree\n"
        );
        assert_eq!(read_text(STORED, tail(2)).await, "no time here\nthree\n");
        let o = ContainerLogOpts {
            tail: 1,
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(read_text(STORED, o).await, "2026-11-22T07:00:10Z three\n");
        let o = ContainerLogOpts {
            limit_bytes: 6,
            ..Default::default()
        };
        assert_eq!(read_text(STORED, o).await, "one\ntw");
        // a last line without its newline is part of a plain read
        assert_eq!(read_text("a\nb\nc", tail(2)).await, "b\nc\n");
        assert_eq!(read_text("", tail(2)).await, "");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(collect(read(&d.path().join("none.log"), tail(1))).await, "");
    }

    #[tokio::test]
    async fn since_filters_before_the_tail() {
        let o = ContainerLogOpts {
            since_time: Some("2026-11-22T07:00:06Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(read_text(STORED, o.clone()).await, "no time here\nthree\n");
        let o = ContainerLogOpts { tail: 1, ..o };
        assert_eq!(read_text(STORED, o).await, "three\n");
        // SinceSeconds against the present time
        let now = Timestamp::now();
        let text = format!(
            "{} old\n{} new\n{} newer\n",
            now - jiff::SignedDuration::from_secs(3600),
            now - jiff::SignedDuration::from_secs(10),
            now
        );
        let o = ContainerLogOpts {
            since_seconds: 60,
            ..Default::default()
        };
        assert_eq!(read_text(&text, o.clone()).await, "new\nnewer\n");
        let o = ContainerLogOpts { tail: 5, ..o };
        assert_eq!(read_text(&text, o).await, "new\nnewer\n");
    }

    /// A `SinceSeconds` reaching before the earliest representable time asks for
    /// every line; it used to panic on the subtraction.
    #[tokio::test]
    async fn huge_since_seconds_answers_every_line() {
        for secs in [400_000_000_000, i64::MAX] {
            let now = Timestamp::now();
            let o = ContainerLogOpts {
                since_seconds: secs,
                ..Default::default()
            };
            assert_eq!(since(&o, now), None);
            assert_eq!(
                read_text(STORED, o).await,
                "one\ntwo\nno time here\nthree\n"
            );
        }
    }

    /// Tail over a file of many read blocks, with and without a since-filter,
    /// against the same lines computed in memory.
    #[tokio::test]
    async fn tail_of_a_multi_block_file() {
        let mut text = String::new();
        let mut lines = Vec::new();
        for i in 0..40_000 {
            let s = if i % 2 == 0 { "00" } else { "30" };
            let l = format!("line {i:05} {}", "x".repeat(i % 97));
            text.push_str(&format!("2026-11-22T07:00:{s}Z {l}\n"));
            lines.push((s, l));
        }
        assert!(text.len() > 20 * CHUNK);
        for n in [1usize, 7, 3000, 39_999, 40_000, 50_000] {
            let want: String = lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            assert_eq!(read_text(&text, tail(n as i64)).await, want, "tail {n}");
            let kept: Vec<_> = lines.iter().filter(|(s, _)| *s == "30").collect();
            let want: String = kept[kept.len().saturating_sub(n)..]
                .iter()
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            let o = ContainerLogOpts {
                tail: n as i64,
                since_time: Some("2026-11-22T07:00:30Z".parse().unwrap()),
                ..Default::default()
            };
            assert_eq!(read_text(&text, o).await, want, "since, tail {n}");
        }
        // a byte limit over the streamed pieces
        let o = ContainerLogOpts {
            limit_bytes: 100_000,
            ..Default::default()
        };
        let out = read_text(&text, o).await;
        assert_eq!(out.len(), 100_000);
        assert!(out.starts_with("line 00000 \nline 00001 x\n"));
    }

    #[tokio::test]
    async fn follows_until_finished() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, "2026-11-22T07:00:00Z first\n2026-11-22T07:00:01Z par").unwrap();
        let flag = d.path().join("exit");
        let f2 = flag.clone();
        let mut s = follow(
            &p,
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
            Duration::from_millis(10),
            move || f2.exists(),
        );
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            Bytes::from_static(b"first\n")
        );
        let p2 = p.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
            f.write_all(b"tial\n2026-11-22T07:00:02Z last").unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::fs::write(&flag, "0").unwrap();
        });
        let rest = collect(s).await;
        writer.await.unwrap();
        assert_eq!(rest, "partial\nlast\n");
    }

    #[tokio::test]
    async fn follow_with_tail_starts_at_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("2026-11-22T07:00:00Z l{i}\n"));
        }
        std::fs::write(&p, &text).unwrap();
        let o = ContainerLogOpts {
            follow: true,
            tail: 2,
            ..Default::default()
        };
        let s = follow(&p, o, Duration::from_millis(10), || true);
        assert_eq!(collect(s).await, "l19998\nl19999\n");
    }

    #[tokio::test]
    async fn follow_respects_byte_limit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(&p, "2026-11-22T07:00:00Z 0123456789\n").unwrap();
        let s = follow(
            &p,
            ContainerLogOpts {
                follow: true,
                limit_bytes: 4,
                ..Default::default()
            },
            Duration::from_millis(10),
            || false,
        );
        let all: Vec<_> = s.collect().await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_ref().unwrap().as_ref(), b"0123");
    }
}
