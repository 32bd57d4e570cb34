//! The accept loop: one task per connection (TLS handshake in the task, so a
//! slow client cannot stall accepting), HTTP/1.1 and HTTP/2 under the
//! connection bounds of [`super::connections`], and a graceful shutdown that
//! stops accepting and lets requests in flight finish.

use std::future::Future;
use std::time::Duration;

use axum::Router;

use super::ServerError;
use super::connections::{Connections, Slot};
use super::listen::Bound;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `bound` until `shutdown` resolves, then wait up to `grace`
/// for connections to finish their requests.
pub async fn run(
    bound: Bound,
    app: Router,
    conns: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServerError> {
    tokio::pin!(shutdown);
    loop {
        // room first, then accept: clients beyond the limit wait in the kernel's queue
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = conns.slot() => s,
        };
        let accepted: std::io::Result<()> = tokio::select! {
            _ = &mut shutdown => break,
            r = accept_one(&bound, &app, &conns, slot) => r,
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
    tracing::info!(
        connections = conns.open(),
        "shutting down; finishing requests in flight"
    );
    conns.shutdown();
    tokio::select! {
        _ = conns.drained() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace of {grace:?} over; dropping open connections"),
    }
    Ok(())
}

async fn accept_one(
    bound: &Bound,
    app: &Router,
    conns: &Connections,
    slot: Slot,
) -> std::io::Result<()> {
    match bound {
        Bound::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            conns.serve(slot, s, app.clone());
        }
        Bound::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            conns.serve(slot, s, app.clone());
        }
        Bound::Tls(l, acceptor) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => conns.serve(slot, tls, app),
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }
    Ok(())
}
