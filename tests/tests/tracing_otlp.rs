//! OpenTelemetry end to end: the real binaries (host → API server → local
//! plugin) export their spans over OTLP/gRPC to a receiver inside the test (a
//! real tonic `TraceService` server), one trace per pod start, with the W3C
//! `traceparent` linking the three services; errors set the span status.
//! With nothing configured, no exporter runs and nothing connects.

use std::time::Duration;

use interlink_test_harness::cri::*;
use interlink_test_harness::otlp_receiver::{OtlpReceiver, ReceivedSpan};

const T: Duration = Duration::from_secs(30);
const ERROR: i32 = 2;

/// Names of the threads of process `pid`.
fn threads(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn exporter_threads(env: &CriEnv) -> Vec<(String, usize)> {
    [&env.host, &env.api, &env.plugin]
        .into_iter()
        .flatten()
        .map(|p| {
            let n = threads(p.pid())
                .iter()
                .filter(|t| t.starts_with("OpenTelemetry"))
                .count();
            (p.name.clone(), n)
        })
        .collect()
}

/// The chain of ancestors of `span` (itself first), within its trace.
fn ancestors<'a>(spans: &'a [ReceivedSpan], span: &'a ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let mut out = vec![span];
    let mut cur = span;
    while !cur.parent_span_id.is_empty() {
        match spans
            .iter()
            .find(|s| s.span_id == cur.parent_span_id && s.trace_id == cur.trace_id)
        {
            Some(p) => {
                out.push(p);
                cur = p;
            }
            None => break,
        }
    }
    out
}

fn is(s: &ReceivedSpan, service: &str, name: &str) -> bool {
    s.service == service && s.name == name
}

async fn run_one(env: &CriEnv, name: &str, c: cri::ContainerConfig) -> anyhow::Result<()> {
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod(name);
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, c).await?;
    start(&mut rt, &id).await?;
    wait_state(&mut rt, &id, EXITED, T).await?;
    stop_and_remove_pod(&mut rt, &pod).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_cri_call_to_the_plugin_and_errors_marked() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start("127.0.0.1:0").await?;
    let endpoint = receiver.endpoint();
    let env = CriEnv::start_with_env(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )?;
    for (name, n) in exporter_threads(&env) {
        assert_eq!(n, 1, "{name} runs one exporter");
    }
    run_one(&env, "traced", sh("app", "echo traced")).await?;

    // the plugin's create span, and its ancestors up to the CRI call
    let spans = receiver
        .wait_for("chain of spans", T, |spans| {
            spans.iter().any(|s| {
                is(s, "interlink-local", "POST /create")
                    && ancestors(spans, s)
                        .iter()
                        .any(|a| is(a, "interlink-cri", "StartContainer"))
            })
        })
        .await?;
    let plugin = spans
        .iter()
        .find(|s| is(s, "interlink-local", "POST /create"))
        .unwrap();
    let chain: Vec<String> = ancestors(&spans, plugin)
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    // plugin action ← API server's plugin call ← API server's request ← host's
    // client request ← the host's remote call ← its batch ← the CRI StartContainer call
    let want = [
        "interlink-local:POST /create",
        "interlink:plugin POST /create",
        "interlink:POST /create",
        "interlink-cri:POST /create",
        "interlink-cri:interlink",
        "interlink-cri:send batch",
        "interlink-cri:StartContainer",
    ];
    assert_eq!(chain, want, "{chain:?}");
    let trace = &plugin.trace_id;
    assert_eq!(trace.len(), 16);
    assert!(
        ancestors(&spans, plugin)
            .iter()
            .all(|s| &s.trace_id == trace)
    );
    assert!(
        ancestors(&spans, plugin)
            .iter()
            .all(|s| s.status_code != ERROR),
        "a pod that ran has no failed span"
    );
    // other CRI calls have their spans too
    assert!(
        spans
            .iter()
            .any(|s| is(s, "interlink-cri", "RunPodSandbox"))
    );
    assert!(
        spans
            .iter()
            .any(|s| is(s, "interlink-cri", "ContainerStatus"))
    );

    // a refused create: the plugin's, the server's and the host's spans fail
    let mut c = sh("nocmd", "true");
    c.command.clear();
    run_one(&env, "refused", c).await?;
    let spans = receiver
        .wait_for("failed create spans", T, |spans| {
            ["interlink-local", "interlink", "interlink-cri"]
                .iter()
                .all(|svc| {
                    spans
                        .iter()
                        .any(|s| is(s, svc, "POST /create") && s.status_code == ERROR)
                })
        })
        .await?;
    let failed = spans
        .iter()
        .find(|s| is(s, "interlink-cri", "POST /create") && s.status_code == ERROR)
        .unwrap();
    assert!(!failed.status_message.is_empty(), "{failed:?}");
    // the failed plugin span is in the same trace as the host's failed request
    let plugin_failed = spans
        .iter()
        .find(|s| is(s, "interlink-local", "POST /create") && s.status_code == ERROR)
        .unwrap();
    assert!(
        ancestors(&spans, plugin_failed)
            .iter()
            .any(|a| a.span_id == failed.span_id),
        "the failed create is one trace"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_configured_no_exporter_no_connection() -> anyhow::Result<()> {
    // the default OTLP port: where an exporter switched on by mistake would go
    let receiver = OtlpReceiver::start("127.0.0.1:4317").await?;
    let env = CriEnv::start("")?;
    for (name, n) in exporter_threads(&env) {
        assert_eq!(n, 0, "{name} runs no exporter");
    }
    run_one(&env, "untraced", sh("app", "echo untraced")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.connections(),
        0,
        "nothing connected to the collector port"
    );
    assert!(receiver.spans().is_empty());
    for f in ["host.log", "api.log", "plugin.log"] {
        let log = std::fs::read_to_string(env.path(f))?;
        assert!(!log.contains("exporting spans"), "{f}: {log}");
    }
    Ok(())
}
