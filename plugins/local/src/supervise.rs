//! Supervising one container process: its stdout and stderr become timestamped
//! lines of its log file (the CRI log format: `<RFC 3339 time> <stream> <F|P> <text>`),
//! and how it ended is written to its exit file.
//!
//! This runs either inside a small supervisor process (`interlink-local __shim`,
//! the default: the container keeps its log and its exit status is recorded even
//! while the plugin is down or restarting) or, when that binary cannot be found,
//! inside the plugin itself (then a plugin restart loses the output and exit
//! status of processes still running, which status reports as `Lost`).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::state::{ExitRecord, START_ERROR_EXIT_CODE};

/// Longest log entry; longer lines are split into partial (`P`) entries.
pub const MAX_LINE: usize = 16 * 1024;

/// What to run and where its output and exit status go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
    pub exit: PathBuf,
    /// A FIFO made here for the process's stdin (else `/dev/null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<PathBuf>,
    /// `stdinOnce`: the process reads the end of its input when the first
    /// attach that wrote to it ends (see [`stdin_close_path`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_once: bool,
}

/// How long an unfinished line waits for its end before it is logged as a
/// partial (`P`) entry: a prompt or `echo -n` reaches the log (and attach).
const PARTIAL_FLUSH: Duration = Duration::from_millis(50);

/// The control FIFO beside a `stdinOnce` container's stdin FIFO: a byte
/// written there lets the process read the end of its input once the
/// writers present (the attach that ends) are gone.
pub fn stdin_close_path(stdin: &std::path::Path) -> PathBuf {
    let mut p = stdin.as_os_str().to_owned();
    p.push(".close");
    PathBuf::from(p)
}

fn fifo(path: &std::path::Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(std::io::Error::from)
}

/// The process's stdin: a new FIFO at `path` (mode 0600).
///
/// Without `once` it is opened for reading and writing, so the process never
/// reads an end of input while attaches come and go (`stdinOnce: false`).
/// With `once` the process gets the reading end alone and this supervisor
/// keeps a writing end (the returned keeper) until a byte arrives on
/// [`stdin_close_path`]: the end of input comes when the attach that asked
/// for it closes its own end.
fn stdin_fifo(
    path: &std::path::Path,
    once: bool,
) -> std::io::Result<(Stdio, Option<std::fs::File>)> {
    use std::os::fd::AsRawFd;
    fifo(path)?;
    if !once {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        return Ok((Stdio::from(f), None));
    }
    fifo(&stdin_close_path(path))?;
    // a reader first (non-blocking, or the open waits for a writer), then the keeper
    let r = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let keeper = std::fs::OpenOptions::new().write(true).open(path)?;
    // SAFETY: fcntl on a descriptor we own; the process reads a blocking stdin
    unsafe {
        let flags = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(r.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((Stdio::from(r), Some(keeper)))
}

/// Hold `keeper` until a byte arrives on the control FIFO `ctl`.
async fn keep_stdin_open(ctl: PathBuf, keeper: std::fs::File) {
    if let Ok(mut rx) = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&ctl)
    {
        let mut b = [0u8; 1];
        let _ = rx.read(&mut b).await;
    }
    drop(keeper);
}

/// Appends entries to a container log.
pub struct LogWriter {
    file: Mutex<std::fs::File>,
}

impl LogWriter {
    pub fn open(path: &std::path::Path) -> std::io::Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(LogWriter {
            file: Mutex::new(file),
        })
    }

    /// One entry; `text` holds no newline.
    pub fn entry(&self, stream: &str, partial: bool, text: &[u8]) {
        let head = format!(
            "{} {stream} {} ",
            Timestamp::now(),
            if partial { 'P' } else { 'F' }
        );
        let mut line = Vec::with_capacity(head.len() + text.len() + 1);
        line.extend_from_slice(head.as_bytes());
        line.extend_from_slice(text);
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(&line);
    }
}

async fn copy_lines(mut r: impl AsyncRead + Unpin, stream: &'static str, w: Arc<LogWriter>) {
    let mut buf = vec![0u8; 8192];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let read = if carry.is_empty() {
            Ok(r.read(&mut buf).await)
        } else {
            tokio::time::timeout(PARTIAL_FLUSH, r.read(&mut buf)).await
        };
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                // an unfinished line that stays so: log what there is
                w.entry(stream, true, &carry);
                carry.clear();
                continue;
            }
        };
        carry.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = carry[start..].iter().position(|b| *b == b'\n') {
            w.entry(stream, false, &carry[start..start + i]);
            start += i + 1;
        }
        while carry.len() - start >= MAX_LINE {
            w.entry(stream, true, &carry[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        carry.drain(..start);
    }
    if !carry.is_empty() {
        w.entry(stream, true, &carry);
    }
}

/// A started process and the task that waits for it and records its end.
pub struct Supervised {
    pub pid: i32,
    pub done: JoinHandle<ExitRecord>,
}

/// Exit code and signal of a wait status, as Kubernetes reports them.
pub fn exit_of(status: std::process::ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (crate::state::LOST_EXIT_CODE, None),
    }
}

/// The record of an exit: `Completed` for 0, `Error` otherwise.
pub fn exit_record(code: i32, signal: Option<i32>, started_at: Timestamp) -> ExitRecord {
    let message = signal.map(|s| format!("killed by signal {s}"));
    ExitRecord {
        exit_code: code,
        signal,
        reason: if code == 0 { "Completed" } else { "Error" }.to_string(),
        message,
        started_at,
        finished_at: Timestamp::now(),
    }
}

/// The record of a command that could not be started.
pub fn start_error(message: String) -> ExitRecord {
    let now = Timestamp::now();
    ExitRecord {
        exit_code: START_ERROR_EXIT_CODE,
        signal: None,
        reason: "StartError".to_string(),
        message: Some(message),
        started_at: now,
        finished_at: now,
    }
}

/// Start `spec` (in a new process group when `new_group`) and supervise it from a
/// task of the current Tokio runtime. The task writes the exit file when the
/// process ends.
pub fn spawn(spec: &SupervisorSpec, new_group: bool) -> std::io::Result<Supervised> {
    let log = Arc::new(LogWriter::open(&spec.log)?);
    let Some(program) = spec.argv.first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let (stdin, keeper) = match &spec.stdin {
        Some(p) => stdin_fifo(p, spec.stdin_once).map_err(|e| {
            std::io::Error::new(e.kind(), format!("stdin FIFO {}: {e}", p.display()))
        })?,
        None => (Stdio::null(), None),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if new_group {
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot start {program:?}: {e}");
            log.entry(
                "stderr",
                false,
                format!("interlink-local: {msg}").as_bytes(),
            );
            return Err(std::io::Error::new(e.kind(), msg));
        }
    };
    let started_at = Timestamp::now();
    let pid = child.id().map(|p| p as i32).unwrap_or(-1);
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(copy_lines(o, "stdout", log.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(copy_lines(e, "stderr", log.clone())));
    let keep = match (keeper, &spec.stdin) {
        (Some(k), Some(p)) => Some(tokio::spawn(keep_stdin_open(stdin_close_path(p), k))),
        _ => None,
    };
    let exit_path = spec.exit.clone();
    let done = tokio::spawn(async move {
        let status = child.wait().await;
        if let Some(k) = keep {
            k.abort();
        }
        // a background process may hold the pipes open: do not wait for it long
        for h in [out, err].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        let rec = match status {
            Ok(s) => {
                let (code, sig) = exit_of(s);
                exit_record(code, sig, started_at)
            }
            Err(e) => {
                let mut r = exit_record(crate::state::LOST_EXIT_CODE, None, started_at);
                r.reason = "Lost".into();
                r.message = Some(format!("cannot wait for the process: {e}"));
                r
            }
        };
        let _ = crate::state::save(&exit_path, &rec);
        rec
    });
    Ok(Supervised { pid, done })
}

/// `interlink-local __shim`: read a [`SupervisorSpec`] as JSON from stdin, run
/// it in this process group, record its end, exit with its code. TERM, INT and
/// HUP do not stop the shim (they reach the container through its process
/// group); it ends when the container does.
pub fn shim_main() -> i32 {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("interlink-local shim: cannot read the spec: {e}");
        return 125;
    }
    let spec: SupervisorSpec = match serde_json::from_str(&input) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interlink-local shim: invalid spec: {e}");
            return 125;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interlink-local shim: {e}");
            return 125;
        }
    };
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let _guards: Vec<_> = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .collect();
        match spawn(&spec, false) {
            Ok(s) => match s.done.await {
                Ok(rec) => rec.exit_code,
                Err(_) => 125,
            },
            Err(e) => {
                let rec = start_error(e.to_string());
                let _ = crate::state::save(&spec.exit, &rec);
                rec.exit_code
            }
        }
    })
}
