//! `ListImages` and `StreamImages`.

use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn list(rt: &Runtime, f: Option<&cri::ImageFilter>) -> Vec<cri::Image> {
    let st = rt.store.read();
    match f
        .and_then(|f| f.image.as_ref())
        .map(|i| i.image.as_str())
        .filter(|s| !s.is_empty())
    {
        Some(img) => super::image_status::find(&st, img)
            .map(super::image_status::to_cri)
            .into_iter()
            .collect(),
        None => st
            .images
            .values()
            .map(super::image_status::to_cri)
            .collect(),
    }
}
