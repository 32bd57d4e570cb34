//! The accept loop: one task per connection (TLS handshake in the task, so a
//! slow client cannot stall accepting), HTTP/1.1 and HTTP/2, and a graceful
//! shutdown that stops accepting and lets requests in flight finish.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use super::ServerError;
use super::listen::Bound;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn serve_io<I>(io: I, app: Router, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // a client that never finishes its request head is dropped (slowloris)
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app));
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!("connection ended: {e}");
        }
    });
}

/// Serve `app` on `bound` until `shutdown` resolves, then wait up to `grace`
/// for connections to finish their requests.
pub async fn run(
    bound: Bound,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServerError> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted: std::io::Result<()> = tokio::select! {
            _ = &mut shutdown => break,
            r = accept_one(&bound, &app, &graceful) => r,
        };
        if let Err(e) = accepted {
            // EMFILE and friends: back off a little instead of spinning
            tracing::warn!("accept: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let socket = match &bound {
        Bound::Unix(_, p) => Some(p.clone()),
        _ => None,
    };
    drop(bound);
    if let Some(p) = socket {
        let _ = std::fs::remove_file(p);
    }
    let open = graceful.count();
    tracing::info!(
        connections = open,
        "shutting down; finishing requests in flight"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace of {grace:?} over; dropping open connections"),
    }
    Ok(())
}

async fn accept_one(
    bound: &Bound,
    app: &Router,
    graceful: &GracefulShutdown,
) -> std::io::Result<()> {
    match bound {
        Bound::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            serve_io(s, app.clone(), graceful.watcher());
        }
        Bound::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            serve_io(s, app.clone(), graceful.watcher());
        }
        Bound::Tls(l, acceptor) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => serve_io(tls, app, watcher),
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }
    Ok(())
}
