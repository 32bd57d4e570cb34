//! `RemoveImage`: forgets the record; unknown images succeed (idempotent).

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn remove_image(
    rt: &Runtime,
    req: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse> {
    let image = req.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(tonic::Status::invalid_argument("image.image is required"));
    }
    rt.store.update(|st, d| {
        if let Some(id) = super::image_status::find(st, image).map(|i| i.id.clone()) {
            st.images.remove(&id);
            d.image(&id);
        }
    });
    Ok(cri::RemoveImageResponse {})
}
