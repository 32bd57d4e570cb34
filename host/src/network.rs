//! Pod IPs. kubelet treats a non-host-network sandbox without an IP as broken,
//! so every such sandbox gets an IPv4 address from the pod CIDR: the node's, as
//! kubelet sends it with `UpdateRuntimeConfig`, else the `PodCIDR` config key,
//! else [`DEFAULT_POD_CIDR`]. The lowest free host address is taken (the
//! network address, the first host, kept for a gateway, and the broadcast
//! address are never given); it is recorded with the sandbox and free again when
//! the sandbox is removed.
//!
//! The address is bookkeeping for Kubernetes (pod status, `status.podIP` in the
//! downward API): nothing on this node routes to it. The pod's network is the
//! backend's (the local plugin's processes share this node's network; a Slurm
//! job has its compute node's; a container engine its own bridge). The interLink
//! `/status` answer carries no pod address, so a backend's real address cannot
//! be shown here.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The built-in pod CIDR: private, and not the default of Docker (172.17/16),
/// podman/containerd (10.88/16), flannel (10.244/16) or Calico (192.168/16).
pub const DEFAULT_POD_CIDR: &str = "10.234.0.0/16";

/// Why a pod CIDR was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(pub String);

impl From<String> for CidrError {
    fn from(s: String) -> CidrError {
        CidrError(s)
    }
}

/// The range pod IPs come from: the node's (kubelet's), else the configured
/// one, else [`DEFAULT_POD_CIDR`]; one that does not parse is skipped.
pub fn choose_cidr(node: Option<&str>, configured: Option<&str>) -> Cidr {
    node.and_then(|c| Cidr::parse(c).ok())
        .or_else(|| configured.and_then(|c| Cidr::parse(c).ok()))
        .unwrap_or_else(|| Cidr::parse(DEFAULT_POD_CIDR).expect("valid"))
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    /// The first IPv4 CIDR of a comma-separated list (kubelet sends dual-stack
    /// CIDRs that way); `Err` names what is wrong.
    pub fn parse(list: &str) -> Result<Cidr, CidrError> {
        let mut errors = vec![];
        for one in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if one.contains(':') {
                continue; // IPv6: pod IPs are IPv4 here
            }
            match Self::parse_v4(one) {
                Ok(c) => return Ok(c),
                Err(e) => errors.push(e.0),
            }
        }
        Err(CidrError(if errors.is_empty() {
            format!("pod CIDR {list:?} has no IPv4 range")
        } else {
            errors.join("; ")
        }))
    }

    fn parse_v4(s: &str) -> Result<Cidr, CidrError> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {s:?} is not ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("pod CIDR {s:?} has an invalid address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("pod CIDR {s:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// The lowest address of the range, not in `used`, that may be given to a pod.
    pub fn allocate(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u64 << (32 - self.prefix);
        // skip the network address and .1 (a gateway); stop before broadcast
        (2..size - 1)
            .map(|i| Ipv4Addr::from(base + i as u32))
            .find(|a| !used.contains(a))
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(a) & mask == u32::from(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_allocates() {
        let c = Cidr::parse("fd00::/64, 10.1.2.3/24").unwrap();
        assert_eq!(c.to_string(), "10.1.2.0/24");
        let mut used = HashSet::new();
        let a = c.allocate(&used).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 1, 2, 2));
        used.insert(a);
        assert_eq!(c.allocate(&used).unwrap(), Ipv4Addr::new(10, 1, 2, 3));
        for i in 2..255 {
            used.insert(Ipv4Addr::new(10, 1, 2, i));
        }
        assert_eq!(c.allocate(&used), None, "broadcast is never given");
        assert!(c.contains(Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 3, 1)));
        assert!(Cidr::parse("fd00::/64").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/31").is_err());
        assert!(Cidr::parse("x/16").is_err());
        Cidr::parse(DEFAULT_POD_CIDR).unwrap();
    }
}
