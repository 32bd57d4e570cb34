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

/// One pass over `/proc`: usage per process group id, for the groups asked.
/// With `skip_leaders`, a group's leader (the supervising shim, not part of
/// the container) is not counted.
pub fn read_groups(groups: &[i32], skip_leaders: bool) -> HashMap<i32, GroupUsage> {
    let mut out: HashMap<i32, GroupUsage> = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((pgrp, usage)) = parse_stat(&text)
            && groups.contains(&pgrp)
        {
            let g = out.entry(pgrp).or_default();
            if skip_leaders && pid == pgrp {
                continue;
            }
            g.cpu_ticks += usage.cpu_ticks;
            g.rss_pages += usage.rss_pages;
        }
    }
    out
}

/// The process group and usage in one `/proc/<pid>/stat` line.
fn parse_stat(text: &str) -> Option<(i32, GroupUsage)> {
    // the command name (field 2) is in parentheses and may contain spaces
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): pgrp 5, utime 14, stime 15, rss 24
    let field = |n: usize| f.get(n - 3);
    if matches!(field(3), Some(&"Z") | Some(&"X")) {
        return None;
    }
    let pgrp = field(5)?.parse().ok()?;
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    let rss: i64 = field(24)?.parse().ok()?;
    Some((
        pgrp,
        GroupUsage {
            cpu_ticks: utime + stime,
            rss_pages: rss.max(0) as u64,
        },
    ))
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
        let (pgrp, u) = parse_stat(line).unwrap();
        assert_eq!(pgrp, 4240);
        assert_eq!(u.cpu_ticks, 300);
        assert_eq!(u.rss_pages, 321);
    }

    #[test]
    fn own_group_has_usage() {
        let me = nix::unistd::getpgrp().as_raw();
        // burn a little CPU so the figure cannot be zero
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let g = read_groups(&[me], false);
        let u = g.get(&me).copied().unwrap_or_default();
        assert!(u.rss_pages > 0, "{u:?}");
        let s = container_stats("c", u, Timestamp::now());
        assert!(s.memory_working_set_bytes.unwrap() > 0);
    }
}
