//! Image references: images are pulled by the remote side, so the host only
//! records what kubelet asked for, normalised the way containerd does
//! (`busybox` -> `docker.io/library/busybox:latest`), with a stable ID.

use sha2::{Digest, Sha256};

use crate::store::{Dirty, Image, Inner};

/// An image reference that cannot be used; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidImageRef(pub String);

/// Normalise an image reference; `Err` names what is wrong with it.
pub fn normalize(image: &str) -> Result<String, InvalidImageRef> {
    let image = image.trim();
    if image.is_empty() {
        return Err(InvalidImageRef("image reference is empty".into()));
    }
    if image.len() > 4096 {
        return Err(InvalidImageRef(format!(
            "image reference is {} bytes long (max 4096)",
            image.len()
        )));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidImageRef(format!(
            "image reference {image:?} contains whitespace"
        )));
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
            return Err(InvalidImageRef(format!(
                "image reference {image:?} has an invalid digest"
            )));
        }
    }
    // split a tag off the last path component
    let (path, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(InvalidImageRef(format!(
            "image reference {image:?} has an invalid name"
        )));
    }
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(InvalidImageRef(format!(
            "image reference {image:?} has an invalid tag"
        )));
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
        return Err(InvalidImageRef(format!(
            "image reference {image:?} has an invalid repository name (lowercase letters, digits, . _ - only)"
        )));
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

/// The stable ID of a normalised reference. References pinned to a digest
/// (`repo:tag@sha256:...`, `repo@sha256:...`) name content, so every reference
/// with that digest, whatever its tag or registry, is one image with one ID;
/// a reference without a digest is its own image.
pub fn image_id(normalized: &str) -> String {
    let key = match normalized.split_once('@') {
        Some((_, digest)) => format!("@{digest}"),
        None => normalized.to_string(),
    };
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// Is `s` written as an image ID (`sha256:<hex>`), never a reference?
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The tag form of a reference (`repo:tag`), if it has a tag.
pub fn tag_form(normalized: &str) -> Option<&str> {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    (repository(no_digest) != no_digest).then_some(no_digest)
}

/// The digest form of a reference (`repo@sha256:...`), if it has a digest.
pub fn digest_form(normalized: &str) -> Option<String> {
    let (_, d) = normalized.split_once('@')?;
    Some(format!("{}@{d}", repository(normalized)))
}

impl crate::store::Image {
    /// Every reference recorded for this image.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.reference.as_str()).chain(self.more.iter().map(String::as_str))
    }

    /// `repo:tag` of every reference that has a tag.
    pub fn repo_tags(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .references()
            .filter_map(tag_form)
            .map(str::to_string)
            .collect();
        v.dedup();
        v
    }

    /// `repo@digest` of every reference that has a digest.
    pub fn repo_digests(&self) -> Vec<String> {
        let mut v: Vec<String> = self.references().filter_map(digest_form).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Does the normalised reference `r` name this image (as written, by its tag
    /// or by its digest)?
    pub fn matches(&self, r: &str) -> bool {
        self.references().any(|own| {
            own == r
                || (!r.contains('@') && tag_form(own) == Some(r))
                || (tag_form(r).is_none() && digest_form(own).as_deref() == Some(r))
        })
    }

    /// The image's size as this runtime reports it: the bytes it keeps for the
    /// image (its record). The image itself is pulled and stored by the backend.
    pub fn size(&self) -> u64 {
        serde_json::to_vec(self)
            .map(|b| b.len() as u64)
            .unwrap_or(1)
    }
}

/// The repository part (for `repo_digests`): `docker.io/library/busybox`.
pub fn repository(normalized: &str) -> &str {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i + 1..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Find an image by reference (normalised here), full ID or unique ID prefix.
pub fn find<'a>(st: &'a Inner, image: &str) -> Option<&'a Image> {
    if !is_id(image)
        && let Ok(r) = normalize(image)
    {
        if let Some(i) = st.images.get(&image_id(&r))
            && (r.contains('@') || i.matches(&r))
        {
            return Some(i);
        }
        if let Some(i) = st.images.values().find(|i| i.matches(&r)) {
            return Some(i);
        }
    }
    let key = image.strip_prefix("sha256:").unwrap_or(image);
    if key.len() >= 6 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        let full = format!("sha256:{key}");
        if let Ok(id) = crate::ids::resolve(&st.images, &full) {
            return st.images.get(id);
        }
    }
    None
}

/// Record the normalised reference `r`; returns the image's ID. A reference
/// with a digest joins the image of that digest; a tag moves to the image that
/// has it now (an image left with no reference is forgotten).
pub fn record(st: &mut Inner, d: &mut Dirty, r: &str) -> String {
    if !r.contains('@')
        && let Some(i) = find(st, r)
    {
        return i.id.clone();
    }
    let id = image_id(r);
    if let Some(tag) = tag_form(r) {
        let mut emptied = vec![];
        for (oid, img) in st.images.iter_mut().filter(|(oid, _)| **oid != id) {
            let before = img.more.len() + 1;
            let mut refs: Vec<String> = img
                .references()
                .filter(|o| tag_form(o) != Some(tag))
                .map(str::to_string)
                .collect();
            if refs.len() == before {
                continue;
            }
            d.image(oid);
            if refs.is_empty() {
                emptied.push(oid.clone());
            } else {
                img.reference = refs.remove(0);
                img.more = refs;
            }
        }
        for oid in emptied {
            st.images.remove(&oid);
        }
    }
    d.image(&id);
    match st.images.get_mut(&id) {
        Some(img) => {
            if !img.references().any(|o| o == r) {
                img.more.push(r.to_string());
            }
        }
        None => {
            st.images.insert(
                id.clone(),
                Image {
                    id: id.clone(),
                    reference: r.to_string(),
                    more: vec![],
                    pinned: false,
                    recorded_at: crate::now_ns(),
                },
            );
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_one_digest_are_one_image() {
        let mut st = Inner::default();
        let mut d = Dirty::default();
        let a = record(&mut st, &mut d, "docker.io/library/busybox:1@sha256:ab");
        let b = record(&mut st, &mut d, "docker.io/library/busybox:2@sha256:ab");
        assert_eq!(a, b);
        assert_eq!(st.images.len(), 1);
        let img = find(&st, "busybox:2").unwrap();
        assert_eq!(
            img.repo_tags(),
            ["docker.io/library/busybox:1", "docker.io/library/busybox:2"]
        );
        assert_eq!(img.repo_digests(), ["docker.io/library/busybox@sha256:ab"]);
        assert_eq!(find(&st, "busybox@sha256:ab").unwrap().id, a);
        assert_eq!(find(&st, &a).unwrap().id, a);
        assert_eq!(find(&st, &a[..19]).unwrap().id, a);
        // a tag-only pull of a known tag is that image
        assert_eq!(record(&mut st, &mut d, "docker.io/library/busybox:1"), a);
        // the tag moves to another digest
        let c = record(&mut st, &mut d, "docker.io/library/busybox:2@sha256:cd");
        assert_ne!(c, a);
        assert_eq!(find(&st, "busybox:2").unwrap().id, c);
        assert_eq!(
            find(&st, &a).unwrap().repo_tags(),
            ["docker.io/library/busybox:1"]
        );
        assert!(find(&st, "sha256:ffffff").is_none());
        assert!(img_size_nonzero(&st));
    }

    fn img_size_nonzero(st: &Inner) -> bool {
        st.images.values().all(|i| i.size() > 0)
    }

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
        // one digest, one image, whatever the tag or registry
        assert_eq!(
            image_id("docker.io/library/busybox:1@sha256:ab"),
            image_id("quay.io/x/busybox:2@sha256:ab")
        );
        assert_ne!(
            image_id("docker.io/library/busybox:1"),
            image_id("docker.io/library/busybox:2")
        );
        assert!(is_id(&image_id("a")));
        assert!(!is_id("busybox"));
        assert!(!is_id("sha256"));
        assert_eq!(
            tag_form("docker.io/library/busybox:1@sha256:ab"),
            Some("docker.io/library/busybox:1")
        );
        assert_eq!(tag_form("docker.io/library/busybox@sha256:ab"), None);
        assert_eq!(
            digest_form("docker.io/library/busybox:1@sha256:ab").as_deref(),
            Some("docker.io/library/busybox@sha256:ab")
        );
    }
}
