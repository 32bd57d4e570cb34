//! The exec extension on this host: exec, attach and port-forward for the
//! local plugin's pods.
//!
//! - **exec** runs the command as the container's process was launched: its
//!   environment and working directory (as recorded at create), the same `PATH`
//!   lookup, and the same mount-path rewriting of the arguments (with a mount
//!   at `/etc/config`, `cat /etc/config/a` reads the volume's file; see
//!   [`crate::launch`]). It joins the container's process group, so what it
//!   leaves running ends with the pod (with a tty: a session of its own whose
//!   controlling terminal is a new pty; resizes set its size). The container
//!   must be running. When the client goes away, or the pod is deleted, before
//!   the command ended, the command is killed (with a tty, its session's group).
//! - **attach** follows the container's output from now on: its stdout and
//!   stderr as the container writes them (from its log: whole lines, and a `P`
//!   piece of a line left unfinished), until the container ends. With stdin,
//!   the client's input goes to the FIFO the container reads (only for a
//!   container whose spec has `stdin: true`; else 400). At the end of the
//!   client's input, as containerd does: with `stdinOnce` the container reads
//!   the end of its input and the attach goes on until the container ends;
//!   without, the attach ends (the container's stdin stays open for the next
//!   one). With tty, stderr comes on stdout.
//! - **port-forward** connects to `127.0.0.1:<port>`: the local plugin's pods
//!   share this host's network, so that is where a container listens. The pod
//!   must have a running container. (There is no isolation: any port of this
//!   host on 127.0.0.1 can be reached this way, as the pod's processes can.)

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use interlink::exec::{AttachRequest, ExecRequest, PortForwardRequest, Target, TermSize};
use interlink_plugin_kit::{ExecIo, ExecRun, PluginError, PortStream, exec_run};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::launch::{self, Mount};
use crate::provider::PodEntry;
use crate::state::{ContainerRecord, ContainerState, Launch};
use crate::{logfile, process, supervise};

/// How long output is still read after the command ended (a background
/// process may hold its pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The pod named by `t`, with the names it was created with (another name
/// under its UID is answered as unknown).
fn pod(entry: Option<Arc<PodEntry>>, t: &Target) -> Result<Arc<PodEntry>, PluginError> {
    let unknown = || {
        PluginError::NotFound(format!(
            "no pod {}/{} with UID {} in the local plugin",
            t.namespace, t.pod_name, t.pod_uid
        ))
    };
    let e = entry.ok_or_else(unknown)?;
    {
        let rec = e.lock();
        if rec.namespace != t.namespace || rec.name != t.pod_name {
            return Err(unknown());
        }
    }
    Ok(e)
}

/// The running container `name` of the pod.
fn running(e: &PodEntry, name: &str) -> Result<(ContainerRecord, Launch), PluginError> {
    let rec = e.lock();
    let c = rec
        .init_containers
        .iter()
        .chain(rec.containers.iter())
        .find(|c| c.name == name)
        .ok_or_else(|| {
            PluginError::NotFound(format!(
                "pod {}/{} has no container {name:?}",
                rec.namespace, rec.name
            ))
        })?
        .clone();
    let live = match c.state {
        ContainerState::Running {
            pid, start_ticks, ..
        } => process::alive(pid, start_ticks),
        _ => false,
    };
    match (&c.launch, live) {
        (Some(l), true) => Ok((c.clone(), l.clone())),
        _ => Err(PluginError::NotRunning(format!(
            "container {name:?} of pod {}/{} is not running",
            rec.namespace, rec.name
        ))),
    }
}

/// The container's mounts, from the `INTERLINK_MOUNTS` it was launched with.
fn mounts_of(l: &Launch) -> Vec<Mount> {
    let Some((_, pairs)) = l.env.iter().find(|(k, _)| k == "INTERLINK_MOUNTS") else {
        return Vec::new();
    };
    let mut out: Vec<Mount> = pairs
        .split(':')
        .filter_map(|p| p.split_once('='))
        .map(|(path, host)| Mount {
            path: path.to_string(),
            host: host.into(),
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
    out
}

/// The command line as the container would run it: mount paths rewritten,
/// the program found on its `PATH`.
fn command_line(l: &Launch, command: &[String]) -> Result<Vec<String>, PluginError> {
    let mounts = mounts_of(l);
    let mut argv: Vec<String> = command
        .iter()
        .map(|a| launch::rewrite(a, &mounts))
        .collect();
    let path = l
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    match launch::find_program(&argv[0], path, &l.cwd) {
        Some(p) => argv[0] = p.to_string_lossy().into_owned(),
        None => {
            return Err(PluginError::BadRequest(format!(
                "executable {:?} not found in the container's PATH ({path})",
                command[0]
            )));
        }
    }
    Ok(argv)
}

/// `exec`: check, then a run of the command.
pub(crate) fn exec(entry: Option<Arc<PodEntry>>, req: ExecRequest) -> Result<ExecRun, PluginError> {
    let e = pod(entry, &req.target)?;
    let (c, mut l) = running(&e, &req.container)?;
    if req.tty {
        // a terminal's programs need its type: TERM=xterm, as containerd sets it
        l.env.retain(|(k, _)| k != "TERM");
        l.env.push(("TERM".into(), "xterm".into()));
    }
    let leader = match c.state {
        ContainerState::Running { pid, .. } => pid,
        _ => 0,
    };
    let argv = command_line(&l, &req.command)?;
    let deleting = e.deleting.clone();
    let tty = req.tty;
    Ok(exec_run(move |io| async move {
        if tty {
            run_tty(&argv, &l, io, deleting).await
        } else {
            run_pipes(&argv, &l, leader, io, deleting).await
        }
    }))
}

/// Kills what an exec started unless told the command ended.
struct GroupGuard {
    /// A process group of its own (negative: `-pgid`), or the command's pid
    /// alone when it joined the container's group.
    target: i32,
    ended: bool,
}

impl GroupGuard {
    /// SIGKILL what the exec started (once).
    fn kill(&mut self) {
        if !self.ended && self.target != 0 {
            // SAFETY: kill(2) with a pid or a negative process group id
            unsafe { libc::kill(self.target, libc::SIGKILL) };
        }
        self.ended = true;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn command(argv: &[String], l: &Launch) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&l.cwd)
        .kill_on_drop(false);
    cmd
}

fn spawn_error(argv: &[String], e: std::io::Error) -> PluginError {
    PluginError::BadRequest(format!("cannot start {:?}: {e}", argv[0]))
}

async fn pump(mut r: impl AsyncRead + Unpin, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Wait for the child (or the pod's deletion, or the client's cancel),
/// answering its exit code. At a cancel the command is killed and reaped
/// before this returns, so the client that waits for the session's close
/// finds it gone (critest's `pgrep` after an `ExecSync` timeout).
async fn wait_child(
    child: &mut tokio::process::Child,
    guard: &mut GroupGuard,
    deleting: &CancellationToken,
    cancel: &CancellationToken,
) -> Result<i32, PluginError> {
    tokio::select! {
        // the pod's deletion first: it signals the container's group (this
        // command with it) only after it is marked
        biased;
        _ = deleting.cancelled() => {
            // the guard kills what is left as the run is dropped
            Err(PluginError::Unavailable("the pod is being deleted".into()))
        }
        _ = cancel.cancelled() => {
            guard.kill();
            let _ = child.wait().await;
            Err(PluginError::Unavailable("the client ended the session".into()))
        }
        st = child.wait() => {
            guard.ended = true;
            let st = st.map_err(|e| PluginError::Internal(format!("waiting for the command: {e}")))?;
            Ok(supervise::exit_of(st).0)
        }
    }
}

async fn run_pipes(
    argv: &[String],
    l: &Launch,
    leader: i32,
    io: ExecIo,
    deleting: CancellationToken,
) -> Result<i32, PluginError> {
    let ExecIo {
        mut stdin,
        resize: _,
        stdout,
        stderr,
        cancel,
    } = io;
    let spawn = |group: i32| {
        let mut cmd = command(argv, l);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(group);
        cmd.spawn()
    };
    // in the container's process group, so what it leaves running ends with
    // the pod (as in the container's cgroup); a group of its own when that
    // cannot be joined (another session, after a restart of the plugin)
    let (mut child, own_group) = match spawn(leader) {
        Ok(c) if leader > 0 => (c, false),
        _ => (spawn(0).map_err(|e| spawn_error(argv, e))?, true),
    };
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let mut guard = GroupGuard {
        target: if own_group { -pid } else { pid },
        ended: false,
    };
    let out = child.stdout.take().map(|o| tokio::spawn(pump(o, stdout)));
    let err = child.stderr.take().map(|e| tokio::spawn(pump(e, stderr)));
    let mut child_in = child.stdin.take();
    let feed = tokio::spawn(async move {
        while let Some(b) = stdin.recv().await {
            let Some(w) = child_in.as_mut() else { break };
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        // the end of stdin (or none asked): the command reads EOF
        drop(child_in);
    });
    let code = wait_child(&mut child, &mut guard, &deleting, &cancel).await;
    feed.abort();
    for h in [out, err].into_iter().flatten() {
        finish_output(h).await;
    }
    code
}

/// A byte count from `read`/`write`, or the error they set.
fn cvt(n: isize) -> std::io::Result<usize> {
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The master side of a pty, non-blocking, for the runtime.
struct PtyMaster(AsyncFd<OwnedFd>);

impl PtyMaster {
    fn new(fd: OwnedFd) -> std::io::Result<PtyMaster> {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the descriptor is owned by the AsyncFd from now on, never
        // closed nor replaced while registered
        Ok(PtyMaster(unsafe { AsyncFd::register(fd) }?))
    }

    /// Some output; `None` once the terminal is closed on the other side.
    async fn read(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let mut g = self.0.readable().await.ok()?;
            // SAFETY: reading into a buffer we own, from a descriptor we own
            match g.try_io(|fd| {
                cvt(unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                })
            }) {
                Ok(Ok(0)) => return None,
                Ok(Ok(n)) => return Some(n),
                // EIO: no process holds the terminal any more
                Ok(Err(_)) => return None,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut g = self.0.writable().await?;
            // SAFETY: writing from a buffer we own, to a descriptor we own
            match g.try_io(|fd| {
                cvt(unsafe {
                    libc::write(fd.get_ref().as_raw_fd(), data.as_ptr().cast(), data.len())
                })
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, size: TermSize) {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own
        unsafe { libc::ioctl(self.0.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

async fn run_tty(
    argv: &[String],
    l: &Launch,
    io: ExecIo,
    deleting: CancellationToken,
) -> Result<i32, PluginError> {
    let ExecIo {
        mut stdin,
        mut resize,
        stdout,
        stderr: _,
        cancel,
    } = io;
    let pty = nix::pty::openpty(None, None)
        .map_err(|e| PluginError::Internal(format!("cannot open a pty: {e}")))?;
    let master = Arc::new(
        PtyMaster::new(pty.master).map_err(|e| PluginError::Internal(format!("pty: {e}")))?,
    );
    // a size sent before the command starts applies to it from the start
    while let Ok(size) = resize.try_recv() {
        master.resize(size);
    }
    let slave = pty.slave;
    let io_err = |e: std::io::Error| PluginError::Internal(format!("pty: {e}"));
    let mut cmd = command(argv, l);
    cmd.stdin(Stdio::from(slave.try_clone().map_err(io_err)?))
        .stdout(Stdio::from(slave.try_clone().map_err(io_err)?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(argv, e))?;
    // the parent's copies of the terminal go, so its end is seen
    drop(cmd);
    let mut guard = GroupGuard {
        // a session of its own, whose group id is its pid
        target: -child.id().map(|p| p as i32).unwrap_or(0),
        ended: false,
    };
    let m = master.clone();
    let out = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Some(n) = m.read(&mut buf).await {
            if stdout
                .send(Bytes::copy_from_slice(&buf[..n]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let m = master.clone();
    let input = tokio::spawn(async move {
        let mut stdin_open = true;
        loop {
            tokio::select! {
                biased;
                Some(size) = resize.recv() => m.resize(size),
                b = stdin.recv(), if stdin_open => match b {
                    Some(b) => {
                        if m.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        // the end of input at a terminal: ^D
                        stdin_open = false;
                        let _ = m.write_all(&[4]).await;
                    }
                },
                else => break,
            }
        }
    });
    let code = wait_child(&mut child, &mut guard, &deleting, &cancel).await;
    input.abort();
    finish_output(out).await;
    code
}

/// Let an output pump finish what the command wrote; after [`OUTPUT_GRACE`]
/// stop it (a background process holds the output open), so the session ends.
async fn finish_output(mut h: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(OUTPUT_GRACE, &mut h).await.is_err() {
        tracing::debug!("exec: output still open after the command ended; not waiting for it");
        h.abort();
    }
}

/// `attach`: check, then a run that follows the container's output.
/// How long an attach waits for a just-started container's stdin FIFO.
const STDIN_READY: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) async fn attach(
    entry: Option<Arc<PodEntry>>,
    req: AttachRequest,
) -> Result<ExecRun, PluginError> {
    let e = pod(entry, &req.target)?;
    let (c, _) = running(&e, &req.container)?;
    let input = if req.stdin {
        if !c.stdin {
            return Err(PluginError::BadRequest(format!(
                "container {:?} was not started with stdin (its spec has no `stdin: true`), so its stdin is /dev/null; attach without stdin",
                c.name
            )));
        }
        let fifo = stdin_path(&e, &c.name);
        // the container's supervisor makes the FIFO and holds it open for
        // reading; right after the start it may not have yet (no FIFO, or
        // no reader: ENXIO): wait for it a little
        let deadline = std::time::Instant::now() + STDIN_READY;
        let w = loop {
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&fifo) {
                Ok(w) => break w,
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(err) => {
                    return Err(PluginError::Internal(format!(
                        "stdin of container {:?}: {err}",
                        c.name
                    )));
                }
            }
        };
        Some(w)
    } else {
        None
    };
    let path = e.log_path(&c.name);
    let tty = req.tty;
    let name = c.name.clone();
    let once = c.stdin_once;
    let ctl = supervise::stdin_close_path(&stdin_path(&e, &c.name));
    // from the output's current end: what the container writes from now on
    let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(exec_run(move |mut io| async move {
        let stdin = std::mem::replace(&mut io.stdin, mpsc::channel(1).1);
        let follow = follow(&e, &name, &path, start, tty, io);
        tokio::pin!(follow);
        if let Some(w) = input {
            tokio::select! {
                _ = &mut follow => return Ok(0),
                _ = feed_stdin(stdin, w) => {}
            }
            if !once {
                return Ok(0);
            }
            end_stdin(&ctl);
        }
        follow.await;
        Ok(0)
    }))
}

/// Let a `stdinOnce` container read the end of its input (its supervisor
/// drops the writing end it kept; see `supervise::stdin_fifo`).
fn end_stdin(ctl: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // a plain non-blocking write: the supervisor holds the FIFO open for
    // reading, so one byte always fits (a fresh tokio sender would not know
    // yet that it may write)
    let sent = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ctl)
        .and_then(|mut f| f.write_all(&[1]));
    if let Err(e) = sent {
        tracing::debug!("attach: the end of stdin via {}: {e}", ctl.display());
    }
}

/// The FIFO a container started with `stdin: true` reads as its stdin.
pub(crate) fn stdin_path(e: &PodEntry, container: &str) -> std::path::PathBuf {
    e.dir.join("run").join(format!("{container}.stdin"))
}

/// Attach's input to the container's stdin, until the client ends it; this
/// end of the FIFO is closed then.
async fn feed_stdin(mut rx: mpsc::Receiver<Bytes>, mut w: tokio::net::unix::pipe::Sender) {
    while let Some(b) = rx.recv().await {
        if w.write_all(&b).await.is_err() {
            break;
        }
    }
}

/// One entry of a container log: its stream and its bytes as written.
fn entry_bytes(line: &[u8]) -> Option<(bool, Vec<u8>)> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _ts = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let mut text = parts.next().unwrap_or(b"").to_vec();
    if tag != b"P" {
        text.push(b'\n');
    }
    Some((stream == b"stderr", text))
}

async fn follow(e: &PodEntry, name: &str, path: &Path, mut pos: u64, tty: bool, io: ExecIo) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        // the container's end is looked at before the last read, so no
        // output written before it ended is missed
        let ended = e.deleting.is_cancelled() || {
            let rec = e.lock();
            !rec.init_containers
                .iter()
                .chain(rec.containers.iter())
                .any(|c| c.name == name && matches!(c.state, ContainerState::Running { .. }))
        };
        let chunk = read_from(path, pos).await;
        if !chunk.is_empty() {
            pos += chunk.len() as u64;
            carry.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(i) = carry[start..].iter().position(|b| *b == b'\n') {
                if let Some((is_err, text)) = entry_bytes(&carry[start..start + i]) {
                    let tx = if is_err && !tty {
                        &io.stderr
                    } else {
                        &io.stdout
                    };
                    if tx.send(Bytes::from(text)).await.is_err() {
                        return;
                    }
                }
                start += i + 1;
            }
            carry.drain(..start);
        }
        if ended {
            return;
        }
        if chunk.is_empty() {
            tokio::time::sleep(logfile::FOLLOW_POLL).await;
        }
    }
}

/// What the file holds after `pos` (at most a chunk).
async fn read_from(path: &Path, pos: u64) -> Vec<u8> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path)
            && f.seek(SeekFrom::Start(pos)).is_ok()
        {
            let _ = f.take(logfile::CHUNK as u64).read_to_end(&mut out);
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// `port-forward`: a connection to the port on this host.
pub(crate) async fn port_forward(
    entry: Option<Arc<PodEntry>>,
    req: PortForwardRequest,
) -> Result<PortStream, PluginError> {
    let e = pod(entry, &req.target)?;
    let any_running = {
        let rec = e.lock();
        rec.init_containers
            .iter()
            .chain(rec.containers.iter())
            .any(|c| match c.state {
                ContainerState::Running {
                    pid, start_ticks, ..
                } => process::alive(pid, start_ticks),
                _ => false,
            })
    };
    if !any_running {
        return Err(PluginError::BadRequest(format!(
            "pod {}/{} has no running container to forward a port to",
            req.target.namespace, req.target.pod_name
        )));
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], req.port));
    let s = tokio::net::TcpStream::connect(addr).await.map_err(|err| {
        PluginError::Unavailable(format!(
            "cannot connect to port {} of pod {}/{} ({addr}: the local plugin's pods share this host's network): {err}",
            req.port, req.target.namespace, req.target.pod_name
        ))
    })?;
    let _ = s.set_nodelay(true);
    Ok(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_become_the_bytes_written() {
        assert_eq!(
            entry_bytes(b"2026-01-01T00:00:00Z stdout F hello world"),
            Some((false, b"hello world\n".to_vec()))
        );
        assert_eq!(
            entry_bytes(b"2026-01-01T00:00:00Z stderr P part"),
            Some((true, b"part".to_vec()))
        );
        assert_eq!(
            entry_bytes(b"2026-01-01T00:00:00Z stdout F "),
            Some((false, b"\n".to_vec()))
        );
        assert_eq!(entry_bytes(b"garbage"), None);
    }

    #[test]
    fn commands_see_mounts_as_the_container_does() {
        let dir = tempfile::tempdir().unwrap();
        let l = Launch {
            argv: vec!["/bin/sh".into()],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                (
                    "INTERLINK_MOUNTS".into(),
                    "/etc/config=/p/v/cfg:/etc/config/sub=/p/v/sub".into(),
                ),
            ],
            cwd: dir.path().to_path_buf(),
        };
        let argv = command_line(
            &l,
            &[
                "cat".into(),
                "/etc/config/a".into(),
                "/etc/config/sub/b".into(),
            ],
        )
        .unwrap();
        assert!(argv[0].ends_with("/cat"), "{argv:?}");
        assert_eq!(&argv[1..], ["/p/v/cfg/a", "/p/v/sub/b"]);
        let e = command_line(&l, &["no-such-program-here".into()]).unwrap_err();
        assert!(
            matches!(&e, PluginError::BadRequest(m) if m.contains("no-such-program-here")),
            "{e}"
        );
    }
}
