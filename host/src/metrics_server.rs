//! The optional TCP listener (`MetricsAddress`) for `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

/// Serve `/metrics` and `/healthz` until the process ends.
pub async fn serve(addr: SocketAddr, rt: Arc<crate::runtime::Runtime>) -> std::io::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    let r1 = rt.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let rt = r1.clone();
                async move {
                    rt.refresh_gauges();
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        rt.metrics.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let rt = rt.clone();
                async move {
                    match rt.runtime_ready() {
                        Ok(()) => (axum::http::StatusCode::OK, "ok".to_string()),
                        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why.to_string()),
                    }
                }
            }),
        );
    axum::serve(listener, app).await
}
