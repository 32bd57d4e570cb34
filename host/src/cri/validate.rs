//! Request validation shared by the RPCs: metadata names as containerd accepts
//! them (CRI metadata is not a DNS name; [`crate::names`] maps them for the remote
//! side), UIDs, and size bounds, each failure an `InvalidArgument` that names the
//! field.

use std::collections::HashMap;

use tonic::Status;

/// Bound on labels + annotations of one object (Kubernetes' own limit).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// Bound on command + args + env of one container.
pub const MAX_PROCESS_BYTES: usize = 1024 * 1024;
/// Bound on any single path or string field.
pub const MAX_FIELD: usize = 4096;

/// Bound on a metadata name (pod, namespace, container).
pub const MAX_NAME: usize = 1024;

/// A CRI metadata name: not empty, at most [`MAX_NAME`] bytes, no control
/// characters. Case, length within the bound and punctuation are the caller's.
pub fn name(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if v.len() > MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes long (max {MAX_NAME})",
            v.len()
        )));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(Status::invalid_argument(format!(
            "{field} {:?} contains control characters",
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
        assert!(uid("u", "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11").is_ok());
        assert!(uid("u", "a b").is_err());
        // what kubelet and critest send
        assert!(name("n", "create-PodSandbox-for-container-1").is_ok());
        assert!(name("n", &"a".repeat(68)).is_ok());
        assert!(name("n", "").is_err());
        assert!(name("n", "a\nb").is_err());
        assert!(name("n", &"a".repeat(MAX_NAME + 1)).is_err());
    }
}
