//! Shared pieces of the end-to-end tests: find the workspace's binaries, start
//! them as child processes that are always stopped (by pid, on drop, even when a
//! test panics), pick free ports, wait for sockets.
//!
//! The binaries are built by `cargo build --workspace --bins` before the tests
//! run (scripts/test.sh does it); a missing binary is a clear failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of a binary of this workspace (`target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    // the test executable lives in target/<profile>/deps/
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "binary {} not found: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A child process in its own process group, killed (TERM, then KILL) with its
/// whole group when dropped. Its stdout/stderr go to `<log>` for post-mortems.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` in a new process group, output appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        cmd.process_group(0);
        let child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL the process group now (a crash), and reap it.
    pub fn kill9(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }

    /// SIGTERM the process group and wait up to `grace` for it, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pg = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                // the leader is gone; make sure nothing of its group lingers
                let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.output()
            );
        }
    }
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until something listens on a Unix socket path.
pub fn wait_for_unix_socket(path: &Path, timeout: Duration) -> Result<()> {
    wait_until(timeout, &format!("socket {}", path.display()), || {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    })
}

/// Wait until something listens on 127.0.0.1:port.
pub fn wait_for_tcp(port: u16, timeout: Duration) -> Result<()> {
    wait_until(timeout, &format!("127.0.0.1:{port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// Should a test whose backend (Slurm, container engine) is missing fail rather
/// than skip? scripts/test.sh sets `INTERLINK_REQUIRE_BACKENDS=1` where it
/// started them, so CI never silently skips.
pub fn backends_required() -> bool {
    std::env::var("INTERLINK_REQUIRE_BACKENDS").is_ok_and(|v| v == "1")
}

pub mod apiserver;
pub mod containerd;
pub mod cri;
pub mod engine;
pub mod exec_checks;
pub mod extensions;
pub mod kube_api;
pub mod otlp_receiver;
pub mod plugin;
pub mod recording;
pub mod slurm;
pub mod spdy_client;
