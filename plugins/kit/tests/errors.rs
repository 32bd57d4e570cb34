//! The kit's HTTP layer over a real Unix socket, with a provider whose every
//! call fails in a chosen way: each failure kind maps to its HTTP status with a
//! JSON `{"error": ...}` body, and nothing reaches the provider unvalidated.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use interlink::{CreateStruct, LogStruct, PingResponse, PodRef, PodStatus, RetrievedPodData};
use interlink_plugin_kit::{Listen, LogStream, PluginError, Provider, serve};
use k8s_openapi::api::core::v1::Pod;

/// Fails with the kind named by the pod's name (or the log's container name).
struct Failing {
    calls: AtomicUsize,
}

fn kind(name: &str) -> PluginError {
    match name {
        "bad" => PluginError::BadRequest("bad thing".into()),
        "missing" => PluginError::NotFound("no such pod".into()),
        "refused" => PluginError::Rejected("unknown image".into()),
        "down" => PluginError::Unavailable("slurmctld is not answering".into()),
        _ => PluginError::Internal("boom".into()),
    }
}

impl Provider for Failing {
    async fn create(&self, d: RetrievedPodData) -> Result<CreateStruct, PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(kind(interlink::pod_name(&d.pod)))
    }
    async fn delete(&self, p: Pod) -> Result<(), PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(kind(interlink::pod_name(&p)))
    }
    async fn status(&self, pods: &[PodRef]) -> Result<Vec<PodStatus>, PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match pods.first() {
            None => Ok(Vec::new()),
            Some(p) => Err(kind(&p.name)),
        }
    }
    async fn logs(&self, r: LogStruct) -> Result<LogStream, PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(kind(&r.container_name))
    }
    async fn ping(&self) -> Result<PingResponse, PluginError> {
        Err(PluginError::Unavailable("backend down".into()))
    }
}

fn http(sock: &Path, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (
        code,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn pod(name: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","namespace":"default","uid":"u-1"}},"spec":{{"containers":[{{"name":"c","image":"i"}}]}}}}"#
    )
}

#[test]
fn failures_map_to_statuses_with_json_messages() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kit.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let provider = Arc::new(Failing {
        calls: AtomicUsize::new(0),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(provider.clone(), Listen::Unix(sock.clone()), async {
        let _ = rx.await;
    }));
    for _ in 0..500 {
        if UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    for (name, code, msg) in [
        ("bad", 400, "bad thing"),
        ("missing", 404, "no such pod"),
        ("refused", 422, "unknown image"),
        ("down", 503, "slurmctld is not answering"),
        ("other", 500, "boom"),
    ] {
        let (c, v) = http(
            &sock,
            "POST",
            "/create",
            &format!(r#"{{"pod":{}}}"#, pod(name)),
        );
        assert_eq!(
            (c, v["error"].as_str().unwrap()),
            (code, msg),
            "create {name}"
        );
        let (c, v) = http(&sock, "DELETE", "/delete", &pod(name));
        assert_eq!(
            (c, v["error"].as_str().unwrap()),
            (code, msg),
            "delete {name}"
        );
        let (c, v) = http(&sock, "GET", "/status", &format!("[{}]", pod(name)));
        assert_eq!(
            (c, v["error"].as_str().unwrap()),
            (code, msg),
            "status {name}"
        );
        let (c, v) = http(
            &sock,
            "POST",
            "/getLogs",
            &format!(r#"{{"PodUID":"u-1","ContainerName":"{name}"}}"#),
        );
        assert_eq!(
            (c, v["error"].as_str().unwrap()),
            (code, msg),
            "logs {name}"
        );
    }
    let (c, v) = http(&sock, "POST", "/pinglink", "");
    assert_eq!((c, v["error"].as_str().unwrap()), (503, "backend down"));

    // invalid input never reaches the provider
    let before = provider.calls.load(Ordering::SeqCst);
    let (c, v) = http(
        &sock,
        "POST",
        "/create",
        r#"{"pod":{"metadata":{"name":"x"}}}"#,
    );
    assert_eq!(c, 400);
    assert!(v["error"].as_str().unwrap().contains("uid"));
    let (c, _) = http(&sock, "POST", "/create", "[1,2]");
    assert_eq!(c, 400);
    let (c, _) = http(
        &sock,
        "GET",
        "/getLogs",
        r#"{"PodUID":"a/b","ContainerName":"c"}"#,
    );
    assert_eq!(c, 400);
    assert_eq!(provider.calls.load(Ordering::SeqCst), before);

    // the liveness check reaches the provider and answers []
    let (c, v) = http(&sock, "GET", "/status", "[]");
    assert_eq!((c, v), (200, serde_json::json!([])));

    let _ = tx.send(());
    rt.block_on(server).unwrap().unwrap();
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}
