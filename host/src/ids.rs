//! Runtime-chosen IDs (64 hex characters, as containerd's) and unique-prefix lookup.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A fresh random ID.
pub fn new_id() -> String {
    let mut h = Sha256::new();
    h.update(uuid::Uuid::new_v4().as_bytes());
    h.update(crate::now_ns().to_le_bytes());
    hex::encode(h.finalize())
}

/// How a lookup by ID or prefix failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    NotFound,
    Ambiguous(usize),
}

/// Resolve `key` (a full ID or a unique prefix of one) among the keys of `map`.
pub fn resolve<'a, V>(map: &'a HashMap<String, V>, key: &str) -> Result<&'a str, Lookup> {
    if let Some((k, _)) = map.get_key_value(key) {
        return Ok(k.as_str());
    }
    if key.is_empty() {
        return Err(Lookup::NotFound);
    }
    let mut found: Option<&str> = None;
    let mut n = 0;
    for k in map.keys() {
        if k.starts_with(key) {
            n += 1;
            found = Some(k.as_str());
        }
    }
    match (n, found) {
        (1, Some(k)) => Ok(k),
        (0, _) => Err(Lookup::NotFound),
        _ => Err(Lookup::Ambiguous(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn prefix_lookup() {
        let mut m = HashMap::new();
        m.insert("abc123".to_string(), 1);
        m.insert("abd456".to_string(), 2);
        assert_eq!(resolve(&m, "abc123"), Ok("abc123"));
        assert_eq!(resolve(&m, "abc"), Ok("abc123"));
        assert_eq!(resolve(&m, "ab"), Err(Lookup::Ambiguous(2)));
        assert_eq!(resolve(&m, "x"), Err(Lookup::NotFound));
        assert_eq!(resolve(&m, ""), Err(Lookup::NotFound));
    }
}
