//! The local plugin through real HTTP: `interlink-local` started as a process,
//! real pods run as real processes.

use std::time::{Duration, Instant};

use interlink::ContainerLogOpts;
use interlink_test_harness::plugin::{
    PluginClient, PodBuilder, ReapLocalPods, all_terminated, exit_code, is_running, is_waiting,
    log_req, message, reason, start_local,
};
use interlink_test_harness::{Proc, bin, free_port, wait_for_tcp};

const T: Duration = Duration::from_secs(20);

fn logs(c: &PluginClient, p: &PodBuilder, container: &str, opts: ContainerLogOpts) -> String {
    let r = c.logs(&log_req(&p.pod, container, opts)).unwrap();
    assert_eq!(r.status, 200, "logs: {}", r.text());
    r.text()
}

fn pid_alive(pid: i32) -> bool {
    // a zombie is not alive; kill(pid, 0) would still succeed on one
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn single_container_runs_and_reports_exit_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("single").container(
        "main",
        &[
            "sh",
            "-c",
            "echo hello from $(HOSTNAME); echo to-stderr >&2",
        ],
    );
    let created = c.create_ok(&p.data()).unwrap();
    assert_eq!(created.pod_uid, p.uid());
    assert!(!created.pod_jid.is_empty());

    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(st.pod_uid, p.uid());
    assert_eq!(st.pod_name, "single");
    assert_eq!(st.pod_namespace, "default");
    assert_eq!(exit_code(&st, "main"), Some(0));
    assert_eq!(reason(&st, "main").as_deref(), Some("Completed"));
    let term = st.containers[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert!(term.started_at.is_some() && term.finished_at.is_some());
    assert!(term.started_at.as_ref().unwrap().0 <= term.finished_at.as_ref().unwrap().0);
    assert_eq!(st.containers[0].image, "busybox:stable");

    assert_eq!(
        logs(&c, &p, "main", Default::default()),
        "hello from single\nto-stderr\n"
    );
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn several_containers_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    // each waits for the other's file: they finish only if they run at the same time
    let script = |me: &str, other: &str| {
        format!(
            "touch /shared/{me}; n=0; while [ ! -e /shared/{other} ]; do n=$((n+1)); [ $n -gt 200 ] && exit 9; sleep 0.05; done; echo {me} saw {other}"
        )
    };
    let p = PodBuilder::new("pair")
        .container("a", &["sh", "-c", &script("a", "b")])
        .container("b", &["sh", "-c", &script("b", "a")])
        .empty_dir("shared", &["a", "b"], "/shared");
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "both containers to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "a"), Some(0), "{st:?}");
    assert_eq!(exit_code(&st, "b"), Some(0), "{st:?}");
    assert_eq!(logs(&c, &p, "a", Default::default()), "a saw b\n");
    assert_eq!(logs(&c, &p, "b", Default::default()), "b saw a\n");
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn init_containers_run_in_order_before_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("inits")
        .init_container("first", &["sh", "-c", "sleep 0.2; echo 1 >> /data/order"])
        .init_container("second", &["sh", "-c", "echo 2 >> /data/order"])
        .container("main", &["sh", "-c", "cat /data/order"])
        .empty_dir("data", &["first", "second", "main"], "/data");
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "first"), Some(0));
    assert_eq!(exit_code(&st, "second"), Some(0));
    assert_eq!(exit_code(&st, "main"), Some(0));
    assert_eq!(st.init_containers.len(), 2);
    assert_eq!(logs(&c, &p, "main", Default::default()), "1\n2\n");
    c.delete(&p.pod).unwrap().ok().unwrap();

    // a failing init container stops the pod there
    let p = PodBuilder::new("init-fails")
        .init_container("broken", &["sh", "-c", "echo failing; exit 3"])
        .init_container("never", &["sh", "-c", "echo must-not-run"])
        .container("main", &["sh", "-c", "echo must-not-run"]);
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "the init container to fail", |s| {
            exit_code(s, "broken").is_some()
        })
        .unwrap();
    assert_eq!(exit_code(&st, "broken"), Some(3));
    assert_eq!(reason(&st, "broken").as_deref(), Some("Error"));
    // the rest stays waiting, saying why
    let st = c
        .wait_status(&p.pod, T, "the pod to be blocked", |s| {
            message(s, "main").is_some_and(|m| m.contains("broken"))
        })
        .unwrap();
    assert!(
        is_waiting(&st, "never") && is_waiting(&st, "main"),
        "{st:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let st = c.status_of(&p.pod).unwrap();
    assert!(is_waiting(&st, "main"), "{st:?}");
    assert_eq!(logs(&c, &p, "main", Default::default()), "");
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn non_zero_exit_and_unstartable_commands() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("fails").container("main", &["sh", "-c", "echo bye; exit 7"]);
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(7));
    assert_eq!(reason(&st, "main").as_deref(), Some("Error"));
    c.delete(&p.pod).unwrap().ok().unwrap();

    // a command that does not exist on this host: refused with a reason, and
    // the pod's status says why
    let p =
        PodBuilder::new("no-such-cmd").container("main", &["definitely-not-a-command-xyz", "arg"]);
    let r = c.create(&p.data()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    let err = r.error().expect("JSON error body");
    assert!(err.contains("definitely-not-a-command-xyz"), "{err}");
    let st = c.status_of(&p.pod).unwrap();
    assert_eq!(reason(&st, "main").as_deref(), Some("CreateContainerError"));
    assert!(
        message(&st, "main")
            .unwrap()
            .contains("definitely-not-a-command-xyz")
    );
    c.delete(&p.pod).unwrap().ok().unwrap();

    // a ConfigMap that was not sent
    let mut p = PodBuilder::new("missing-cm")
        .container("main", &["true"])
        .config_map("cfg", "cm", &[], "main", "/cfg");
    p.config_maps.clear();
    let r = c.create(&p.data()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.error().unwrap().contains("configMap \"cm\""),
        "{}",
        r.text()
    );
    let st = c.status_of(&p.pod).unwrap();
    assert_eq!(
        reason(&st, "main").as_deref(),
        Some("CreateContainerConfigError")
    );
    // sent again with its ConfigMap, the same pod runs
    let mut p = p.config_map("cfg2", "cm", &[("k", "v")], "main", "/cfg2");
    assert_eq!(p.config_maps.len(), 1);
    p.pod.spec.as_mut().unwrap().containers[0].command = Some(vec!["cat".into(), "/cfg/k".into()]);
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(0));
    assert_eq!(logs(&c, &p, "main", Default::default()), "v");
    c.delete(&p.pod).unwrap().ok().unwrap();

    // no command at all: there is no image entrypoint to fall back to
    let p = PodBuilder::new("no-cmd").container("main", &[]);
    let r = c.create(&p.data()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.error().unwrap().contains("does not run images"),
        "{}",
        r.text()
    );
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn config_maps_secrets_and_env_reach_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("files")
        .container(
            "main",
            &[
                "sh",
                "-c",
                "cat /etc/app/greeting; echo; cat /var/secret/token; echo; echo $GREETING; ls $DIR",
            ],
        )
        .config_map(
            "cfg",
            "app-config",
            &[("greeting", "hello-config")],
            "main",
            "/etc/app",
        )
        .secret(
            "sec",
            "app-secret",
            &[("token", "s3cr3t")],
            "main",
            "/var/secret",
        )
        .env("main", "WHO", "world")
        .env("main", "GREETING", "hi-$(WHO)")
        .env("main", "DIR", "/etc/app");
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(
        exit_code(&st, "main"),
        Some(0),
        "{}",
        logs(&c, &p, "main", Default::default())
    );
    assert_eq!(
        logs(&c, &p, "main", Default::default()),
        "hello-config\ns3cr3t\nhi-world\ngreeting\n"
    );
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn delete_stops_a_running_pod_term_then_kill() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let pids = dir.path().join("pids");
    std::fs::create_dir(&pids).unwrap();
    // `$$$$` is `$$` after Kubernetes' $(VAR) expansion
    let polite = format!("echo $$$$ > {}/polite; exec sleep 60", pids.display());
    let stubborn = format!(
        "trap '' TERM; echo $$$$ > {}/stubborn; while true; do sleep 0.1; done",
        pids.display()
    );
    let p = PodBuilder::new("long")
        .container("polite", &["sh", "-c", &polite])
        .container("stubborn", &["sh", "-c", &stubborn])
        .grace(1);
    c.create_ok(&p.data()).unwrap();
    c.wait_status(&p.pod, T, "both running", |s| {
        is_running(s, "polite") && is_running(s, "stubborn")
    })
    .unwrap();
    let read_pid = |n: &str| -> i32 {
        let f = pids.join(n);
        interlink_test_harness::wait_until(T, "pid file", || {
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 0)
        })
        .unwrap();
        std::fs::read_to_string(&f).unwrap().trim().parse().unwrap()
    };
    let (polite_pid, stubborn_pid) = (read_pid("polite"), read_pid("stubborn"));
    assert!(pid_alive(polite_pid) && pid_alive(stubborn_pid));

    // a log being followed ends when the pod is deleted
    let mut follow = c
        .logs_stream(&log_req(
            &p.pod,
            "polite",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(follow.status, 200);

    let t0 = Instant::now();
    c.delete(&p.pod).unwrap().ok().unwrap();
    let took = t0.elapsed();
    follow.read_to_end(Duration::from_secs(5)).unwrap();
    // the stubborn one ignores TERM: KILL after the 1 s grace period
    assert!(took >= Duration::from_millis(900), "delete took {took:?}");
    assert!(took < Duration::from_secs(10), "delete took {took:?}");
    interlink_test_harness::wait_until(Duration::from_secs(5), "processes gone", || {
        !pid_alive(polite_pid) && !pid_alive(stubborn_pid)
    })
    .unwrap();
    // forgotten: answered as unknown, its directory is gone
    let st = c.status_of(&p.pod).unwrap();
    assert_eq!(reason(&st, "polite").as_deref(), Some("NotFound"));
    assert!(!dir.path().join("data/pods").join(p.uid()).exists());
    // deleting again is fine
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn logs_bounded_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "echo line1; echo line2; echo err-line >&2; while [ ! -e {} ]; do sleep 0.05; done; echo line3; sleep 0.3; echo line4",
        go.display()
    );
    let p = PodBuilder::new("logger").container("main", &["sh", "-c", &script]);
    c.create_ok(&p.data()).unwrap();

    let mut follow = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(follow.status, 200);
    assert!(
        follow
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    follow.wait_for("err-line\n", T).unwrap();
    assert!(
        !follow.done,
        "a followed log stays open while the container runs"
    );
    assert_eq!(follow.text(), "line1\nline2\nerr-line\n");

    // bounded reads while it runs
    assert_eq!(
        logs(
            &c,
            &p,
            "main",
            ContainerLogOpts {
                tail: 1,
                ..Default::default()
            }
        ),
        "err-line\n"
    );
    assert_eq!(
        logs(
            &c,
            &p,
            "main",
            ContainerLogOpts {
                limit_bytes: 8,
                ..Default::default()
            }
        ),
        "line1\nli"
    );
    let stamped = logs(
        &c,
        &p,
        "main",
        ContainerLogOpts {
            timestamps: true,
            tail: 2,
            ..Default::default()
        },
    );
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    let (ts, text) = lines[0].split_once(' ').unwrap();
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    assert_eq!(text, "line2");
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    assert_eq!(
        logs(
            &c,
            &p,
            "main",
            ContainerLogOpts {
                since_time: Some(future),
                ..Default::default()
            }
        ),
        ""
    );
    assert_eq!(
        logs(
            &c,
            &p,
            "main",
            ContainerLogOpts {
                since_seconds: 3600,
                ..Default::default()
            }
        ),
        "line1\nline2\nerr-line\n"
    );

    std::fs::write(&go, "").unwrap();
    follow.wait_for("line3\n", T).unwrap();
    // the stream ends by itself when the container does
    follow.read_to_end(T).unwrap();
    assert_eq!(follow.text(), "line1\nline2\nerr-line\nline3\nline4\n");

    // following a finished container returns what there is and ends
    let mut again = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                tail: 2,
                ..Default::default()
            },
        ))
        .unwrap();
    again.read_to_end(T).unwrap();
    assert_eq!(again.text(), "line3\nline4\n");

    // unknown container / pod
    let r = c
        .logs(&log_req(&p.pod, "nope", Default::default()))
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.error().unwrap().contains("nope"));
    let other = PodBuilder::new("other").container("main", &["true"]);
    let r = c
        .logs(&log_req(&other.pod, "main", Default::default()))
        .unwrap();
    assert_eq!(r.status, 404);
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn restart_of_the_plugin_while_pods_run() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (mut plugin, c) = start_local(dir.path()).unwrap();
    let go = dir.path().join("go");
    let waits = format!(
        "echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after; exit 4",
        go.display()
    );
    let p = PodBuilder::new("survivor").container("main", &["sh", "-c", &waits]);
    let doomed =
        PodBuilder::new("doomed").container("main", &["sh", "-c", "echo x; exec sleep 60"]);
    let done = PodBuilder::new("done").container("main", &["sh", "-c", "exit 2"]);
    for x in [&p, &doomed, &done] {
        c.create_ok(&x.data()).unwrap();
    }
    c.wait_status(&p.pod, T, "survivor running", |s| is_running(s, "main"))
        .unwrap();
    c.wait_status(&doomed.pod, T, "doomed running", |s| is_running(s, "main"))
        .unwrap();
    c.wait_status(&done.pod, T, "done finished", all_terminated)
        .unwrap();
    follow_until(&c, &p, "before\n");

    // the plugin dies hard; while it is down, one pod's processes are killed
    plugin.kill9();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("data/pods")
                .join(doomed.uid())
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pid = state["containers"][0]["state"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    interlink_test_harness::wait_until(T, "doomed gone", || !pid_alive(pid)).unwrap();
    drop(plugin);

    let (_plugin, c) = start_local(dir.path()).unwrap();
    // it still knows every pod
    let st = c.status_of(&p.pod).unwrap();
    assert!(
        is_running(&st, "main"),
        "a live process is recognised after a restart: {st:?}"
    );
    let st = c.status_of(&done.pod).unwrap();
    assert_eq!(exit_code(&st, "main"), Some(2));
    // and says honestly which process it lost
    let st = c.status_of(&doomed.pod).unwrap();
    assert_eq!(reason(&st, "main").as_deref(), Some("Lost"), "{st:?}");
    assert_eq!(exit_code(&st, "main"), Some(255));

    // the survivor goes on; its end and output are still seen
    std::fs::write(&go, "").unwrap();
    let st = c
        .wait_status(&p.pod, T, "survivor to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(4), "{st:?}");
    assert_eq!(logs(&c, &p, "main", Default::default()), "before\nafter\n");
    for x in [&p, &doomed, &done] {
        c.delete(&x.pod).unwrap().ok().unwrap();
    }
}

fn follow_until(c: &PluginClient, p: &PodBuilder, text: &str) {
    let mut s = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    s.wait_for(text, T).unwrap();
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (mut plugin, c) = start_local(dir.path()).unwrap();

    let r = c.request("POST", "/create", Some(b"{not json")).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.error().unwrap().contains("invalid RetrievedPodData"),
        "{}",
        r.text()
    );

    // a list of pods (older interLink) gets a list of answers
    let listed = PodBuilder::new("listed").container("main", &["true"]);
    let r = c.post_json("/create", &vec![listed.data()]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let answers: Vec<interlink::CreateStruct> = r.json().unwrap();
    assert_eq!(answers[0].pod_uid, listed.uid());
    c.delete(&listed.pod).unwrap().ok().unwrap();

    let r = c.request("POST", "/create", None).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("empty body"));

    let mut bad = PodBuilder::new("x").container("main", &["true"]);
    bad.pod.metadata.uid = Some("../../etc".into());
    let r = c.create(&bad.data()).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("uid"), "{}", r.text());

    let bad = PodBuilder::new("Not_A_Name").container("main", &["true"]);
    let r = c.create(&bad.data()).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("metadata.name"), "{}", r.text());

    let bad = PodBuilder::new("ok").container("Bad_Container", &["true"]);
    let r = c.create(&bad.data()).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("Bad_Container"), "{}", r.text());

    let r = c
        .request("GET", "/status", Some(b"{\"not\": \"a list\"}"))
        .unwrap();
    assert_eq!(r.status, 400);
    let r = c
        .request(
            "GET",
            "/status",
            Some(br#"[{"metadata": {"name": "no-uid"}}]"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("pods[0]"), "{}", r.text());

    let r = c
        .request(
            "GET",
            "/getLogs",
            Some(br#"{"PodUID": "u", "ContainerName": "BAD NAME"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().unwrap().contains("ContainerName"));

    let r = c.request("POST", "/delete", Some(b"[]")).unwrap();
    assert_eq!(r.status, 400);

    let r = c.request("GET", "/nowhere", None).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.error().unwrap().contains("/nowhere"));
    let r = c.request("PUT", "/create", Some(b"{}")).unwrap();
    assert_eq!(r.status, 405);
    assert!(r.error().is_some());

    // liveness: an empty list, or no body
    let r = c.request("GET", "/status", Some(b"[]")).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    let r = c.request("GET", "/status", None).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));

    // unknown pods are answered, next to known ones
    let known = PodBuilder::new("known").container("main", &["sleep", "30"]);
    c.create_ok(&known.data()).unwrap();
    let unknown = PodBuilder::new("unknown").container("main", &["true"]);
    let st = c.status(&[unknown.pod.clone(), known.pod.clone()]).unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].pod_uid, unknown.uid());
    assert_eq!(reason(&st[0], "main").as_deref(), Some("NotFound"));
    assert_eq!(st[1].pod_uid, known.uid());
    c.delete(&unknown.pod).unwrap().ok().unwrap();

    // the plugin is still fine after all that
    assert!(plugin.alive());
    let ping = c.ping().unwrap().ok().unwrap();
    let v: serde_json::Value = ping.json().unwrap();
    assert_eq!(v["status"], "ok");
    c.delete(&known.pod).unwrap().ok().unwrap();
}

#[test]
fn tcp_listener_metrics_config_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let port = free_port();
    let cfg = dir.path().join("local.yaml");
    std::fs::write(
        &cfg,
        format!("listen: 127.0.0.1:{port}\nmax_body_bytes: 4096\nlocal:\n  max_pods: 1\n"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin("interlink-local"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--data-root")
        .arg(dir.path().join("data"));
    let _plugin = Proc::spawn("interlink-local", cmd, &dir.path().join("plugin.log")).unwrap();
    wait_for_tcp(port, T).unwrap();
    let c = PluginClient::tcp(port);

    assert_eq!(c.request("GET", "/healthz", None).unwrap().text(), "ok");
    let big = vec![b' '; 10_000];
    let r = c.request("POST", "/create", Some(&big)).unwrap();
    assert_eq!(r.status, 413);
    assert!(r.error().unwrap().contains("too large"));

    let a = PodBuilder::new("a").container("main", &["true"]);
    c.create_ok(&a.data()).unwrap();
    let b = PodBuilder::new("b").container("main", &["true"]);
    let r = c.create(&b.data()).unwrap();
    assert_eq!(r.status, 422);
    assert!(r.error().unwrap().contains("at most 1"));

    let m = c.request("GET", "/metrics", None).unwrap().text();
    assert!(
        m.contains("interlink_plugin_requests_total{endpoint=\"/create\",code=\"200\"} 1"),
        "{m}"
    );
    assert!(m.contains("code=\"413\""), "{m}");
    c.delete(&a.pod).unwrap().ok().unwrap();

    // a typo in the config is refused, naming the key
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "local:\n  max_podz: 3\n").unwrap();
    let out = std::process::Command::new(bin("interlink-local"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_podz"), "{err}");
}

#[test]
fn stale_socket_is_replaced_and_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let sock = dir.path().join("plugin.sock");
    // a socket file nobody listens on
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    assert_eq!(c.request("GET", "/healthz", None).unwrap().status, 200);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );

    // a second plugin on the same live socket refuses to start
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = std::process::Command::new(bin("interlink-local"))
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(other.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already answers"));
    // and the first still answers
    assert_eq!(c.request("GET", "/healthz", None).unwrap().status, 200);
}

#[test]
fn example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let sock = dir.path().join("p.sock");
    let cfg = interlink_test_harness::repo_root().join("examples/plugins/local.yaml");
    let mut cmd = std::process::Command::new(bin("interlink-local"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.path().join("data"));
    let _p = Proc::spawn("interlink-local", cmd, &dir.path().join("plugin.log")).unwrap();
    interlink_test_harness::wait_for_unix_socket(&sock, T).unwrap();
    let c = PluginClient::unix(&sock);
    assert_eq!(c.request("GET", "/healthz", None).unwrap().status, 200);
}

#[test]
fn shutdown_ends_log_streams_and_leaves_pods_running() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (mut plugin, c) = start_local(dir.path()).unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.05; done; echo finished",
        go.display()
    );
    let p = PodBuilder::new("outlives").container("main", &["sh", "-c", &script]);
    c.create_ok(&p.data()).unwrap();
    let mut follow = c
        .logs_stream(&log_req(
            &p.pod,
            "main",
            ContainerLogOpts {
                follow: true,
                ..Default::default()
            },
        ))
        .unwrap();
    follow.wait_for("started\n", T).unwrap();

    // SIGTERM: the server stops promptly although a log is being followed
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    interlink_test_harness::wait_until(Duration::from_secs(8), "plugin exit", || !plugin.alive())
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8));
    let _ = follow.read_to_end(Duration::from_secs(2));
    drop(plugin);

    // the pod kept running; a new plugin picks it up and sees its end
    let (_plugin, c) = start_local(dir.path()).unwrap();
    assert!(is_running(&c.status_of(&p.pod).unwrap(), "main"));
    std::fs::write(&go, "").unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(0));
    assert_eq!(
        logs(&c, &p, "main", Default::default()),
        "started\nfinished\n"
    );
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn in_process_supervision_runs_pods_and_reports_lost_ends() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let cfg = dir.path().join("local.yaml");
    std::fs::write(&cfg, "local:\n  in_process: true\n").unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let (mut plugin, c) =
        interlink_test_harness::plugin::start_local_with(dir.path(), &args).unwrap();
    let quick = PodBuilder::new("quick").container("main", &["sh", "-c", "echo out; exit 3"]);
    c.create_ok(&quick.data()).unwrap();
    let st = c
        .wait_status(&quick.pod, T, "quick to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "main"), Some(3));
    assert_eq!(logs(&c, &quick, "main", Default::default()), "out\n");

    let go = dir.path().join("go");
    let script = format!(
        "echo before; while [ ! -e {} ]; do sleep 0.05; done; exit 4",
        go.display()
    );
    let p = PodBuilder::new("slow").container("main", &["sh", "-c", &script]);
    c.create_ok(&p.data()).unwrap();
    follow_until(&c, &p, "before\n");
    plugin.kill9();
    drop(plugin);
    let (_plugin, c) = interlink_test_harness::plugin::start_local_with(dir.path(), &args).unwrap();
    assert!(is_running(&c.status_of(&p.pod).unwrap(), "main"));
    std::fs::write(&go, "").unwrap();
    // nobody recorded how it ended: it says so instead of inventing an exit code
    let st = c
        .wait_status(&p.pod, T, "slow to end", all_terminated)
        .unwrap();
    assert_eq!(reason(&st, "main").as_deref(), Some("Lost"), "{st:?}");
    assert!(
        message(&st, "main")
            .unwrap()
            .contains("exit status is unknown")
    );
    for x in [&quick, &p] {
        c.delete(&x.pod).unwrap().ok().unwrap();
    }
}

#[test]
fn projected_and_downward_api_volumes() {
    use k8s_openapi::api::core::v1::{
        DownwardAPIVolumeFile, DownwardAPIVolumeSource, ObjectFieldSelector, Volume,
    };
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let field = |path: &str, f: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: f.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = Volume {
        name: "podinfo".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![
                field("name", "metadata.name"),
                field("ns", "metadata.namespace"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = PodBuilder::new("projected")
        .container(
            "main",
            &[
                "sh",
                "-c",
                &format!(
                    "cat {sa}/token {sa}/namespace; echo; cat /etc/podinfo/name /etc/podinfo/ns"
                ),
            ],
        )
        .projected(
            "kube-api-access-abcde",
            &[("token", "tok-123\n"), ("namespace", "default")],
            "main",
            sa,
        )
        .volume(info, "main", "/etc/podinfo");
    c.create_ok(&p.data()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(
        exit_code(&st, "main"),
        Some(0),
        "{}",
        logs(&c, &p, "main", Default::default())
    );
    assert_eq!(
        logs(&c, &p, "main", Default::default()),
        "tok-123\ndefault\nprojecteddefault"
    );
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn a_restarted_plugin_carries_on_with_init_containers() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (mut plugin, c) = start_local(dir.path()).unwrap();
    let go = dir.path().join("go");
    let wait_go = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo init-done > /data/init",
        go.display()
    );
    let p = PodBuilder::new("resumed")
        .init_container("gate", &["sh", "-c", &wait_go])
        .container("main", &["sh", "-c", "cat /data/init; pwd"])
        .with_container("main", |c| c.working_dir = Some("/data".into()))
        .empty_dir("data", &["gate", "main"], "/data");
    c.create_ok(&p.data()).unwrap();
    c.wait_status(&p.pod, T, "the init container running", |s| {
        is_running(s, "gate")
    })
    .unwrap();
    plugin.kill9();
    drop(plugin);
    // the init container ends while no plugin is there
    std::fs::write(&go, "").unwrap();
    let init_file = dir
        .path()
        .join("data/pods")
        .join(p.uid())
        .join("volumes/data/init");
    interlink_test_harness::wait_until(T, "init output", || init_file.exists()).unwrap();

    let (_plugin, c) = start_local(dir.path()).unwrap();
    let st = c
        .wait_status(&p.pod, T, "main to finish", all_terminated)
        .unwrap();
    assert_eq!(exit_code(&st, "gate"), Some(0), "{st:?}");
    assert_eq!(exit_code(&st, "main"), Some(0), "{st:?}");
    let out = logs(&c, &p, "main", Default::default());
    // the working directory inside a mount is the volume's directory
    let data_dir = init_file.parent().unwrap().canonicalize().unwrap();
    assert_eq!(out, format!("init-done\n{}\n", data_dir.display()));
    c.delete(&p.pod).unwrap().ok().unwrap();
}

#[test]
fn delete_with_an_enormous_grace_period_stops_the_pod() {
    // a grace period too large for a deadline must not crash the request
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("huge-grace")
        .container("main", &["sleep", "60"])
        .grace(i64::MAX);
    c.create_ok(&p.data()).unwrap();
    c.wait_status(&p.pod, T, "running", |s| is_running(s, "main"))
        .unwrap();
    let r = c.delete(&p.pod).unwrap();
    assert_eq!(r.status, 200, "delete: {}", r.text());
    let st = c.status_of(&p.pod).unwrap();
    assert_eq!(reason(&st, "main").as_deref(), Some("NotFound"));
    // the plugin is still there
    assert_eq!(c.ping().unwrap().status, 200);
}
