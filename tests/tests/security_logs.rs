//! `/getLogs` names the pod twice: by `PodUID` and by `Namespace`/`PodName`. The
//! real `interlink-local` plugin answers only when both name the same pod (the
//! names it got at `/create`); otherwise a 404 with a JSON message, as for an
//! unknown UID, so knowing a UID does not reach its logs under another name.

use std::time::Duration;

use interlink::ContainerLogOpts;
use interlink_test_harness::plugin::{
    PodBuilder, ReapLocalPods, all_terminated, log_req, start_local,
};

#[test]
fn get_logs_checks_namespace_and_pod_name_against_the_uid() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = ReapLocalPods(dir.path().to_path_buf());
    let (_plugin, c) = start_local(dir.path()).unwrap();
    let p = PodBuilder::new("owner").container("main", &["sh", "-c", "echo private-output"]);
    c.create_ok(&p.data()).unwrap();
    c.wait_status(
        &p.pod,
        Duration::from_secs(20),
        "main to finish",
        all_terminated,
    )
    .unwrap();

    let good = log_req(&p.pod, "main", ContainerLogOpts::default());
    let r = c.logs(&good).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "private-output\n");

    let cases = [
        ("other-team", "owner", "another namespace"),
        ("default", "intruder", "another pod name"),
        ("", "", "no names"),
        ("default", "", "no pod name"),
    ];
    for (ns, name, case) in cases {
        let mut req = good.clone();
        req.namespace = ns.into();
        req.pod_name = name.into();
        let r = c.logs(&req).unwrap();
        assert_eq!(r.status, 404, "{case}: {}", r.text());
        let msg = r
            .error()
            .unwrap_or_else(|| panic!("{case}: no JSON error: {}", r.text()));
        assert!(msg.contains(p.uid()), "{case}: {msg}");
        assert!(
            !r.text().contains("private-output"),
            "{case}: the log leaked"
        );
    }
    // a follow request is checked the same way, before any stream starts
    let mut req = good.clone();
    req.pod_name = "intruder".into();
    req.opts.follow = true;
    let r = c.logs(&req).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    c.delete(&p.pod).unwrap().ok().unwrap();
}
