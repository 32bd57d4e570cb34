//! The gRPC listener: a Unix socket (mode 0660, a stale one replaced) serving
//! `RuntimeService` and `ImageService`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;

use crate::cri::Cri;
use crate::proto::runtime::v1::image_service_server::ImageServiceServer;
use crate::proto::runtime::v1::runtime_service_server::RuntimeServiceServer;
use crate::runtime::Runtime;

/// Bind `path`: create its directory, replace a stale socket (refuse a live one).
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve CRI on `listener` until `shutdown` resolves.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let cri = Cri { rt };
    const MAX_MSG: usize = 16 << 20;
    tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(cri.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(64 << 20),
        )
        .add_service(ImageServiceServer::new(cri).max_decoding_message_size(MAX_MSG))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
