//! The embedded server (`Server::bind` + `serve`) shuts down gracefully: a
//! request in flight when shutdown starts still gets its answer, new
//! connections are refused afterwards, a Unix socket file is removed.
//! The plugin here is a small real HTTP server whose `/status` is slow.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use interlink::client::{Client, ClientConfig};
use interlink::server::{Server, ServerConfig};

async fn slow_plugin() -> u16 {
    let app = Router::new().route(
        "/status",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            "[]"
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_request_in_flight_finishes() {
    let plugin = slow_plugin().await;
    let cfg = ServerConfig {
        interlink_port: 0,
        sidecar_url: "http://127.0.0.1".into(),
        sidecar_port: plugin,
        ..Default::default()
    };
    let server = Server::bind(cfg).await.unwrap();
    let addr = server.local_addr().expect("a TCP address");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    let client = Client::new(ClientConfig {
        address: "http://127.0.0.1".into(),
        port: Some(addr.port()),
        ..Default::default()
    })
    .unwrap();
    let c2 = client.clone();
    let in_flight = tokio::spawn(async move { c2.status(&[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    tx.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.expect("the request in flight is answered"), vec![]);
    serving.await.unwrap().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?}",
        t.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_removed_on_shutdown() {
    let plugin = slow_plugin().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("il.sock");
    let cfg = ServerConfig {
        interlink_address: format!("unix://{}", sock.display()),
        sidecar_port: plugin,
        ..Default::default()
    };
    let server = Server::bind(cfg).await.unwrap();
    assert!(server.local_addr().is_none());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    let client = Client::new(ClientConfig {
        address: format!("unix://{}", sock.display()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(client.status(&[]).await.unwrap(), vec![]);
    tx.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(!sock.exists(), "socket file left behind");
}
