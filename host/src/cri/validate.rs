//! Request validation shared by the RPCs: names as Kubernetes (and the interLink
//! API server) require them, and size bounds, each failure an `InvalidArgument`
//! that names the field.

use std::collections::HashMap;

use tonic::Status;

/// Bound on labels + annotations of one object (Kubernetes' own limit).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// Bound on command + args + env of one container.
pub const MAX_PROCESS_BYTES: usize = 1024 * 1024;
/// Bound on any single path or string field.
pub const MAX_FIELD: usize = 4096;

/// A DNS label: `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, at most 63 characters.
pub fn dns_label(field: &str, v: &str) -> Result<(), Status> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else if v.is_empty() {
        Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )))
    } else {
        Err(Status::invalid_argument(format!(
            "{field} {v:?} is not a valid name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// A DNS subdomain: dot-separated labels, at most 253 characters.
pub fn dns_subdomain(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if v.len() > 253 || v.split('.').any(|l| dns_label(field, l).is_err()) {
        return Err(Status::invalid_argument(format!(
            "{field} {:?} is not a valid name: at most 253 lowercase letters, digits, '-' and '.'",
            truncate(v)
        )));
    }
    Ok(())
}

pub fn uid(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if v.len() > 128
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Status::invalid_argument(format!(
            "{field} {:?} is not a valid UID",
            truncate(v)
        )));
    }
    Ok(())
}

pub fn metadata_size(
    what: &str,
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Result<(), Status> {
    let n: usize = labels
        .iter()
        .chain(annotations.iter())
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if n > MAX_METADATA_BYTES {
        return Err(Status::invalid_argument(format!(
            "{what} labels and annotations are {n} bytes (max {MAX_METADATA_BYTES})"
        )));
    }
    Ok(())
}

pub fn field(name: &str, v: &str) -> Result<(), Status> {
    if v.len() > MAX_FIELD {
        return Err(Status::invalid_argument(format!(
            "{name} is {} bytes long (max {MAX_FIELD})",
            v.len()
        )));
    }
    Ok(())
}

fn truncate(v: &str) -> String {
    if v.len() <= 80 {
        v.to_string()
    } else {
        let mut end = 80;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &v[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns_label("n", "web-1").is_ok());
        assert!(dns_label("n", "Web").is_err());
        assert!(dns_label("n", "-a").is_err());
        assert!(dns_label("n", &"a".repeat(64)).is_err());
        assert!(dns_subdomain("n", "a.b-c").is_ok());
        assert!(dns_subdomain("n", "a..b").is_err());
        assert!(uid("u", "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11").is_ok());
        assert!(uid("u", "a b").is_err());
    }
}
