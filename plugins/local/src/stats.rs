//! Usage of running containers (extension `stats`), read from `/proc`: each
//! container is its own process group (led by its shim or command), so its
//! usage is the sum over the live processes of that group, the shim excepted
//! (supervision, as conmon is not counted in a container's cgroup): CPU as
//! `utime + stime` (clock ticks → nanoseconds), memory as the resident set
//! (reported as the working set; the plugin has no cgroup to tell page cache
//! apart). Processes that left the group (`setsid`) are not counted, and the
//! CPU of processes that already ended is not either (the figure can drop).

use std::collections::HashMap;

use interlink::extensions::ContainerStats;
use jiff::Timestamp;

/// Usage of one process group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupUsage {
    pub cpu_ticks: u64,
    pub rss_pages: u64,
}

/// One pass over `/proc`: usage per process group, for the groups asked
/// (leader pid → the leader's start time, clock ticks since boot). A group
/// counts only while its leader is the process recorded (same start time, not
/// a zombie), so a reused pid is never reported. With `skip_leaders`, a
/// group's leader (the supervising shim, not part of the container) is not
/// counted.
pub fn read_groups(groups: &HashMap<i32, u64>, skip_leaders: bool) -> HashMap<i32, GroupUsage> {
    let mut out: HashMap<i32, GroupUsage> = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut leaders_alive = std::collections::HashSet::new();
    let mut buf = String::with_capacity(512);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        buf.clear();
        let read = std::fs::File::open(format!("/proc/{pid}/stat"))
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut buf));
        if read.is_err() {
            continue;
        }
        let Some(p) = parse_stat(&buf) else { continue };
        let Some(&leader_start) = groups.get(&p.pgrp) else {
            continue;
        };
        if pid == p.pgrp {
            if p.start_ticks != leader_start {
                continue;
            }
            leaders_alive.insert(pid);
            if skip_leaders {
                out.entry(pid).or_default();
                continue;
            }
        }
        let g = out.entry(p.pgrp).or_default();
        g.cpu_ticks += p.usage.cpu_ticks;
        g.rss_pages += p.usage.rss_pages;
    }
    out.retain(|pgrp, _| leaders_alive.contains(pgrp));
    out
}

/// What one `/proc/<pid>/stat` line tells of a live (not zombie) process.
struct ProcStat {
    pgrp: i32,
    start_ticks: u64,
    usage: GroupUsage,
}

/// The process group, start time and usage in one `/proc/<pid>/stat` line.
fn parse_stat(text: &str) -> Option<ProcStat> {
    // the command name (field 2) is in parentheses and may contain spaces
    let rest = text.get(text.rfind(')')? + 2..)?;
    // rest starts at field 3 (state): pgrp 5, utime 14, stime 15, starttime 22, rss 24
    let mut f = rest.split_ascii_whitespace();
    let mut field = |n: usize, from: &mut usize| {
        let v = f.nth(n - *from);
        *from = n + 1;
        v
    };
    let mut at = 3;
    if matches!(field(3, &mut at), Some("Z") | Some("X")) {
        return None;
    }
    let pgrp = field(5, &mut at)?.parse().ok()?;
    let utime: u64 = field(14, &mut at)?.parse().ok()?;
    let stime: u64 = field(15, &mut at)?.parse().ok()?;
    let start_ticks: u64 = field(22, &mut at)?.parse().ok()?;
    let rss: i64 = field(24, &mut at)?.parse().ok()?;
    Some(ProcStat {
        pgrp,
        start_ticks,
        usage: GroupUsage {
            cpu_ticks: utime + stime,
            rss_pages: rss.max(0) as u64,
        },
    })
}

/// Clock ticks per second and page size of this host.
fn units() -> (u64, u64) {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .unwrap_or(4096) as u64;
    (ticks, page)
}

/// The wire figures of one container from its group's usage.
pub fn container_stats(name: &str, usage: GroupUsage, now: Timestamp) -> ContainerStats {
    let (ticks, page) = units();
    let rss = usage.rss_pages.saturating_mul(page);
    ContainerStats {
        name: name.to_string(),
        timestamp: now,
        cpu_usage_core_nano_seconds: Some(usage.cpu_ticks.saturating_mul(1_000_000_000) / ticks),
        memory_working_set_bytes: Some(rss),
        memory_usage_bytes: Some(rss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "4242 (a (b) c) R 1 4240 4240 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 123456 1000000 321 18446744073709551615";
        let p = parse_stat(line).unwrap();
        assert_eq!(p.pgrp, 4240);
        assert_eq!(p.start_ticks, 123456);
        assert_eq!(p.usage.cpu_ticks, 300);
        assert_eq!(p.usage.rss_pages, 321);
    }

    #[test]
    fn a_group_has_usage_while_its_leader_runs() {
        use std::os::unix::process::CommandExt;
        // a group of its own: a shell that burns a little CPU, then waits
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let leader_start = crate::process::start_ticks(pid).expect("the leader runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let u = loop {
            // a group is asked by its leader's pid and start time
            let g = read_groups(&HashMap::from([(pid, leader_start)]), false);
            let u = g.get(&pid).copied().unwrap_or_default();
            if u.cpu_ticks > 0 || std::time::Instant::now() > deadline {
                break u;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(u.rss_pages > 0 && u.cpu_ticks > 0, "{u:?}");
        let s = container_stats("c", u, Timestamp::now());
        assert!(s.memory_working_set_bytes.unwrap() > 0);
        assert!(s.cpu_usage_core_nano_seconds.unwrap() > 0);
        // the same pid with another start time (a reused pid) is not reported
        let g = read_groups(&HashMap::from([(pid, leader_start + 1)]), false);
        assert!(g.is_empty(), "{g:?}");
        // nor a leader that ended
        child.kill().unwrap();
        child.wait().unwrap();
        let g = read_groups(&HashMap::from([(pid, leader_start)]), false);
        assert!(g.is_empty(), "{g:?}");
    }
}
