//! `ImageStatus`: an unknown image is an empty answer, not an error (CRI rule).
//! `size` is the bytes this runtime keeps for the image (its record, never 0:
//! cri-client refuses 0); the image itself is pulled and stored by the backend.

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Image, Inner};

pub fn to_cri(i: &Image) -> cri::Image {
    cri::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags(),
        repo_digests: i.repo_digests(),
        size: i.size(),
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
    crate::images::find(st, image)
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
