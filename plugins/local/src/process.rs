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
}
