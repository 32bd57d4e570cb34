//! A real containerd (Debian 12's 1.6) for the tests, as prepared by
//! scripts/containerd-setup.sh: its binaries and two image archives made without
//! any registry are named by `$CONTAINERD_DIR/env.sh` (default
//! `/tmp/containerd-test/env.sh`).
//!
//! Each [`Containerd`] is a private instance: its own config, root, state,
//! sockets, runc root and CNI bridge in a temp directory, so tests may run
//! several side by side. The images are imported into the `k8s.io` namespace
//! (the CRI plugin's), busybox under every name of `CONTAINERD_BUSYBOX_IMAGES`
//! (`docker.io/library/busybox:latest` first, so `busybox` resolves) and pause as
//! the configured `sandbox_image`. Dropping it removes every CRI pod, stops the
//! process by pid, and undoes what it did to the host (bridge, mounts, leftover
//! shims and runc containers), then the directory.
//!
//! Host facts the config encodes (Debian 12 VM): root lacks CAP_SYS_RESOURCE, so
//! `restrict_oom_score_adj = true` (else RunPodSandbox fails with runc's "can't
//! get final child's PID from pipe: EOF"); cgroups are hybrid, so runc with
//! cgroupfs and no systemd; no hugetlb controller; no registry, so the sandbox
//! image is the locally built pause image; pod netns mounts under the state
//! directory; no TCP service; the stream server on 127.0.0.1, port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;

use crate::cri::{Img, Rt, connect, cri};
use crate::{Proc, backends_required, wait_for_unix_socket};

/// How long containerd may take to answer CRI after a (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on every `ctr` / `runc` / `ip` the harness runs.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// What scripts/containerd-setup.sh prepared (`env.sh`).
#[derive(Clone, Debug)]
pub struct ContainerdEnv {
    /// Every variable `env.sh` exports.
    pub vars: BTreeMap<String, String>,
    /// `CONTAINERD_BIN`: the containerd binary.
    pub containerd: PathBuf,
    /// `CONTAINERD_CTR`: its `ctr` client.
    pub ctr: PathBuf,
    /// `CONTAINERD_RUNC`: the runc binary the runtime uses.
    pub runc: PathBuf,
    /// `CONTAINERD_CNI_BIN`: the CNI plugins' directory.
    pub cni_bin: PathBuf,
    /// `CONTAINERD_BUSYBOX_ARCHIVE`: the busybox image archive (OCI layout).
    pub busybox_archive: PathBuf,
    /// `CONTAINERD_BUSYBOX_IMAGES`: the names busybox is imported under.
    pub busybox_images: Vec<String>,
    /// `CONTAINERD_PAUSE_ARCHIVE`: the pause image archive (OCI layout).
    pub pause_archive: PathBuf,
    /// `CONTAINERD_PAUSE_IMAGE`: the pause image's name, the `sandbox_image`.
    pub pause_image: String,
}

impl ContainerdEnv {
    /// Read and check `$CONTAINERD_DIR/env.sh`; the error says what is missing.
    pub fn load() -> Result<ContainerdEnv> {
        let dir = std::env::var("CONTAINERD_DIR").unwrap_or_else(|_| "/tmp/containerd-test".into());
        let file = Path::new(&dir).join("env.sh");
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "no containerd env file {}: run scripts/containerd-setup.sh as root",
                file.display()
            )
        })?;
        let vars: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .with_context(|| format!("{} does not set {k}", file.display()))
        };
        let env = ContainerdEnv {
            containerd: get("CONTAINERD_BIN")?.into(),
            ctr: get("CONTAINERD_CTR")?.into(),
            runc: get("CONTAINERD_RUNC")?.into(),
            cni_bin: get("CONTAINERD_CNI_BIN")?.into(),
            busybox_archive: get("CONTAINERD_BUSYBOX_ARCHIVE")?.into(),
            busybox_images: get("CONTAINERD_BUSYBOX_IMAGES")?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            pause_archive: get("CONTAINERD_PAUSE_ARCHIVE")?.into(),
            pause_image: get("CONTAINERD_PAUSE_IMAGE")?,
            vars,
        };
        for p in [
            &env.containerd,
            &env.ctr,
            &env.runc,
            &env.busybox_archive,
            &env.pause_archive,
        ] {
            if !p.exists() {
                bail!(
                    "{} (named by {}) is missing: run scripts/containerd-setup.sh as root",
                    p.display(),
                    file.display()
                );
            }
        }
        for plugin in ["bridge", "host-local", "loopback"] {
            if !env.cni_bin.join(plugin).exists() {
                bail!("CNI plugin {plugin} missing in {}", env.cni_bin.display());
            }
        }
        if env.busybox_images.is_empty() {
            bail!("CONTAINERD_BUSYBOX_IMAGES is empty in {}", file.display());
        }
        Ok(env)
    }
}

/// A private containerd with the test images, stopped and cleaned up on drop.
pub struct Containerd {
    env: ContainerdEnv,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    bridge: String,
    subnet: String,
}

/// Instances started by this test process (bridge names and subnets).
static INSTANCES: AtomicU32 = AtomicU32::new(0);

impl Containerd {
    /// Start a private containerd and import the images.
    ///
    /// `Ok(None)` (after `SKIP: containerd: <why>` on stderr) when the setup's
    /// env is missing, an error instead when `INTERLINK_REQUIRE_BACKENDS=1`.
    pub fn start() -> Result<Option<Containerd>> {
        match ContainerdEnv::load() {
            Ok(env) => Self::start_with(env).map(Some),
            Err(e) if backends_required() => Err(
                e.context("containerd is required (INTERLINK_REQUIRE_BACKENDS=1) but unavailable")
            ),
            Err(e) => {
                eprintln!("SKIP: containerd: {e:#}");
                Ok(None)
            }
        }
    }

    /// [`Containerd::start`] with an env already loaded.
    pub fn start_with(env: ContainerdEnv) -> Result<Containerd> {
        let t0 = Instant::now();
        let dir = tempfile::Builder::new().prefix("ctrd-").tempdir()?;
        let (bridge, subnet) = pick_network()?;
        let mut c = Containerd {
            env,
            dir,
            proc: None,
            bridge,
            subnet,
        };
        c.write_config()?;
        c.spawn()?;
        let t_up = t0.elapsed();
        c.import_images()?;
        c.wait_ready(true)?;
        eprintln!(
            "containerd pid {} at {} (bridge {} {}): up in {:?}, images in {:?}, total {:?}",
            c.pid(),
            c.socket().display(),
            c.bridge,
            c.subnet,
            t_up,
            t0.elapsed() - t_up,
            t0.elapsed()
        );
        Ok(c)
    }

    /// The temp directory everything of this instance lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gRPC (and CRI) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// `unix://<socket>`, as a CRI endpoint.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The containerd log (its stdout and stderr, appended across restarts).
    pub fn log(&self) -> PathBuf {
        self.dir().join("containerd.log")
    }

    /// The containerd process's pid (0 when it is not running).
    pub fn pid(&self) -> i32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    /// What the setup prepared.
    pub fn env(&self) -> &ContainerdEnv {
        &self.env
    }

    /// The first busybox name (`docker.io/library/busybox:latest` by default).
    pub fn busybox_image(&self) -> &str {
        &self.env.busybox_images[0]
    }

    /// The sandbox (pause) image's name.
    pub fn pause_image(&self) -> &str {
        &self.env.pause_image
    }

    /// The CNI bridge's name and subnet (unique per instance).
    pub fn network(&self) -> (&str, &str) {
        (&self.bridge, &self.subnet)
    }

    /// A CRI runtime client over the socket.
    pub async fn rt(&self) -> Result<Rt> {
        Ok(RuntimeServiceClient::new(connect(&self.socket()).await?))
    }

    /// A CRI image client over the socket.
    pub async fn img(&self) -> Result<Img> {
        Ok(ImageServiceClient::new(connect(&self.socket()).await?))
    }

    /// Run `ctr -a <socket> -n k8s.io <args>`; its stdout, or an error with its stderr.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.env.ctr);
        cmd.arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args);
        run(cmd, &format!("ctr {}", args.join(" ")))
    }

    /// Stop containerd (SIGTERM, by pid) and start it again on the same
    /// directories; running containers stay up under their shims. Returns when
    /// CRI answers again.
    pub fn restart(&mut self) -> Result<()> {
        let t0 = Instant::now();
        self.stop();
        self.start_again()?;
        eprintln!(
            "containerd restarted as pid {} in {:?}",
            self.pid(),
            t0.elapsed()
        );
        Ok(())
    }

    /// Stop containerd (SIGTERM, by pid) and leave it down (an outage); its
    /// containers stay up under their shims. [`Containerd::start_again`] ends it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Start containerd again after [`Containerd::stop`], on the same
    /// directories; returns when CRI answers.
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready(false)
    }

    /// Stop and remove every CRI pod sandbox (with its containers); bounded by
    /// a minute.
    pub fn remove_all_pods(&self) -> Result<()> {
        let sock = self.socket();
        let work = async move {
            let mut rt = RuntimeServiceClient::new(connect(&sock).await?);
            let pods = rt
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await?
                .into_inner()
                .items;
            for p in pods {
                rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .with_context(|| format!("StopPodSandbox {}", p.id))?;
                rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .with_context(|| format!("RemovePodSandbox {}", p.id))?;
            }
            Ok(())
        };
        block_on(async move {
            tokio::time::timeout(Duration::from_secs(60), work)
                .await
                .context("removing the pods timed out")?
        })
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir();
        let net = d.join("net.d");
        std::fs::create_dir_all(&net)?;
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "interlink-test",
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": false,
                "isDefaultGateway": false,
                "ipMasq": false,
                "hairpinMode": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": self.subnet }]],
                    "dataDir": d.join("ipam"),
                }
            }]
        });
        std::fs::write(
            net.join("10-bridge.conflist"),
            serde_json::to_string_pretty(&conflist)?,
        )?;
        let p = |s: &str| d.join(s).display().to_string();
        let config = format!(
            r#"# written by tests/src/containerd.rs
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    systemd_cgroup = false
    disable_hugetlb_controller = true
    tolerate_missing_hugetlb_controller = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          Root = "{runc_root}"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{cni_bin}"
      conf_dir = "{net}"
      max_conf_num = 1
  [plugins."io.containerd.internal.v1.opt"]
    path = "{opt}"
"#,
            root = p("root"),
            state = p("state"),
            sock = self.socket().display(),
            pause = self.env.pause_image,
            runc = self.env.runc.display(),
            runc_root = p("runc"),
            cni_bin = self.env.cni_bin.display(),
            net = net.display(),
            opt = p("opt"),
        );
        std::fs::write(d.join("config.toml"), config)?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = Command::new(&self.env.containerd);
        cmd.arg("--config")
            .arg(self.dir().join("config.toml"))
            .current_dir(self.dir());
        let proc = Proc::spawn("containerd", cmd, &self.log())?;
        self.proc = Some(proc);
        wait_for_unix_socket(&self.socket(), READY_TIMEOUT).context("containerd socket")?;
        Ok(())
    }

    fn import_images(&self) -> Result<()> {
        // both archives at once: two ctr processes
        let mut children = Vec::new();
        for archive in [&self.env.busybox_archive, &self.env.pause_archive] {
            let mut cmd = Command::new(&self.env.ctr);
            cmd.arg("-a")
                .arg(self.socket())
                .args([
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--snapshotter",
                    "overlayfs",
                ])
                .arg(archive);
            children.push((archive, cmd));
        }
        let handles: Vec<_> = children
            .into_iter()
            .map(|(a, cmd)| {
                let what = format!("ctr images import {}", a.display());
                std::thread::spawn(move || run(cmd, &what))
            })
            .collect();
        for h in handles {
            h.join().expect("import thread")?;
        }
        // every name the env asks for (the archive carries them; tag what is not)
        let have = self.ctr(&["images", "ls", "-q"])?;
        let have: Vec<&str> = have.lines().collect();
        let first = self.busybox_image().to_string();
        if !have.contains(&first.as_str()) {
            bail!("importing the busybox archive did not create {first} (have: {have:?})");
        }
        for n in &self.env.busybox_images[1..] {
            if !have.contains(&n.as_str()) {
                self.ctr(&["images", "tag", &first, n])?;
            }
        }
        if !have.contains(&self.env.pause_image.as_str()) {
            bail!(
                "importing the pause archive did not create {} (have: {have:?})",
                self.env.pause_image
            );
        }
        Ok(())
    }

    /// Wait until CRI answers, the network is ready and (with `images`) the CRI
    /// plugin sees every image name.
    fn wait_ready(&self, images: bool) -> Result<()> {
        let sock = self.socket();
        let mut names = vec![self.env.pause_image.clone()];
        names.extend(self.env.busybox_images.iter().cloned());
        if !images {
            names.clear();
        }
        let log = self.log();
        block_on(async move {
            let end = Instant::now() + READY_TIMEOUT;
            loop {
                let last = match ready(&sock, &names).await {
                    Ok(()) => return Ok(()),
                    Err(e) => format!("{e:#}"),
                };
                if Instant::now() > end {
                    bail!(
                        "containerd not ready after {READY_TIMEOUT:?}: {last}\n--- {} ---\n{}",
                        log.display(),
                        tail(&log, 30)
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    /// Undo the host side of this instance: runc containers and shims left
    /// over, mounts under the directory, the bridge.
    fn clean_host(&self) {
        let d = self.dir();
        // containers CRI could not remove: runc deletes them (killing them first)
        let runc_root = d.join("runc");
        if let Ok(nss) = std::fs::read_dir(&runc_root) {
            for ns in nss.flatten() {
                for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let mut cmd = Command::new(&self.env.runc);
                    cmd.arg("--root")
                        .arg(ns.path())
                        .args(["delete", "--force"])
                        .arg(c.file_name());
                    let _ = run(cmd, "runc delete --force");
                }
            }
        }
        // shims of this instance: their command line names our socket
        let sock = self.socket().display().to_string();
        for pid in pids_with_arg(&sock) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // mounts (rootfs, netns, shm) under the directory, deepest first
        let prefix = d.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount)
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: a valid C string; umount2 has no other preconditions
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let mut cmd = Command::new("ip");
            cmd.args(["link", "del", &self.bridge]);
            if let Err(e) = run(cmd, "ip link del") {
                eprintln!("containerd harness: {e:#}");
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let running = self.proc.as_mut().is_some_and(Proc::alive);
        if running && let Err(e) = self.remove_all_pods() {
            eprintln!("containerd harness: removing the pods failed: {e:#}");
        }
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
        self.clean_host();
    }
}

/// One readiness probe: CRI answers, its network is ready, it knows `images`.
async fn ready(sock: &Path, images: &[String]) -> Result<()> {
    let ch = connect(sock).await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    for cond in st.status.map(|s| s.conditions).unwrap_or_default() {
        if !cond.status {
            bail!("{} is false: {} {}", cond.r#type, cond.reason, cond.message);
        }
    }
    let mut img = ImageServiceClient::new(ch);
    for n in images {
        let s = img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: n.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner();
        if s.image.is_none() {
            bail!("CRI does not see image {n} yet");
        }
    }
    Ok(())
}

/// A bridge name (≤ 15 chars) and a /24 that no other instance of this process
/// uses, and that the host does not have.
fn pick_network() -> Result<(String, String)> {
    let pid = std::process::id();
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for _ in 0..64 {
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("ictd{:x}x{:x}", pid & 0xff_ffff, n & 0xff);
        // 10.160.0.0/10 .. 10.223.255.0: 16384 /24s
        let idx = (pid.wrapping_mul(64).wrapping_add(n)) % 16384;
        let net = format!("10.{}.{}", 160 + idx / 256, idx % 256);
        if Path::new("/sys/class/net").join(&bridge).exists() || routes.contains(&format!("{net}."))
        {
            continue;
        }
        return Ok((bridge, format!("{net}.0/24")));
    }
    bail!("no free bridge name / subnet found for containerd")
}

/// Run `cmd` (bounded by [`TOOL_TIMEOUT`]); its stdout, or an error with stderr.
fn run(mut cmd: Command, what: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let end = Instant::now() + TOOL_TIMEOUT;
    // read the pipes beside the wait, so a chatty child cannot block
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let r_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let r_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: timed out after {TOOL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = r_out.join().unwrap_or_default();
    let stderr = r_err.join().unwrap_or_default();
    if !status.success() {
        bail!("{what}: {status}: {}", stderr.trim());
    }
    Ok(stdout)
}

/// Run a future to completion on a runtime of its own, in a thread of its own
/// (callable from sync code and from inside a test's tokio runtime alike).
fn block_on<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f)
        })
        .join()
        .expect("block_on thread")
    })
}

/// Pids of processes with `arg` as one of their arguments.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// A mount point of /proc/self/mountinfo with its octal escapes (`\040`) undone.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `n` lines of a file.
fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
