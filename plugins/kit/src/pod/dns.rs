//! A pod's DNS settings as the `/etc/resolv.conf` its containers read.
//!
//! kubelet computes a pod's DNS (cluster DNS, the node's resolver, the pod's
//! own `dnsConfig`) and hands it to the runtime; the CRI host sends it as the
//! pod's `dnsConfig` with `dnsPolicy: None`. A plugin whose containers have a
//! file system of their own gives them this file.

use k8s_openapi::api::core::v1::PodSpec;

/// The `resolv.conf` of a pod whose spec has a `dnsConfig` (nameservers,
/// search domains, options, as kubelet writes them); `None` without one, or
/// when it holds nothing. Entries that could break out of their line (a
/// newline, a space inside a word) are left out.
pub fn resolv_conf(spec: &PodSpec) -> Option<String> {
    let c = spec.dns_config.as_ref()?;
    let word = |w: &&String| !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || c == '#');
    let mut out = String::new();
    for ns in c.nameservers.iter().flatten().filter(word) {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let search: Vec<&String> = c.searches.iter().flatten().filter(word).collect();
    if !search.is_empty() {
        let s: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("search {}\n", s.join(" ")));
    }
    let options: Vec<String> = c
        .options
        .iter()
        .flatten()
        .filter_map(|o| {
            let name = o.name.as_ref().filter(word)?;
            Some(match o.value.as_ref().filter(word) {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            })
        })
        .collect();
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_like_config_and_hostile_entries() {
        let spec: PodSpec = serde_json::from_value(json!({"containers": [],
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["10.96.0.10", "bad\nnameserver 6.6.6.6"],
                          "searches": ["ns.svc.cluster.local", "svc.cluster.local"],
                          "options": [{"name": "ndots", "value": "5"}, {"name": "edns0"},
                                      {"name": "x y"}]}}))
        .unwrap();
        assert_eq!(
            resolv_conf(&spec).unwrap(),
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5 edns0\n"
        );
        let none: PodSpec = serde_json::from_value(json!({"containers": []})).unwrap();
        assert_eq!(resolv_conf(&none), None);
    }
}
