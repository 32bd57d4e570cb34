//! A container's log from its output file: since, tail, timestamps, byte limit,
//! and following while the container runs.

use std::path::{Path, PathBuf};
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
    (opts.since_seconds > 0).then(|| now - jiff::SignedDuration::from_secs(opts.since_seconds))
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

/// Render stored log text according to the options (no follow).
pub fn render(stored: &str, opts: &ContainerLogOpts, now: Timestamp) -> Vec<u8> {
    let since = since(opts, now);
    let mut lines: Vec<&str> = stored.lines().filter(|l| keep(l, since)).collect();
    if opts.tail > 0 && lines.len() > opts.tail as usize {
        lines.drain(..lines.len() - opts.tail as usize);
    }
    let mut out = Vec::new();
    for l in lines {
        render_line(&mut out, l, opts.timestamps);
    }
    if opts.limit_bytes > 0 {
        out.truncate(opts.limit_bytes as usize);
    }
    out
}

/// Where a following reader stands.
struct Follow {
    path: PathBuf,
    /// Bytes of the file already handled.
    offset: u64,
    /// Bytes already sent (for the byte limit).
    sent: u64,
    partial: Vec<u8>,
    opts: ContainerLogOpts,
    since: Option<Timestamp>,
    poll: Duration,
    first: Option<Vec<u8>>,
    done: bool,
}

/// Read what was added to the file since `offset`; returns complete lines.
fn read_more(f: &mut Follow) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(&f.path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(f.offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    f.offset += buf.len() as u64;
    f.partial.extend_from_slice(&buf);
    let Some(last_nl) = f.partial.iter().rposition(|b| *b == b'\n') else {
        return Ok(Vec::new());
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
    Ok(out)
}

/// Follow a log file: first what `render` gives, then new lines as they come,
/// until `finished()` says the container ended (then the rest is sent).
pub fn follow(
    path: &Path,
    opts: ContainerLogOpts,
    poll: Duration,
    finished: impl Fn() -> bool + Send + Sync + 'static,
) -> crate::LogStream {
    let stored = std::fs::read(path).unwrap_or_default();
    // only complete lines now; a partial last line is read on the next poll
    let cut = stored
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let now = Timestamp::now();
    let first = render(
        &String::from_utf8_lossy(&stored[..cut]),
        &ContainerLogOpts {
            limit_bytes: 0,
            ..opts.clone()
        },
        now,
    );
    let st = Follow {
        path: path.to_path_buf(),
        offset: cut as u64,
        sent: 0,
        partial: Vec::new(),
        since: since(&opts, now),
        opts,
        poll,
        first: Some(first),
        done: false,
    };
    let finished = std::sync::Arc::new(finished);
    Box::pin(futures::stream::unfold(st, move |mut st| {
        let finished = finished.clone();
        async move {
            loop {
                if st.done {
                    return None;
                }
                let chunk = if let Some(first) = st.first.take() {
                    first
                } else {
                    // decide "finished" before reading, so the last lines are not lost
                    let end = finished();
                    let mut chunk = match read_more(&mut st) {
                        Ok(c) => c,
                        Err(e) => return Some((Err(e), Follow { done: true, ..st })),
                    };
                    if end {
                        if !st.partial.is_empty() {
                            let p = String::from_utf8_lossy(&std::mem::take(&mut st.partial))
                                .into_owned();
                            if keep(&p, st.since) {
                                render_line(&mut chunk, &p, st.opts.timestamps);
                            }
                        }
                        st.done = true;
                    } else if chunk.is_empty() {
                        tokio::time::sleep(st.poll).await;
                        continue;
                    }
                    chunk
                };
                let mut chunk = chunk;
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
                return Some((Ok(Bytes::from(chunk)), st));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const STORED: &str = "2026-11-22T07:00:00.000001Z one\n2026-11-22T07:00:05.5Z two\nno time here\n2026-11-22T07:00:10Z three\n";

    fn now() -> Timestamp {
        "2026-11-22T07:00:12Z".parse().unwrap()
    }

    #[test]
    fn plain_tail_timestamps_bytes() {
        let o = ContainerLogOpts::default();
        assert_eq!(
            render(STORED, &o, now()),
            b"one\ntwo\nno time here\nthree\n"
        );
        let o = ContainerLogOpts {
            tail: 2,
            ..Default::default()
        };
        assert_eq!(render(STORED, &o, now()), b"no time here\nthree\n");
        let o = ContainerLogOpts {
            tail: 1,
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(render(STORED, &o, now()), b"2026-11-22T07:00:10Z three\n");
        let o = ContainerLogOpts {
            limit_bytes: 6,
            ..Default::default()
        };
        assert_eq!(render(STORED, &o, now()), b"one\ntw");
    }

    #[test]
    fn since() {
        let o = ContainerLogOpts {
            since_seconds: 7,
            ..Default::default()
        };
        assert_eq!(render(STORED, &o, now()), b"two\nno time here\nthree\n");
        let o = ContainerLogOpts {
            since_time: Some("2026-11-22T07:00:06Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(STORED, &o, now()), b"no time here\nthree\n");
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
        let mut rest = Vec::new();
        while let Some(c) = s.next().await {
            rest.extend_from_slice(&c.unwrap());
        }
        writer.await.unwrap();
        assert_eq!(String::from_utf8(rest).unwrap(), "partial\nlast\n");
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
