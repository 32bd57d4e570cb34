//! CRI metadata names -> the names a remote pod is sent with.
//!
//! CRI metadata is not a DNS name: kubelet and critest send uppercase letters and
//! pod names longer than 63 characters (valid Kubernetes pod names: each
//! dot-separated label of a DNS subdomain is capped at 63 there only by the
//! interLink API). The host accepts them as containerd does and maps them here,
//! deterministically and without collisions, to what the interLink API accepts: a
//! name that already is valid stays as it is; any other name becomes a lowercase
//! form of it cut to fit, followed by `-` and 10 hex digits of the SHA-256 of the
//! original name.

use sha2::{Digest, Sha256};

const HASH_HEX: usize = 10;

/// A DNS label (`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, at most 63 characters).
pub fn is_dns_label(s: &str) -> bool {
    interlink::validate::is_dns_label(s)
}

/// A DNS subdomain as the interLink API checks it (labels of at most 63).
pub fn is_dns_subdomain(s: &str) -> bool {
    interlink::validate::is_dns_subdomain(s)
}

fn suffix(original: &str) -> String {
    hex::encode(Sha256::digest(original.as_bytes()))[..HASH_HEX].to_string()
}

/// Lowercase letters and digits kept, anything else one `-`, no `-` at the ends.
fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for ch in s.chars() {
        let c = ch.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        if out.len() >= max {
            break;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `name` as a DNS label (container names, namespaces, volume names).
pub fn dns_label(name: &str) -> String {
    if is_dns_label(name) {
        return name.to_string();
    }
    let base = sanitize(name, 63 - HASH_HEX - 1);
    if base.is_empty() {
        format!("x-{}", suffix(name))
    } else {
        format!("{base}-{}", suffix(name))
    }
}

/// `name` as a pod name the interLink API accepts.
pub fn pod_name(name: &str) -> String {
    if is_dns_subdomain(name) {
        return name.to_string();
    }
    dns_label(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_stay() {
        assert_eq!(dns_label("web-1"), "web-1");
        assert_eq!(pod_name("a.b-c"), "a.b-c");
    }

    #[test]
    fn others_are_mapped_validly_and_distinctly() {
        let names = [
            "create-PodSandbox-for-container-0b4e1b43-6c7e-4f7c-9d7f-1c2a3b4c5d6e",
            "create-podsandbox-for-container-0b4e1b43-6c7e-4f7c-9d7f-1c2a3b4c5d6e",
            "Benchmark-container-1",
            "benchmark-container-1-",
            "_",
            "ÄÖÜ",
            &"x".repeat(300),
            &"x".repeat(301),
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let l = dns_label(n);
            assert!(is_dns_label(&l), "{n:?} -> {l:?}");
            let p = pod_name(n);
            assert!(is_dns_subdomain(&p), "{n:?} -> {p:?}");
            assert!(seen.insert(l.clone()), "{n:?} -> {l:?} collides");
            assert_eq!(dns_label(n), l, "not deterministic");
        }
        // a 68-character pod name without dots is valid in Kubernetes, not for interLink
        let long = "a".repeat(68);
        assert!(pod_name(&long).len() <= 63);
        assert!(pod_name(&long).starts_with("aaaa"));
    }
}
