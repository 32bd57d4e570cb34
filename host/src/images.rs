//! Image references: images are pulled by the remote side, so the host only
//! records what kubelet asked for, normalised the way containerd does
//! (`busybox` -> `docker.io/library/busybox:latest`), with a stable ID.

use sha2::{Digest, Sha256};

/// Normalise an image reference; `Err` names what is wrong with it.
pub fn normalize(image: &str) -> Result<String, String> {
    let image = image.trim();
    if image.is_empty() {
        return Err("image reference is empty".into());
    }
    if image.len() > 4096 {
        return Err(format!(
            "image reference is {} bytes long (max 4096)",
            image.len()
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("image reference {image:?} contains whitespace"));
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && !hex.is_empty() && hex.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !ok {
            return Err(format!("image reference {image:?} has an invalid digest"));
        }
    }
    // split a tag off the last path component
    let (path, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(format!("image reference {image:?} has an invalid name"));
    }
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(format!("image reference {image:?} has an invalid tag"));
    }
    let first = path.split('/').next().unwrap_or("");
    let has_registry =
        path.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full_path = if has_registry {
        path.to_string()
    } else if path.contains('/') {
        format!("docker.io/{path}")
    } else {
        format!("docker.io/library/{path}")
    };
    if full_path.split('/').skip(1).any(|c| {
        c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    }) {
        return Err(format!(
            "image reference {image:?} has an invalid repository name (lowercase letters, digits, . _ - only)"
        ));
    }
    let mut out = full_path;
    match (tag, digest) {
        (Some(t), Some(d)) => out = format!("{out}:{t}@{d}"),
        (Some(t), None) => out = format!("{out}:{t}"),
        (None, Some(d)) => out = format!("{out}@{d}"),
        (None, None) => out.push_str(":latest"),
    }
    Ok(out)
}

/// The stable ID of a normalised reference.
pub fn image_id(normalized: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(normalized.as_bytes()))
    )
}

/// The repository part (for `repo_digests`): `docker.io/library/busybox`.
pub fn repository(normalized: &str) -> &str {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i + 1..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("busybox:1.36").unwrap(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            normalize("library/busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize("foo/bar:v1").unwrap(), "docker.io/foo/bar:v1");
        assert_eq!(
            normalize("registry.k8s.io/pause:3.9").unwrap(),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(
            normalize("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize("busybox@sha256:abcd").unwrap(),
            "docker.io/library/busybox@sha256:abcd"
        );
        assert!(normalize("").is_err());
        assert!(normalize("Busy Box").is_err());
        assert!(normalize("UPPER/case").is_err());
        assert_eq!(
            repository("docker.io/library/busybox:latest"),
            "docker.io/library/busybox"
        );
        assert_eq!(repository("localhost:5000/x:latest"), "localhost:5000/x");
        assert_eq!(image_id("a"), image_id("a"));
        assert!(image_id("a").starts_with("sha256:"));
    }
}
