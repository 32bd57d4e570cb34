//! `PullImage`: the image is pulled by the remote side when the pod runs; here
//! the normalised reference is recorded with a stable ID. Credentials are never
//! stored or logged.

use tonic::Status;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Image;

pub fn pull_image(rt: &Runtime, req: cri::PullImageRequest) -> Result<cri::PullImageResponse> {
    let image = req.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(Status::invalid_argument("image.image is required"));
    }
    let reference = crate::images::normalize(image).map_err(Status::invalid_argument)?;
    let id = crate::images::image_id(&reference);
    rt.store.update(|st, d| {
        st.images.entry(id.clone()).or_insert_with(|| {
            d.image(&id);
            Image {
                id: id.clone(),
                reference: reference.clone(),
                pinned: false,
                recorded_at: crate::now_ns(),
            }
        });
    });
    tracing::info!(image = %reference, "image recorded (pulled remotely)");
    Ok(cri::PullImageResponse { image_ref: id })
}
