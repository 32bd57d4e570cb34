//! This host as a pod's node, for backends whose pods run here (the local
//! plugin's processes; an engine on this host running a pod with the host's
//! network). Such a pod shares the host's network namespace (as a
//! `hostNetwork` pod), so the pod's IP is the host's, as Kubernetes reports it
//! for such a pod: the address this host uses for outgoing traffic, or
//! `127.0.0.1` when it has no route out. The node's allocatable resources are
//! the host's CPUs and memory (what `limits.cpu` / `limits.memory` read when a
//! container sets none).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use super::Placement;

/// This host as the pods' node.
pub fn this_host() -> Placement {
    let ip = host_ip().to_string();
    Placement {
        pod_ip: Some(ip.clone()),
        host_ip: Some(ip),
        node_name: hostname(),
        allocatable_cpu_millis: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64 * 1000),
        allocatable_memory_bytes: mem_total(),
    }
}

/// The source address of this host's default route (no packet is sent:
/// connecting a UDP socket only picks the route).
fn host_ip() -> IpAddr {
    let routed = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(s.local_addr()?.ip())
    };
    routed()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_is_a_routed_address_with_its_cpus_and_memory() {
        let p = this_host();
        let ip: IpAddr = p.pod_ip.as_deref().unwrap().parse().unwrap();
        assert_eq!(p.host_ip, p.pod_ip, "the pods share the host's network");
        assert!(!ip.is_unspecified());
        // the address is one of this host's: a socket can be bound to it
        UdpSocket::bind((ip, 0)).unwrap();
        assert!(p.allocatable_cpu_millis.unwrap() >= 1000);
        assert!(p.allocatable_memory_bytes.unwrap() > 1 << 20);
        assert!(!p.node_name.unwrap().is_empty());
    }
}
