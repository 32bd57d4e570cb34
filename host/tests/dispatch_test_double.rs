//! The sender and the status path against a **test double** of the interLink
//! API server ([`ScriptedRemote`]): the end-to-end tests run a real server and
//! plugin; these make it fail on cue (an unanswered `/create`, a refused one,
//! a `/delete` that does not go through) and check what kubelet then sees.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use interlink::{CreateStruct, LogStruct, PodCreateRequests, PodStatus};
use interlink_cri::config::Config;
use interlink_cri::cri;
use interlink_cri::hooks::{Hooks, StateDecision, StateInput};
use interlink_cri::proto::runtime::v1 as pb;
use interlink_cri::remote::{PodList, Remote, RemoteError, RemoteResult};
use interlink_cri::runtime::Runtime;
use interlink_cri::states::{ContainerState, Phase};
use interlink_cri::store::Store;
use k8s_openapi::api::core::v1 as k8s;

/// Test double of the interLink API server: records calls, fails on cue.
#[derive(Default)]
struct ScriptedRemote {
    creates: Mutex<Vec<PodCreateRequests>>,
    /// answer this many `/create`s with "unreachable" (after recording them)
    create_unreachable: AtomicUsize,
    refuse_create: Mutex<Option<String>>,
    /// `/status` shows created pods as existing (running)
    status_knows: AtomicBool,
    status_calls: AtomicUsize,
    deletes: Mutex<Vec<k8s::Pod>>,
    delete_unreachable: AtomicUsize,
}

fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl Remote for ScriptedRemote {
    fn create(&self, req: PodCreateRequests) -> BoxFuture<'_, RemoteResult<CreateStruct>> {
        Box::pin(async move {
            let uid = req.pod.metadata.uid.clone().unwrap_or_default();
            self.creates.lock().unwrap().push(req);
            if take_one(&self.create_unreachable) {
                return Err(RemoteError::Unreachable("connection reset".into()));
            }
            if let Some(m) = self.refuse_create.lock().unwrap().clone() {
                return Err(RemoteError::Refused(m));
            }
            Ok(CreateStruct {
                pod_uid: uid,
                pod_jid: "job-1".into(),
            })
        })
    }
    fn delete(&self, pod: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async move {
            self.deletes.lock().unwrap().push(pod);
            if take_one(&self.delete_unreachable) {
                return Err(RemoteError::Unreachable("connection refused".into()));
            }
            Ok(())
        })
    }
    fn status(&self, pods: Arc<PodList>) -> BoxFuture<'_, RemoteResult<interlink::StatusAnswer>> {
        Box::pin(async move {
            self.status_calls.fetch_add(1, Ordering::SeqCst);
            if !self.status_knows.load(Ordering::SeqCst) {
                return Ok(interlink::StatusAnswer::default());
            }
            let statuses: Vec<PodStatus> = pods
                .iter()
                .map(|p| PodStatus {
                    pod_uid: p.metadata.uid.clone().unwrap_or_default(),
                    pod_name: p.metadata.name.clone().unwrap_or_default(),
                    pod_namespace: p.metadata.namespace.clone().unwrap_or_default(),
                    job_id: "job-1".into(),
                    containers: p
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .map(|c| k8s::ContainerStatus {
                            name: c.name.clone(),
                            state: Some(k8s::ContainerState {
                                running: Some(Default::default()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect();
            Ok(interlink::StatusAnswer::from_statuses(&statuses))
        })
    }
    fn logs(&self, _: LogStruct, _: usize) -> BoxFuture<'_, RemoteResult<Bytes>> {
        Box::pin(async { Ok(Bytes::new()) })
    }
    fn logs_follow(
        &self,
        _: LogStruct,
    ) -> BoxFuture<'_, RemoteResult<BoxStream<'static, RemoteResult<Bytes>>>> {
        Box::pin(async { Ok(Box::pin(futures::stream::empty()) as BoxStream<'static, _>) })
    }
    fn ping(&self) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn update_cache(&self, _: k8s::Pod) -> BoxFuture<'_, RemoteResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Hooks test double: admission (when `deny_multi`) denies pods of two or
/// more containers and counts its calls; the state step can check that no
/// store lock is held.
#[derive(Default)]
struct PolicyHooks {
    deny_multi: AtomicBool,
    admit_calls: AtomicUsize,
    rt: OnceLock<Arc<Runtime>>,
    state_step_saw_free_store: AtomicBool,
}

impl Hooks for PolicyHooks {
    fn admit(&self, pod: &k8s::Pod) -> Result<(), String> {
        self.admit_calls.fetch_add(1, Ordering::SeqCst);
        let n = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
        if n >= 2 && self.deny_multi.load(Ordering::SeqCst) {
            return Err(format!("{n} containers in one pod are not allowed here"));
        }
        Ok(())
    }

    fn map_state(&self, input: &StateInput) -> StateDecision {
        if let Some(rt) = self.rt.get() {
            // another thread writes the store while the hook runs: this
            // finishes only if the status path holds no store lock now
            let rt = rt.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                rt.store.update(|_, _| ());
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(20)).is_ok() {
                self.state_step_saw_free_store.store(true, Ordering::SeqCst);
            }
        }
        input.default.clone()
    }
}

struct Fixture {
    rt: Arc<Runtime>,
    remote: Arc<ScriptedRemote>,
    hooks: Arc<PolicyHooks>,
    _dir: tempfile::TempDir,
}

fn fixture(remote: ScriptedRemote) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_root_folder: dir.path().to_path_buf(),
        batch_window: Duration::from_millis(50),
        status_interval: Duration::from_millis(50),
        create_retry_for: Duration::from_secs(30),
        ..Default::default()
    };
    let remote = Arc::new(remote);
    let hooks = Arc::new(PolicyHooks::default());
    let rt = Runtime::new(cfg, Store::in_memory(), hooks.clone(), remote.clone());
    interlink_cri::background::start(&rt);
    Fixture {
        rt,
        remote,
        hooks,
        _dir: dir,
    }
}

fn sandbox(f: &Fixture) -> String {
    cri::run_pod_sandbox::run_pod_sandbox(
        &f.rt,
        pb::RunPodSandboxRequest {
            config: Some(pb::PodSandboxConfig {
                metadata: Some(pb::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        },
    )
    .unwrap()
    .pod_sandbox_id
}

fn container(f: &Fixture, sandbox: &str, name: &str) -> Result<String, tonic::Status> {
    cri::create_container::create_container(
        &f.rt,
        pb::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(pb::ContainerConfig {
                metadata: Some(pb::ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                image: Some(pb::ImageSpec {
                    image: "docker.io/library/busybox:1.36".into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "60".into()],
                ..Default::default()
            }),
            sandbox_config: None,
        },
    )
    .map(|r| r.container_id)
}

fn start(f: &Fixture, id: &str) {
    cri::start_container::start_container(
        &f.rt,
        pb::StartContainerRequest {
            container_id: id.into(),
        },
    )
    .unwrap();
}

fn status(f: &Fixture, id: &str) -> pb::ContainerStatus {
    cri::container_status::container_status(
        &f.rt,
        pb::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        },
    )
    .unwrap()
    .status
    .unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn phases(f: &Fixture) -> Vec<Phase> {
    f.rt.store
        .read()
        .remotes
        .values()
        .map(|r| r.phase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_together_go_in_one_create() {
    let f = fixture(ScriptedRemote::default());
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    let b = container(&f, &sb, "b2").unwrap();
    // one container per pod: admission judged each alone
    f.hooks.admit_calls.store(0, Ordering::SeqCst);
    start(&f, &a);
    start(&f, &b);
    assert_eq!(
        status(&f, &a).state,
        pb::ContainerState::ContainerRunning as i32
    );
    until("the batch is sent", || phases(&f) == vec![Phase::Created]).await;
    let creates = f.remote.creates.lock().unwrap();
    assert_eq!(creates.len(), 1);
    let names: Vec<_> = creates[0]
        .pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    assert_eq!(names, ["a", "b2"]);
    // the batch differs from what was judged: judged once more
    assert_eq!(f.hooks.admit_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_admission_denies_at_send_time_exits_128() {
    let f = fixture(ScriptedRemote::default());
    f.hooks.deny_multi.store(true, Ordering::SeqCst);
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    let b = container(&f, &sb, "b").unwrap();
    start(&f, &a);
    start(&f, &b);
    until("the batch fails", || phases(&f) == vec![Phase::Failed]).await;
    for id in [&a, &b] {
        let s = status(&f, id);
        assert_eq!(s.state, pb::ContainerState::ContainerExited as i32);
        assert_eq!((s.exit_code, s.reason.as_str()), (128, "AdmissionDenied"));
        assert!(s.message.contains("2 containers"), "{}", s.message);
    }
    assert!(f.remote.creates.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_admitted_alone_is_not_judged_again() {
    let f = fixture(ScriptedRemote::default());
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    assert_eq!(f.hooks.admit_calls.load(Ordering::SeqCst), 1);
    start(&f, &a);
    until("the pod is created", || phases(&f) == vec![Phase::Created]).await;
    assert_eq!(f.remote.creates.lock().unwrap().len(), 1);
    assert_eq!(f.hooks.admit_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_create_is_looked_up_before_it_is_sent_again() {
    let f = fixture(ScriptedRemote {
        create_unreachable: AtomicUsize::new(1),
        status_knows: AtomicBool::new(true),
        ..Default::default()
    });
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    start(&f, &a);
    until("the pod is created", || phases(&f) == vec![Phase::Created]).await;
    // the first /create arrived though its answer was lost: never sent twice
    assert_eq!(f.remote.creates.lock().unwrap().len(), 1);
    assert!(f.remote.status_calls.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        f.rt.store.read().remotes.values().next().unwrap().job_id,
        "job-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_exits_the_container_with_the_reason() {
    let f = fixture(ScriptedRemote {
        refuse_create: Mutex::new(Some("quota exceeded".into())),
        ..Default::default()
    });
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    start(&f, &a);
    until("the container exits", || status(&f, &a).state == 2).await;
    let s = status(&f, &a);
    assert_eq!((s.exit_code, s.reason.as_str()), (128, "CreateFailed"));
    assert!(s.message.contains("quota exceeded"));
    assert_eq!(phases(&f), vec![Phase::Failed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_deletes_with_its_grace_and_retries_until_confirmed() {
    let f = fixture(ScriptedRemote {
        delete_unreachable: AtomicUsize::new(1),
        // the pod stays listed until a delete succeeds: its absence from
        // /status (which also confirms a deletion) cannot stand in for one
        status_knows: AtomicBool::new(true),
        ..Default::default()
    });
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    start(&f, &a);
    until("the pod is created", || phases(&f) == vec![Phase::Created]).await;
    cri::stop_container::stop_container(
        &f.rt,
        pb::StopContainerRequest {
            container_id: a.clone(),
            timeout: 7,
        },
    )
    .await
    .unwrap();
    // the first delete failed: shown stopped, deletion pending, record kept
    let s = status(&f, &a);
    assert_eq!(s.state, pb::ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 137);
    assert!(s.message.contains("deletion pending"), "{}", s.message);
    assert_eq!(phases(&f), vec![Phase::Deleting]);
    until("the delete is confirmed", || phases(&f).is_empty()).await;
    let deletes = f.remote.deletes.lock().unwrap();
    assert_eq!(deletes.len(), 2);
    assert_eq!(
        deletes[1]
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds),
        Some(7)
    );
    assert_eq!(
        f.rt.store.read().containers[&a].state,
        ContainerState::Exited
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_step_runs_with_no_store_lock_held() {
    let f = fixture(ScriptedRemote {
        status_knows: AtomicBool::new(true),
        ..Default::default()
    });
    let _ = f.hooks.rt.set(f.rt.clone());
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    start(&f, &a);
    until("the status step ran", || {
        f.hooks.state_step_saw_free_store.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(
        status(&f, &a).state,
        pb::ContainerState::ContainerRunning as i32
    );
}

/// The status of pod `uid` with container `a` running, or exited with `code`.
fn answer(f: &Fixture, code: Option<i32>) -> interlink::StatusAnswer {
    let r = f.rt.store.read().remotes.values().next().unwrap().clone();
    let started = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-12-01T10:00:00Z".parse().unwrap(),
    );
    let state = match code {
        None => k8s::ContainerState {
            running: Some(k8s::ContainerStateRunning {
                started_at: Some(started),
            }),
            ..Default::default()
        },
        Some(c) => k8s::ContainerState {
            terminated: Some(k8s::ContainerStateTerminated {
                exit_code: c,
                started_at: Some(started.clone()),
                finished_at: Some(started),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    interlink::StatusAnswer::from_statuses(&[PodStatus {
        pod_uid: r.uid,
        pod_name: r.name,
        pod_namespace: r.namespace,
        job_id: "job-1".into(),
        containers: vec![k8s::ContainerStatus {
            name: "a".into(),
            state: Some(state),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_status_seen_with_nothing_to_do_is_not_decoded_again() {
    use interlink_cri::status_loop::{Applied, Settled, apply_answer};
    // the background loop's polls answer nothing; the rounds here are driven by hand
    let f = fixture(ScriptedRemote::default());
    let sb = sandbox(&f);
    let a = container(&f, &sb, "a").unwrap();
    start(&f, &a);
    until("the pod is created", || phases(&f) == vec![Phase::Created]).await;
    let mut settled = Settled::default();
    let running = answer(&f, None);
    let round = |s: &mut Settled, ans: &interlink::StatusAnswer| apply_answer(&f.rt, ans, s);
    // decided once (nothing changes: it runs), found with nothing to do once,
    // then skipped undecoded while the bytes and the pod stay the same
    let rounds: Vec<Applied> = (0..4).map(|_| round(&mut settled, &running)).collect();
    let decoded: Vec<usize> = rounds.iter().map(|r| r.decoded).collect();
    assert_eq!(decoded, [1, 1, 0, 0]);
    assert!(rounds.iter().all(|r| r.changed == 0), "{rounds:?}");
    assert_eq!(
        status(&f, &a).state,
        pb::ContainerState::ContainerRunning as i32
    );
    // other bytes are decoded and decided at once
    let exited = answer(&f, Some(3));
    assert_eq!(
        round(&mut settled, &exited),
        Applied {
            decoded: 1,
            changed: 1
        }
    );
    let s = status(&f, &a);
    assert_eq!(s.state, pb::ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 3);
    // the old bytes again, for a pod that changed here (its container
    // exited): not skipped, and nothing goes back to running
    assert_eq!(round(&mut settled, &running).decoded, 1);
    assert_eq!(
        status(&f, &a).state,
        pb::ContainerState::ContainerExited as i32
    );
}
