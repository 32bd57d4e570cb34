//! `PullImage`: the image is pulled by the remote side when the pod runs; here
//! the normalised reference is recorded with a stable ID. Credentials are never
//! stored or logged.

use tonic::Status;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn pull_image(rt: &Runtime, req: cri::PullImageRequest) -> Result<cri::PullImageResponse> {
    let image = req.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(Status::invalid_argument("image.image is required"));
    }
    if crate::images::is_id(image) {
        // an ID names an image this runtime has; it cannot be fetched by ID
        let st = rt.store.read();
        return match crate::images::find(&st, image) {
            Some(i) => Ok(cri::PullImageResponse {
                image_ref: i.id.clone(),
            }),
            None => Err(Status::not_found(format!(
                "image ID {image:?} is not known here; pull the image by reference"
            ))),
        };
    }
    let reference =
        crate::images::normalize(image).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let id = rt
        .store
        .update(|st, d| crate::images::record(st, d, &reference));
    tracing::info!(image = %reference, "image recorded (pulled remotely)");
    Ok(cri::PullImageResponse { image_ref: id })
}
