//! What an unmodified kubelet and cri-tools' cri-client (in kubelet, crictl and
//! critest) assert of a CRI runtime, asserted here against the real
//! `interlink-cri` binary (with a real API server and local plugin), so that none
//! of it regresses: a non-empty image ID and a non-zero size, a pod IP, the image
//! ID kubelet sends back resolved to the user's reference, tags of one image
//! listed and removed together, the names kubelet and critest send, the log file
//! right after `StartContainer`, the default handler `""`, `ListMetricDescriptors`
//! `Unimplemented`, `RunAsGroup` without `RunAsUser` refused, the image
//! filesystem, `/healthz` over HTTP/1.1 on the CRI socket, and private state.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use interlink_test_harness::cri::*;
use tonic::Code;

const T: Duration = Duration::from_secs(30);

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(img: &mut Img, image: &str) -> anyhow::Result<String> {
    Ok(img
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            auth: None,
            sandbox_config: None,
        })
        .await?
        .into_inner()
        .image_ref)
}

async fn image_status(img: &mut Img, image: &str) -> anyhow::Result<Option<cri::Image>> {
    Ok(img
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await?
        .into_inner()
        .image)
}

async fn list_images(img: &mut Img) -> anyhow::Result<Vec<cri::Image>> {
    Ok(img
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn sandbox_ip(rt: &mut Rt, id: &str) -> anyhow::Result<String> {
    Ok(rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default())
}

/// cri-client: "Id or size of image X is not set" for an empty ID or size 0.
/// critest: one image per digest with all its tags, removed by any one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_have_an_id_and_a_size_and_tags_of_one_digest_go_together() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (_, mut img) = env.connect().await?;

    let id = pull(&mut img, "busybox").await?;
    assert!(id.starts_with("sha256:") && id.len() > 10, "{id}");
    let st = image_status(&mut img, "busybox").await?.expect("pulled");
    assert_eq!(st.id, id);
    assert!(st.size > 0, "cri-client refuses size 0: {st:?}");
    assert_eq!(st.repo_tags, ["docker.io/library/busybox:latest"]);
    // the same answer by ID, by ID prefix and by full reference
    assert_eq!(image_status(&mut img, &id).await?.as_ref(), Some(&st));
    assert_eq!(image_status(&mut img, &id[..19]).await?.as_ref(), Some(&st));
    assert_eq!(
        image_status(&mut img, "docker.io/library/busybox:latest")
            .await?
            .as_ref(),
        Some(&st)
    );
    assert!(list_images(&mut img).await?.iter().all(|i| i.size > 0));

    // three tags pinned to one digest: one image, listed with all three
    let digest = format!("sha256:{}", "ab12".repeat(16));
    let tags: Vec<String> = (1..=3)
        .map(|n| format!("registry.example.org/team/tool:{n}"))
        .collect();
    let mut ids = vec![];
    for t in &tags {
        ids.push(pull(&mut img, &format!("{t}@{digest}")).await?);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one digest, one image ID: {ids:?}");
    let listed: Vec<cri::Image> = list_images(&mut img)
        .await?
        .into_iter()
        .filter(|i| i.id == ids[0])
        .collect();
    assert_eq!(listed.len(), 1);
    let mut got = listed[0].repo_tags.clone();
    got.sort();
    assert_eq!(got, tags);
    assert_eq!(
        listed[0].repo_digests,
        [format!("registry.example.org/team/tool@{digest}")]
    );
    // the same image under another registry joins it too
    let other = format!("mirror.example.net/team/tool:1@{digest}");
    assert_eq!(pull(&mut img, &other).await?, ids[0]);
    // each tag alone finds it; removing it by one tag removes every tag
    assert_eq!(
        image_status(&mut img, &tags[1]).await?.map(|i| i.id),
        Some(ids[0].clone())
    );
    img.remove_image(cri::RemoveImageRequest {
        image: spec(&tags[0]),
    })
    .await?;
    for t in tags.iter().chain([&other, &ids[0]]) {
        assert!(image_status(&mut img, t).await?.is_none(), "{t} remains");
    }
    // tags without a digest are distinct images
    let a = pull(&mut img, "registry.example.org/team/one:latest").await?;
    let b = pull(&mut img, "registry.example.org/team/two:latest").await?;
    assert_ne!(a, b);
    Ok(())
}

/// kubelet creates containers with `image.image` = the ID `PullImage` answered
/// and the user's reference in `user_specified_image`; `ContainerStatus.image_ref`
/// must be that ID, and the ID must never become an image name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_named_by_image_id_runs_the_users_reference() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, mut img) = env.connect().await?;
    let id = pull(&mut img, "busybox:1.36").await?;
    let sb = env.pod("by-id");
    let pod = run_pod(&mut rt, &sb).await?;
    let mut c = sh("main", "echo ran by id");
    c.image = Some(cri::ImageSpec {
        image: id.clone(),
        user_specified_image: "busybox:1.36".into(),
        ..Default::default()
    });
    let cid = create(&mut rt, &pod, &sb, c).await?;
    start(&mut rt, &cid).await?;
    let s = wait_state(&mut rt, &cid, EXITED, T).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert_eq!(s.image_ref, id);
    assert_eq!(s.image_id, id);
    assert_eq!(
        s.image.as_ref().map(|i| i.image.as_str()),
        Some("docker.io/library/busybox:1.36")
    );
    wait_file(&log_file(&sb, "main"), "ran by id", T).await?;
    let listed = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    assert_eq!(listed[0].image_ref, id);
    // no bogus image appeared from the ID
    let images = list_images(&mut img).await?;
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(
        images
            .iter()
            .flat_map(|i| &i.repo_tags)
            .all(|t| !t.contains("sha256")),
        "{images:?}"
    );
    // an ID nobody pulled, without a reference, is refused with a message
    let mut c = sh("other", "true");
    c.image = spec(&format!("sha256:{}", "0".repeat(64)));
    let err = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(sb.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("pull"), "{err:?}");
    Ok(())
}

/// critest and kubelet send uppercase names, long UUID suffixes and valid
/// Kubernetes pod names longer than 63 characters; containerd takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_names_kubelet_and_critest_send_run() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let long = format!("job-{}", "x".repeat(64)); // 68 characters, valid in Kubernetes
    assert_eq!(long.len(), 68);
    for (i, name) in [
        "create-PodSandbox-for-container-0c1f6a62-3e0a-4a0c-9d63-0b2f3c4d5e6f".to_string(),
        long,
    ]
    .into_iter()
    .enumerate()
    {
        // its own log directory
        let mut sb = env.pod(&format!("names-{i}"));
        sb.metadata.as_mut().unwrap().name = name.clone();
        sb.metadata.as_mut().unwrap().namespace = "cri-test-Namespace".into();
        sb.metadata.as_mut().unwrap().uid = uuid_like(&name);
        let pod = run_pod(&mut rt, &sb).await?;
        // two containers whose names differ only in case: distinct remote names
        let upper = create(
            &mut rt,
            &pod,
            &sb,
            sh("Benchmark-container-A", "echo upper"),
        )
        .await?;
        let lower = create(
            &mut rt,
            &pod,
            &sb,
            sh("benchmark-container-a", "echo lower"),
        )
        .await?;
        start(&mut rt, &upper).await?;
        start(&mut rt, &lower).await?;
        for (id, c, text) in [
            (&upper, "Benchmark-container-A", "upper"),
            (&lower, "benchmark-container-a", "lower"),
        ] {
            let s = wait_state(&mut rt, id, EXITED, T).await?;
            assert_eq!(s.exit_code, 0, "{name}: {s:?}");
            // CRI answers with the names as sent
            assert_eq!(s.metadata.as_ref().unwrap().name, c);
            let log = wait_file(&log_file(&sb, c), text, T).await?;
            assert_eq!(log_lines(&log)?, [text], "{name}/{c}");
        }
        let st = rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.metadata.unwrap().name, name);
    }
    Ok(())
}

/// kubelet stops and re-creates a non-host-network sandbox without an IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_network_sandbox_has_an_ip_from_the_pod_cidr() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let a = run_pod(&mut rt, &env.pod("ip-a")).await?;
    let b = run_pod(&mut rt, &env.pod("ip-b")).await?;
    let ip_a: Ipv4Addr = sandbox_ip(&mut rt, &a).await?.parse()?;
    let ip_b: Ipv4Addr = sandbox_ip(&mut rt, &b).await?.parse()?;
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        assert_eq!(ip.octets()[..2], [10, 234], "built-in 10.234.0.0/16: {ip}");
    }
    // host network: the node's address is the pod's; none is allocated
    let mut host = env.pod("ip-host");
    host.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let h = run_pod(&mut rt, &host).await?;
    assert_eq!(sandbox_ip(&mut rt, &h).await?, "");
    // a removed sandbox gives its address back
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: a.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: a.clone(),
    })
    .await?;
    let c = run_pod(&mut rt, &env.pod("ip-c")).await?;
    assert_eq!(sandbox_ip(&mut rt, &c).await?, ip_a.to_string());
    // kubelet's node pod CIDR wins from then on, across a restart
    let cidr = |s: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig { pod_cidr: s.into() }),
        }),
    };
    let err = rt
        .update_runtime_config(cidr("10.77.0.0"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    rt.update_runtime_config(cidr("10.77.5.0/24,fd00:10::/64"))
        .await?;
    let d = run_pod(&mut rt, &env.pod("ip-d")).await?;
    assert_eq!(sandbox_ip(&mut rt, &d).await?, "10.77.5.2");
    let mut env = env;
    env.kill_host();
    env.start_host()?;
    let (mut rt, _) = env.connect().await?;
    assert_eq!(sandbox_ip(&mut rt, &d).await?, "10.77.5.2");
    assert_eq!(sandbox_ip(&mut rt, &b).await?, ip_b.to_string());
    let e = run_pod(&mut rt, &env.pod("ip-e")).await?;
    assert_eq!(sandbox_ip(&mut rt, &e).await?, "10.77.5.3");
    Ok(())
}

/// kubelet and critest open the log file as soon as StartContainer returns,
/// long before the remote pod exists (here the batch window is 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_exists_when_start_returns() -> anyhow::Result<()> {
    let env = CriEnv::start("BatchWindow: 3s\n")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("log-at-start");
    let pod = run_pod(&mut rt, &sb).await?;
    let id = create(&mut rt, &pod, &sb, sh("main", "echo later")).await?;
    let file = log_file(&sb, "main");
    assert!(!file.exists());
    start(&mut rt, &id).await?;
    assert!(file.exists(), "no log file right after StartContainer");
    assert_eq!(std::fs::read_to_string(&file)?, "");
    // container output may hold secrets: not world-readable (kubelet reads as root)
    let m = mode(&file);
    assert_eq!(m & 0o007, 0, "log file mode {m:o}");
    assert_eq!(m & 0o600, 0o600, "log file mode {m:o}");
    wait_file(&file, "later", T).await?;
    Ok(())
}

/// Status lists the default handler; metrics, RunAsGroup and the image filesystem
/// as kubelet and critest check them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_metrics_security_context_and_image_fs() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, mut img) = env.connect().await?;
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let names: Vec<&str> = st
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(names.contains(&""), "default handler missing: {names:?}");
    assert!(names.contains(&"interlink"), "{names:?}");
    // a sandbox for the default handler and one for the named one
    let pod = run_pod(&mut rt, &env.pod("handlers")).await?;
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(env.pod("handlers-named")),
        runtime_handler: "interlink".into(),
    })
    .await?;

    // callers (critest, kubelet's PodAndContainerStatsFromCRI) take a descriptor
    // list as the promise of cAdvisor's whole set; usage comes through
    // ContainerStats/PodSandboxStats instead
    let err = rt
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    let sb = env.pod("handlers");
    let mut c = sh("group-only", "true");
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_group: Some(cri::Int64Value { value: 1000 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c.clone()),
            sandbox_config: Some(sb.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("run_as_group"), "{err:?}");
    // with a user it is fine
    c.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .run_as_user = Some(cri::Int64Value { value: 1000 });
    create(&mut rt, &pod, &sb, c).await?;

    // kubelet takes the capacity from the filesystem at fs_id.mountpoint
    let fs = img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let f = &fs.image_filesystems[0];
    let mp = &f.fs_id.as_ref().unwrap().mountpoint;
    let vfs = nix::sys::statvfs::statvfs(Path::new(mp))?;
    assert!(
        vfs.blocks() as u64 * vfs.fragment_size() as u64 > 0,
        "capacity 0 at {mp}"
    );
    assert!(f.used_bytes.as_ref().unwrap().value > 0);
    assert!(!fs.container_filesystems.is_empty());
    Ok(())
}

fn http_on_unix(sock: &Path, req: &str) -> anyhow::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The documents' check, `curl -X POST --unix-socket cri.sock http://localhost/healthz`,
/// answered on the CRI socket beside gRPC (here on the embedded default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_over_http1_on_the_cri_socket() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("cri.sock");
    let mut cmd = std::process::Command::new(interlink_test_harness::bin("interlink-cri"));
    cmd.arg("--socket")
        .arg(&sock)
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .env_remove("INTERLINK_CRI_CONFIG")
        .env_remove("RUST_LOG");
    let host = interlink_test_harness::Proc::spawn("interlink-cri", cmd, &dir.path().join("log"))?;
    interlink_test_harness::wait_for_unix_socket(&sock, T)?;
    let h = http_on_unix(
        &sock,
        "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )?;
    assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
    assert!(h.ends_with("\r\n\r\nok"), "{h}");
    // gRPC on the same socket, then its count in /metrics
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(connect(&sock).await?);
    rt.version(cri::VersionRequest::default()).await?;
    let m = http_on_unix(&sock, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
    assert!(
        m.contains("interlink_cri_cri_calls_total{method=\"Version\",code=\"Ok\"} 1"),
        "{m}"
    );
    let n = http_on_unix(&sock, "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    assert!(n.starts_with("HTTP/1.1 404 "), "{n}");
    // log output to a file carries no colour codes
    drop(rt);
    drop(host);
    let log = std::fs::read_to_string(dir.path().join("log"))?;
    assert!(log.contains("interlink-cri ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    // the embedded API server's and plugin's data, and the state: private
    for d in ["embedded", "state"] {
        assert_eq!(mode(&dir.path().join("data").join(d)), 0o700, "{d}");
    }
    Ok(())
}

/// A container's record holds its env (values kubelet resolved from Secrets):
/// state files are 0600 in 0700 directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_holding_secret_env_is_private() -> anyhow::Result<()> {
    let env = CriEnv::start("")?;
    let (mut rt, _) = env.connect().await?;
    let sb = env.pod("secret-env");
    let pod = run_pod(&mut rt, &sb).await?;
    let mut c = sh("main", "echo $TOKEN | wc -c");
    c.envs = vec![cri::KeyValue {
        key: "TOKEN".into(),
        value: b"s3cr3t-from-a-secret".to_vec(),
    }];
    let id = create(&mut rt, &pod, &sb, c).await?;
    start(&mut rt, &id).await?;
    wait_state(&mut rt, &id, EXITED, T).await?;
    let state = env.path("host/state");
    let record = state.join("containers").join(format!("{id}.json"));
    assert!(record.exists());
    assert_eq!(mode(&record), 0o600);
    for d in ["", "containers", "sandboxes", "images", "remote-pods"] {
        assert_eq!(mode(&state.join(d)), 0o700, "state/{d}");
    }
    for e in std::fs::read_dir(state.join("sandboxes"))? {
        assert_eq!(mode(&e?.path()), 0o600);
    }
    Ok(())
}
