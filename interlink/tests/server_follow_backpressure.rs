//! `/getLogs` with Follow streams through the server with backpressure: a
//! client that stops reading stops the plugin's stream too (bounded by socket
//! buffers), instead of the server buffering without limit. The plugin is a
//! small real HTTP server producing log bytes as fast as it is asked for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use interlink::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_slows_the_plugin_down() {
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    let app = Router::new().route(
        "/getLogs",
        get(move || {
            let p = p.clone();
            async move {
                let s = futures::stream::unfold((), move |_| {
                    let p = p.clone();
                    async move {
                        p.fetch_add(CHUNK, Ordering::Relaxed);
                        Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; CHUNK])),
                            (),
                        ))
                    }
                });
                Body::from_stream(s)
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plugin_port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let server = Server::bind(ServerConfig {
        interlink_port: 0,
        sidecar_port: plugin_port,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));

    let uid = "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11";
    let client = interlink::client::Client::new(interlink::client::ClientConfig {
        port: Some(addr.port()),
        ..Default::default()
    })
    .unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": "main"}]}
    }))
    .unwrap();
    client.update_cache(&pod).await.unwrap();

    // a raw HTTP/1.1 client that reads a little, then stops reading
    let body = serde_json::json!({"Namespace": "default", "PodUID": uid, "PodName": "p",
        "ContainerName": "main", "Opts": {"Follow": true}})
    .to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET /getLogs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < 1024 * 1024 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended");
        got += n;
    }
    assert!(String::from_utf8_lossy(&buf[..64]).contains("200 OK") || got > 0);

    // stop reading; the plugin must stop producing soon (buffers fill up)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = produced.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = produced.load(Ordering::Relaxed);
    assert!(
        b - a <= 2 * CHUNK,
        "plugin kept producing while nobody read: {a} -> {b} bytes"
    );
    assert!(
        b < got + 64 * 1024 * 1024,
        "{b} bytes produced for {got} read: unbounded buffering"
    );

    // reading again resumes the flow: the plugin produces again once buffers drain
    let mut more = 0usize;
    while produced.load(Ordering::Relaxed) <= b {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended");
        more += n;
        assert!(more < 512 * 1024 * 1024, "the plugin never resumed");
    }
}
