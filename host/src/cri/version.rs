//! `Version`.

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub const RUNTIME_NAME: &str = "interlink-cri";
pub const CRI_API_VERSION: &str = "v1";

pub fn version(_rt: &Runtime, _req: cri::VersionRequest) -> Result<cri::VersionResponse> {
    Ok(cri::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: CRI_API_VERSION.into(),
    })
}
