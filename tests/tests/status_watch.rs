//! The `statusWatch` extension end to end over real binaries (local plugin,
//! `interlink` API server, `interlink-cri` host): an exit reaches CRI state
//! without a polling round, a plugin without the extension is polled, the
//! watch survives a plugin and an API server restart, and a followed log
//! (woken by inotify and the container's end, not a timer) gets every line
//! and ends with the container.

use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink::client::Client;
use interlink::extensions::{Extensions, STATUS_WATCH};
use interlink_test_harness::Proc;
use interlink_test_harness::apiserver::{Listen, create_request, start_interlink};
use interlink_test_harness::bin;
use interlink_test_harness::cri::*;
use interlink_test_harness::plugin::{PodBuilder, ReapLocalPods, container_status, start_local};

/// Polling alone would take this long to see anything.
const SLOW_POLL: &str = "StatusInterval: 30s\n";
/// What the tests allow an exit to take through the watch: far below
/// [`SLOW_POLL`], so a pass cannot come from a polling round.
const VIA_WATCH: Duration = Duration::from_secs(10);

/// One pod with one `sh -c` container, started; answers the container id.
async fn run_sh(env: &CriEnv, rt: &mut Rt, name: &str, script: &str) -> String {
    let sb = env.pod(name);
    let pod = run_pod(rt, &sb).await.unwrap();
    let c = create(rt, &pod, &sb, sh("main", script)).await.unwrap();
    start(rt, &c).await.unwrap();
    c
}

fn api_extensions(env: &CriEnv) -> Extensions {
    let r = interlink_test_harness::plugin::PluginClient::unix(&env.api_socket)
        .request("GET", "/extensions", None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

/// With `StatusInterval: 30s`, a container's exit is EXITED in CRI within
/// seconds: the status came through the watch, not a polling round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_reaches_cri_without_a_polling_round() {
    let env = CriEnv::start(SLOW_POLL).unwrap();
    let _reap = ReapLocalPods(env.path("plugin"));
    assert!(api_extensions(&env).has(STATUS_WATCH));
    let (mut rt, _) = env.connect().await.unwrap();
    let t0 = Instant::now();
    let c = run_sh(&env, &mut rt, "watch-exit", "echo hello; exit 3").await;
    let s = wait_state(&mut rt, &c, EXITED, VIA_WATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", env.host_output()));
    assert_eq!(s.exit_code, 3);
    assert!(t0.elapsed() < VIA_WATCH);
    // a longer one: RUNNING, then EXITED, both pushed
    let c = run_sh(&env, &mut rt, "watch-run", "sleep 1; echo done").await;
    wait_state(&mut rt, &c, RUNNING, VIA_WATCH).await.unwrap();
    let s = wait_state(&mut rt, &c, EXITED, VIA_WATCH).await.unwrap();
    assert_eq!(s.exit_code, 0);
    assert!(
        env.host_output().contains("status watch open"),
        "{}",
        env.host_output()
    );
}

/// The watch ends when the plugin or the API server restarts; the host
/// reconnects and exits keep arriving without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_survives_plugin_and_api_server_restarts() {
    let mut env = CriEnv::start(SLOW_POLL).unwrap();
    let _reap = ReapLocalPods(env.path("plugin"));
    let (mut rt, _) = env.connect().await.unwrap();
    let c = run_sh(&env, &mut rt, "before", "echo one").await;
    wait_state(&mut rt, &c, EXITED, VIA_WATCH).await.unwrap();

    // a long-running container across the plugin's restart: its exit still arrives
    let long = run_sh(&env, &mut rt, "across", "sleep 4; exit 7").await;
    wait_state(&mut rt, &long, RUNNING, VIA_WATCH)
        .await
        .unwrap();
    env.plugin.take().unwrap().kill9();
    env.start_plugin().unwrap();
    let s = wait_state(&mut rt, &long, EXITED, VIA_WATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", env.host_output()));
    assert_eq!(s.exit_code, 7);
    let c = run_sh(&env, &mut rt, "after-plugin", "echo two").await;
    wait_state(&mut rt, &c, EXITED, VIA_WATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", env.host_output()));

    env.stop_api();
    env.start_api().unwrap();
    let c = run_sh(&env, &mut rt, "after-api", "echo three").await;
    wait_state(&mut rt, &c, EXITED, VIA_WATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", env.host_output()));
}

/// A plugin without the extension (as upstream's are): the API server does not
/// offer it, `/status/watch` answers 404, and the host keeps polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extension_the_host_polls() {
    let mut env = CriEnv::start("").unwrap();
    let _reap = ReapLocalPods(env.path("plugin"));
    // restart everything with a plugin that does not offer the watch
    env.host.take().unwrap().stop(Duration::from_secs(5));
    env.plugin.take().unwrap().stop(Duration::from_secs(5));
    env.stop_api();
    let cfg = env.path("local.yaml");
    std::fs::write(&cfg, "local:\n  status_watch: false\n").unwrap();
    let mut cmd = std::process::Command::new(bin("interlink-local"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--listen")
        .arg(format!("unix://{}", env.plugin_socket.display()))
        .arg("--data-root")
        .arg(env.path("plugin"));
    env.plugin = Some(Proc::spawn("interlink-local", cmd, &env.path("plugin2.log")).unwrap());
    interlink_test_harness::wait_for_unix_socket(&env.plugin_socket, Duration::from_secs(20))
        .unwrap();
    env.start_api().unwrap();
    env.start_host().unwrap();

    assert!(!api_extensions(&env).has(STATUS_WATCH));
    let r = interlink_test_harness::plugin::PluginClient::unix(&env.api_socket)
        .request("POST", "/status/watch", Some(b"[]"))
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());

    let (mut rt, _) = env.connect().await.unwrap();
    let c = run_sh(&env, &mut rt, "polled", "echo hello; exit 4").await;
    let s = wait_state(&mut rt, &c, EXITED, VIA_WATCH)
        .await
        .unwrap_or_else(|e| panic!("{e}\nhost log:\n{}", env.host_output()));
    assert_eq!(s.exit_code, 4);
}

/// Through the API server: a watch of every pod gets the current statuses,
/// then a new pod's start and end; a followed log gets every line, in
/// order, and ends when the container ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_watch_and_a_followed_log() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, plugin) = start_local(dir.path()).unwrap();
    let r = plugin.request("GET", "/extensions", None).unwrap();
    assert!(r.json::<Extensions>().unwrap().has(STATUS_WATCH));
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, "").unwrap();
    let client = Client::new(srv.client_config()).unwrap();
    assert!(client.extensions().await.unwrap().has(STATUS_WATCH));

    let mut watch = client.status_watch(&[]).await.unwrap();
    let script = "i=1; while [ $i -le 40 ]; do echo line $i; i=$((i+1)); sleep 0.02; done; exit 5";
    let b = PodBuilder::new("follow").container("talk", &["sh", "-c", script]);
    client.create(&create_request(&b)).await.unwrap();
    let mut req = interlink::LogStruct {
        namespace: interlink::pod_namespace(&b.pod).to_string(),
        pod_uid: b.uid().to_string(),
        pod_name: interlink::pod_name(&b.pod).to_string(),
        container_name: "talk".into(),
        opts: Default::default(),
    };
    req.opts.follow = true;
    let mut log = client.logs_follow(&req).await.unwrap();

    // the watch: this pod's status arrives as it changes, up to its end
    let end = Instant::now() + VIA_WATCH;
    let code = loop {
        let s = tokio::time::timeout_at(end.into(), watch.next())
            .await
            .expect("the watch delivered the exit in time")
            .expect("the watch stays open")
            .unwrap();
        if s.pod_uid != b.uid() {
            continue;
        }
        if let Some(t) = container_status(&s, "talk")
            .and_then(|c| c.state.as_ref())
            .and_then(|st| st.terminated.as_ref())
        {
            break t.exit_code;
        }
    };
    assert_eq!(code, 5);

    // the log: every line, then the end
    let mut text = Vec::new();
    let end = Instant::now() + VIA_WATCH;
    while let Some(chunk) = tokio::time::timeout_at(end.into(), log.next())
        .await
        .expect("the followed log ended after the container did")
    {
        text.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(text).unwrap();
    let want: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
    client.delete(&b.pod).await.unwrap();
}
