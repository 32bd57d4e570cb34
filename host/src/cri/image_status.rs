//! `ImageStatus`: an unknown image is an empty answer, not an error (CRI rule).

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Image, Inner};

pub fn to_cri(i: &Image) -> cri::Image {
    let repo_digests = match i.reference.split_once('@') {
        Some((_, d)) => vec![format!("{}@{d}", crate::images::repository(&i.reference))],
        None => vec![],
    };
    let repo_tags = if i.reference.contains('@') {
        vec![]
    } else {
        vec![i.reference.clone()]
    };
    cri::Image {
        id: i.id.clone(),
        repo_tags,
        repo_digests,
        size: 0,
        uid: None,
        username: String::new(),
        spec: Some(cri::ImageSpec {
            image: i.reference.clone(),
            ..Default::default()
        }),
        pinned: i.pinned,
    }
}

/// Find an image by reference (normalised), full ID or unique ID prefix.
pub fn find<'a>(st: &'a Inner, image: &str) -> Option<&'a Image> {
    if let Ok(r) = crate::images::normalize(image) {
        let id = crate::images::image_id(&r);
        if let Some(i) = st.images.get(&id) {
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

pub fn image_status(
    rt: &Runtime,
    req: cri::ImageStatusRequest,
) -> Result<cri::ImageStatusResponse> {
    let image = req.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(tonic::Status::invalid_argument("image.image is required"));
    }
    let st = rt.store.read();
    Ok(cri::ImageStatusResponse {
        image: find(&st, image).map(to_cri),
        info: Default::default(),
    })
}
