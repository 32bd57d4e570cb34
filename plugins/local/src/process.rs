//! Process identity and signals: a pid is only "ours" while its start time (from
//! `/proc/<pid>/stat`) matches the one recorded when it was started, so a reused
//! pid is never mistaken for a container, nor signalled.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Start time of a process in clock ticks since boot, and whether it is a zombie.
fn stat(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may contain spaces
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22
    let state = fields.first()?;
    let start = fields.get(22 - 3)?.parse().ok()?;
    Some((start, *state == "Z" || *state == "X"))
}

/// Start time (clock ticks since boot) of a live process.
pub fn start_ticks(pid: i32) -> Option<u64> {
    stat(pid).and_then(|(s, zombie)| (!zombie).then_some(s))
}

/// Is the process that had this pid and start time still running (not a zombie)?
pub fn alive(pid: i32, ticks: u64) -> bool {
    pid > 0 && start_ticks(pid) == Some(ticks)
}

/// Send `sig` to the process group led by `pid`, if that leader is still the
/// process started then. Answers whether the signal was sent.
pub fn signal_group(pid: i32, ticks: u64, sig: Signal) -> bool {
    if !alive(pid, ticks) {
        return false;
    }
    killpg(Pid::from_raw(pid), sig).is_ok()
}

/// Wait until the process that had this pid and start time has ended (it
/// need not be our child: after a restart the containers' processes are
/// adopted). Woken by the kernel through a pidfd; where pidfds are missing
/// (Linux before 5.3), by looking every `poll`.
pub async fn ended(pid: i32, ticks: u64, poll: std::time::Duration) {
    if let Some(fd) = pidfd(pid)
        && alive(pid, ticks)
    {
        // the pidfd was opened before the start time was checked: it refers
        // to the process recorded, and turns readable when it exits
        // SAFETY: an owned descriptor, kept open (and the same) by the AsyncFd
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        if let Ok(fd) = registered {
            let _ = fd.readable().await;
            return;
        }
    }
    while alive(pid, ticks) {
        tokio::time::sleep(poll).await;
    }
}

/// A pidfd of `pid` (`pidfd_open(2)`), if the kernel has them.
fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor that nothing else owns
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let me = std::process::id() as i32;
        let t = start_ticks(me).expect("own start time");
        assert!(alive(me, t));
        assert!(!alive(me, t + 1));
        assert!(!alive(-1, t));
    }

    #[tokio::test]
    async fn ended_wakes_when_an_adopted_process_exits() {
        use std::time::{Duration, Instant};
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).unwrap();
        // reap it from another thread, as an adopting parent would not
        let reaper = std::thread::spawn(move || child.wait());
        let t0 = Instant::now();
        // a poll interval far longer than the process lives: only the
        // kernel's wakeup can end the wait in time
        tokio::time::timeout(
            Duration::from_secs(20),
            ended(pid, ticks, Duration::from_secs(60)),
        )
        .await
        .expect("the wait ended when the process did");
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        reaper.join().unwrap().unwrap();
        // a process already gone (or another start time) is ended at once
        tokio::time::timeout(
            Duration::from_secs(5),
            ended(pid, ticks + 1, Duration::from_secs(60)),
        )
        .await
        .expect("not alive: no wait");
    }
}
