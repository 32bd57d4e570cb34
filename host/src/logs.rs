//! Container logs: the remote log is followed (or fetched after exit) and appended
//! to `log_directory`/`log_path` in the CRI line format
//! `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, which kubelet and crictl read.
//! The file is opened for each write, so a rotated file (`ReopenContainerLog`) is
//! picked up at once. The count of remote bytes consumed is persisted, so a
//! restarted host does not write lines twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use interlink::{ContainerLogOpts, LogStruct};

use crate::runtime::Runtime;
use crate::store::Phase;

/// Longest line kept whole; longer ones are split into `P` pieces.
const MAX_LINE: usize = 16 * 1024;
/// How long an unfinished line waits for its end before it is written as a
/// `P` piece.
const PARTIAL_FLUSH: Duration = Duration::from_millis(50);
/// Bound on the final (non-follow) fetch.
const MAX_FETCH: usize = 64 << 20;

/// Turns a byte stream into CRI log lines in a file.
pub struct CriLogWriter {
    path: PathBuf,
    partial: Vec<u8>,
    stream: &'static str,
}

impl CriLogWriter {
    pub fn new(path: &Path) -> CriLogWriter {
        CriLogWriter {
            path: path.to_path_buf(),
            partial: Vec::new(),
            stream: "stdout",
        }
    }

    fn timestamp() -> String {
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string()
    }

    /// Format `chunk` (plus what was left of the last one) as complete lines.
    pub fn format(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.partial.extend_from_slice(chunk);
        let ts = Self::timestamp();
        let mut start = 0;
        let buf = std::mem::take(&mut self.partial);
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                Self::line(&mut out, &ts, self.stream, "F", &buf[start..i]);
                start = i + 1;
            }
        }
        let mut rest = &buf[start..];
        while rest.len() > MAX_LINE {
            Self::line(&mut out, &ts, self.stream, "P", &rest[..MAX_LINE]);
            rest = &rest[MAX_LINE..];
        }
        self.partial = rest.to_vec();
        out
    }

    /// The unterminated tail as a last full line.
    pub fn format_end(&mut self) -> Vec<u8> {
        self.take_partial("F")
    }

    /// The line held back, as one entry tagged `tag` (empty when none).
    fn take_partial(&mut self, tag: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            Self::line(&mut out, &Self::timestamp(), self.stream, tag, &p);
        }
        out
    }

    fn line(out: &mut Vec<u8>, ts: &str, stream: &str, tag: &str, text: &[u8]) {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_bytes());
        out.push(b' ');
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(text);
        out.push(b'\n');
    }

    /// Whether an unfinished line is held back.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Write the unfinished line held back as a `P` piece (its end follows
    /// in a later line, which kubelet joins to it): a prompt shows while the
    /// container waits.
    pub fn flush_partial(&mut self) -> std::io::Result<()> {
        let out = self.take_partial("P");
        self.append(&out)
    }

    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let out = self.format(chunk);
        self.append(&out)
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        let out = self.format_end();
        self.append(&out)
    }

    fn append(&self, out: &[u8]) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let mut f = open_append(&self.path)?;
        f.write_all(out)
    }
}

/// Mode of the CRI log files: kubelet reads them as root; the container's
/// output may hold secrets, so others get nothing.
pub const LOG_FILE_MODE: u32 = 0o640;

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// Create a container's (empty) CRI log file, keeping what it has.
pub fn create_file(path: &Path) -> std::io::Result<()> {
    open_append(path).map(|_| ())
}

/// Start following a container's remote log, unless already followed.
pub fn ensure_follower(rt: &Arc<Runtime>, container_id: &str) {
    if !rt.followers.claim(container_id) {
        return;
    }
    let rt = rt.clone();
    let id = container_id.to_string();
    tokio::spawn(async move {
        follow(&rt, &id).await;
        rt.followers.release(&id);
    });
}

struct Target {
    file: PathBuf,
    req: LogStruct,
    offset: u64,
    exited: bool,
    phase: Phase,
}

fn target(rt: &Runtime, id: &str) -> Option<Target> {
    let st = rt.store.read();
    let c = st.containers.get(id)?;
    if c.log_done {
        return None;
    }
    let file = c.log_file.clone()?;
    let r = st.remotes.get(c.remote_uid.as_deref()?)?;
    Some(Target {
        file,
        req: LogStruct {
            namespace: r.namespace.clone(),
            pod_uid: r.uid.clone(),
            pod_name: r.name.clone(),
            container_name: c.name(),
            opts: ContainerLogOpts::default(),
        },
        offset: c.log_offset,
        exited: c.state.is_exited(),
        phase: r.phase,
    })
}

fn advance(rt: &Runtime, id: &str, n: u64, done: bool) {
    crate::lifecycle::change(&rt.store, |ch| ch.log_progress(id, n, done));
}

async fn follow(rt: &Arc<Runtime>, id: &str) {
    let mut backoff = Duration::from_millis(200);
    let mut writer: Option<CriLogWriter> = None;
    let mut final_failures = 0;
    while let Some(t) = target(rt, id) {
        let w = writer.get_or_insert_with(|| CriLogWriter::new(&t.file));
        match t.phase {
            // while a stopped pod is being deleted its containers still run (TERM,
            // the grace period) and write their last output: follow on until the
            // delete is confirmed (which marks the log done)
            Phase::Created | Phase::Deleting => {}
            Phase::Collecting | Phase::Sending => {
                tokio::time::sleep(backoff).await;
                continue;
            }
            Phase::Failed => break,
        }
        if t.exited {
            // the tail after exit: one bounded fetch, then done
            let res = tokio::time::timeout(
                rt.cfg.cri.request_timeout,
                rt.remote.logs(t.req.clone(), MAX_FETCH),
            )
            .await;
            rt.metrics.remote("logs", matches!(res, Ok(Ok(_))));
            match res {
                Ok(Ok(bytes)) => {
                    let skip = (t.offset as usize).min(bytes.len());
                    let _ = w.write(&bytes[skip..]);
                    let _ = w.finish();
                    advance(rt, id, (bytes.len() - skip) as u64, true);
                    break;
                }
                _ => {
                    final_failures += 1;
                    if final_failures >= 5 {
                        let _ = w.finish();
                        advance(rt, id, 0, true);
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let mut req = t.req.clone();
        req.opts.follow = true;
        let res = rt.remote.logs_follow(req).await;
        rt.metrics.remote("logs_follow", res.is_ok());
        match res {
            Ok(mut stream) => {
                backoff = Duration::from_millis(200);
                let mut skip = t.offset;
                loop {
                    let next = if w.has_partial() {
                        match tokio::time::timeout(PARTIAL_FLUSH, stream.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                if let Err(e) = w.flush_partial() {
                                    tracing::warn!(container = id, error = %e, "writing the container log failed");
                                }
                                continue;
                            }
                        }
                    } else {
                        stream.next().await
                    };
                    let Some(Ok(chunk)) = next else { break };
                    let mut data = &chunk[..];
                    if skip > 0 {
                        let s = (skip as usize).min(data.len());
                        data = &data[s..];
                        skip -= s as u64;
                    }
                    if data.is_empty() {
                        continue;
                    }
                    if let Err(e) = w.write(data) {
                        tracing::warn!(container = id, error = %e, "writing the container log failed");
                    }
                    advance(rt, id, data.len() as u64, false);
                }
                // the stream ended: the container exited, or the connection broke
                tokio::time::sleep(rt.cfg.status_interval.min(Duration::from_secs(1))).await;
            }
            Err(e) => {
                tracing::debug!(container = id, error = %e, "log follow failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if let Some(mut w) = writer {
        let _ = w.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_line_format() {
        let mut w = CriLogWriter::new(Path::new("/nonexistent"));
        let out = String::from_utf8(w.format(b"hello\nwor")).unwrap();
        let parts: Vec<&str> = out.trim_end().splitn(4, ' ').collect();
        assert_eq!(parts[1..], ["stdout", "F", "hello"]);
        assert!(parts[0].ends_with('Z') && parts[0].contains('T'));
        let out = String::from_utf8(w.format(b"ld\n")).unwrap();
        assert!(out.ends_with(" stdout F world\n"), "{out}");
        assert!(w.format_end().is_empty());
        w.format(b"tail");
        assert!(
            String::from_utf8(w.format_end())
                .unwrap()
                .ends_with(" stdout F tail\n")
        );
        let long = vec![b'x'; MAX_LINE + 10];
        let out = String::from_utf8(w.format(&long)).unwrap();
        assert!(out.contains(" stdout P "));
    }
}
