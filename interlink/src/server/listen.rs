//! Binding the listening socket: TCP, TLS (optionally verifying client
//! certificates) or a Unix socket (mode 0660, a stale socket replaced).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

use super::ServerError;
use super::config::ServerConfig;
use crate::tls as pem;

/// A bound listener.
pub enum Bound {
    Tcp(TcpListener),
    Tls(TcpListener, TlsAcceptor),
    Unix(UnixListener, PathBuf),
}

impl Bound {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(l) | Bound::Tls(l, _) => l.local_addr().ok(),
            Bound::Unix(..) => None,
        }
    }
}

/// Where to listen, from `InterlinkAddress`/`InterlinkPort`.
enum Target {
    Tcp { host: String, tls: bool },
    Unix(PathBuf),
}

fn target(cfg: &ServerConfig) -> Result<Target, ServerError> {
    let a = cfg.interlink_address.trim().trim_end_matches('/');
    if let Some(p) = a.strip_prefix("unix://") {
        if !p.starts_with('/') {
            return Err(ServerError::Config(format!(
                "InterlinkAddress {a:?}: a unix socket needs an absolute path"
            )));
        }
        return Ok(Target::Unix(p.into()));
    }
    let (host, https) = if let Some(h) = a.strip_prefix("https://") {
        (h, true)
    } else if let Some(h) = a.strip_prefix("http://") {
        (h, false)
    } else if !a.contains("://") {
        (a, false)
    } else {
        return Err(ServerError::Config(format!(
            "InterlinkAddress {a:?} must be http://host, https://host or unix:///path"
        )));
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host.contains('/') {
        return Err(ServerError::Config(format!(
            "InterlinkAddress {a:?} must not have a path"
        )));
    }
    Ok(Target::Tcp {
        host: host.to_string(),
        tls: https || cfg.tls.enabled,
    })
}

fn tls_acceptor(cfg: &ServerConfig) -> Result<TlsAcceptor, ServerError> {
    let c = |m: String| ServerError::Config(m);
    let cert = cfg
        .tls
        .cert_file
        .as_ref()
        .ok_or_else(|| c("TLS needs TLS.CertFile".into()))?;
    let key = cfg
        .tls
        .key_file
        .as_ref()
        .ok_or_else(|| c("TLS needs TLS.KeyFile".into()))?;
    let certs = pem::load_certs(cert).map_err(c)?;
    let key = pem::load_key(key).map_err(c)?;
    let provider = pem::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| c(format!("tls: {e}")))?;
    let builder = match &cfg.tls.ca_cert_file {
        Some(ca) => {
            let roots = Arc::new(pem::root_store_from(ca).map_err(c)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if cfg.tls.require_client_cert.unwrap_or(true) {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build().map_err(|e| c(format!("client verifier: {e}")))?,
            )
        }
        None => {
            if cfg.tls.require_client_cert == Some(true) {
                return Err(c("TLS.RequireClientCert needs TLS.CACertFile".into()));
            }
            builder.with_no_client_auth()
        }
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| c(format!("TLS certificate/key: {e}")))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(sc)))
}

/// Replace a stale socket file; refuse when something still listens there
/// or the path is not a socket.
fn clear_stale_socket(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::Bind(format!(
            "{} exists and is not a socket",
            path.display()
        )));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::Bind(format!(
            "{} is in use by another server",
            path.display()
        )));
    }
    std::fs::remove_file(path).map_err(|e| {
        ServerError::Bind(format!(
            "cannot remove stale socket {}: {e}",
            path.display()
        ))
    })
}

/// Pending connections the kernel queues for us (capped by `somaxconn`):
/// while the connection limit makes clients wait, a short queue would drop
/// their SYNs and cost them a retransmission (a second or more).
pub(crate) const ACCEPT_BACKLOG: u32 = 1024;

async fn bind_tcp(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(ACCEPT_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("resolves to no address")))
}

pub async fn bind(cfg: &ServerConfig) -> Result<Bound, ServerError> {
    match target(cfg)? {
        Target::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ServerError::Bind(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            clear_stale_socket(&path)?;
            let l = UnixListener::bind(&path)
                .map_err(|e| ServerError::Bind(format!("{}: {e}", path.display())))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| ServerError::Bind(format!("chmod {}: {e}", path.display())))?;
            Ok(Bound::Unix(l, path))
        }
        Target::Tcp { host, tls } => {
            let acceptor = if tls { Some(tls_acceptor(cfg)?) } else { None };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addr = format!(
                "{}:{}",
                if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                },
                cfg.interlink_port
            );
            let l = bind_tcp(&addr)
                .await
                .map_err(|e| ServerError::Bind(format!("{addr}: {e}")))?;
            Ok(match acceptor {
                Some(a) => Bound::Tls(l, a),
                None => Bound::Tcp(l),
            })
        }
    }
}
