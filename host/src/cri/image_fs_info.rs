//! `ImageFsInfo`: images live remotely; the data root is reported as the image
//! and container filesystem, with its real usage.

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn image_fs_info(
    rt: &Runtime,
    _req: cri::ImageFsInfoRequest,
) -> Result<cri::ImageFsInfoResponse> {
    let root = &rt.cfg.data_root_folder;
    let (used, inodes) = match nix::sys::statvfs::statvfs(root) {
        Ok(s) => (
            s.blocks().saturating_sub(s.blocks_free()) * s.fragment_size(),
            s.files().saturating_sub(s.files_free()),
        ),
        Err(_) => (0, 0),
    };
    let fs = cri::FilesystemUsage {
        timestamp: crate::now_ns(),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: root.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value { value: used }),
        inodes_used: Some(cri::UInt64Value { value: inodes }),
    };
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![fs.clone()],
        container_filesystems: vec![fs],
    })
}
