//! Helpers for plugin tests: a small blocking HTTP/1.1 client for the plugin API
//! over TCP or a Unix socket (with streamed bodies for followed logs), pod
//! builders, status accessors, and starting `interlink-local`.
//!
//! ```no_run
//! use interlink_test_harness::plugin::{PluginClient, PodBuilder, start_local};
//! let dir = tempfile::tempdir().unwrap();
//! let (_proc, client) = start_local(dir.path()).unwrap();
//! let pod = PodBuilder::new("hello").container("main", &["sh", "-c", "echo hi"]);
//! client.create(&pod.data()).unwrap();
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use interlink::{
    ContainerLogOpts, CreateStruct, LogStruct, PodStatus, RetrievedContainer, RetrievedPodData,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerState, ContainerStatus,
    EmptyDirVolumeSource, EnvVar, Pod, PodSpec, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{Proc, bin, wait_for_unix_socket};

/// Where a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

impl Addr {
    /// `unix:///path`, `http://host:port` or `host:port`.
    pub fn parse(s: &str) -> Addr {
        match s.strip_prefix("unix://") {
            Some(p) => Addr::Unix(PathBuf::from(p)),
            None => Addr::Tcp(
                s.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
            ),
        }
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_read_timeout(&self, d: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(d)),
            Conn::Unix(s) => s.set_read_timeout(Some(d)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// An HTTP response whose body may still be arriving.
pub struct Streaming {
    conn: Conn,
    raw: Vec<u8>,
    framing: Framing,
    /// In chunked framing: bytes left in the current chunk (`None`: a size line is next).
    chunk_left: Option<usize>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The decoded body received so far.
    pub body: Vec<u8>,
    /// The whole body has arrived.
    pub done: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Streaming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn decode(&mut self) -> Result<()> {
        match self.framing {
            Framing::Length(n) => {
                self.body.append(&mut self.raw);
                if self.body.len() >= n {
                    self.body.truncate(n);
                    self.done = true;
                }
            }
            Framing::UntilClose => self.body.append(&mut self.raw),
            Framing::Chunked => loop {
                match self.chunk_left {
                    None => {
                        let Some(end) = find(&self.raw, b"\r\n") else {
                            return Ok(());
                        };
                        let line = String::from_utf8_lossy(&self.raw[..end]).to_string();
                        let size =
                            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                                .with_context(|| format!("bad chunk size line {line:?}"))?;
                        self.raw.drain(..end + 2);
                        if size == 0 {
                            self.done = true;
                            return Ok(());
                        }
                        self.chunk_left = Some(size);
                    }
                    Some(0) => {
                        if self.raw.len() < 2 {
                            return Ok(());
                        }
                        self.raw.drain(..2);
                        self.chunk_left = None;
                    }
                    Some(n) => {
                        if self.raw.is_empty() {
                            return Ok(());
                        }
                        let take = n.min(self.raw.len());
                        self.body.extend(self.raw.drain(..take));
                        self.chunk_left = Some(n - take);
                    }
                }
            },
        }
        Ok(())
    }

    /// Read once (waiting at most `wait`); answers whether anything arrived.
    fn pump(&mut self, wait: Duration) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        self.conn
            .set_read_timeout(wait.max(Duration::from_millis(1)))?;
        let mut buf = [0u8; 16384];
        match self.conn.read(&mut buf) {
            Ok(0) => {
                if matches!(self.framing, Framing::UntilClose) {
                    self.done = true;
                    return Ok(false);
                }
                bail!(
                    "connection closed before the end of the body (got {} bytes)",
                    self.body.len()
                )
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                self.decode()?;
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read until the body contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if find(&self.body, needle.as_bytes()).is_some() {
                return Ok(());
            }
            if self.done {
                bail!("body ended without {needle:?}; got {:?}", self.text());
            }
            let now = Instant::now();
            if now >= end {
                bail!(
                    "timed out after {timeout:?} waiting for {needle:?} in the body; got {:?}",
                    self.text()
                );
            }
            self.pump((end - now).min(Duration::from_millis(200)))?;
        }
    }

    /// Read until the body is complete.
    pub fn read_to_end(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        while !self.done {
            let now = Instant::now();
            if now >= end {
                bail!(
                    "timed out after {timeout:?} waiting for the end of the body; got {:?}",
                    self.text()
                );
            }
            self.pump((end - now).min(Duration::from_millis(200)))?;
        }
        Ok(())
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("decode JSON body {:?}", self.text()))
    }

    /// The `error` of a JSON error body (`{"error": "..."}`), if it is one.
    pub fn error(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error")?.as_str().map(str::to_string)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Fail unless the status is 2xx.
    pub fn ok(self) -> Result<Response> {
        if !(200..300).contains(&self.status) {
            bail!("HTTP {}: {}", self.status, self.text());
        }
        Ok(self)
    }
}

/// Blocking client of a plugin's HTTP API.
#[derive(Debug, Clone)]
pub struct PluginClient {
    pub addr: Addr,
    /// Time allowed for a whole (non-streamed) request.
    pub timeout: Duration,
}

impl PluginClient {
    pub fn new(addr: Addr) -> PluginClient {
        PluginClient {
            addr,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn unix(path: &Path) -> PluginClient {
        PluginClient::new(Addr::Unix(path.to_path_buf()))
    }

    pub fn tcp(port: u16) -> PluginClient {
        PluginClient::new(Addr::Tcp(format!("127.0.0.1:{port}")))
    }

    fn connect(&self) -> Result<Conn> {
        Ok(match &self.addr {
            Addr::Tcp(a) => {
                Conn::Tcp(TcpStream::connect(a).with_context(|| format!("connect {a}"))?)
            }
            Addr::Unix(p) => Conn::Unix(
                UnixStream::connect(p).with_context(|| format!("connect {}", p.display()))?,
            ),
        })
    }

    /// Send a request; answer as soon as the response head has arrived.
    pub fn stream(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Streaming> {
        let mut conn = self.connect()?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        if let Some(b) = body {
            conn.write_all(b)?;
        }
        conn.flush()?;
        conn.set_read_timeout(self.timeout)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let end = loop {
            if let Some(p) = find(&raw, b"\r\n\r\n") {
                break p;
            }
            let n = conn
                .read(&mut buf)
                .with_context(|| format!("read the response head of {method} {path}"))?;
            if n == 0 {
                bail!("connection closed before a response to {method} {path}");
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let framing = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            Framing::Chunked
        } else if let Some(n) = get("content-length").and_then(|v| v.parse().ok()) {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let mut s = Streaming {
            conn,
            raw,
            framing,
            chunk_left: None,
            status,
            headers,
            body: Vec::new(),
            done: false,
        };
        if matches!(s.framing, Framing::Length(0)) {
            s.done = true;
        }
        s.decode()?;
        Ok(s)
    }

    /// Send a request and read the whole response.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response> {
        let mut s = self.stream(method, path, body)?;
        s.read_to_end(self.timeout)?;
        Ok(Response {
            status: s.status,
            headers: s.headers,
            body: s.body,
        })
    }

    pub fn post_json<T: serde::Serialize>(&self, path: &str, v: &T) -> Result<Response> {
        self.request("POST", path, Some(&serde_json::to_vec(v)?))
    }

    /// `POST /create` (any status).
    pub fn create(&self, data: &RetrievedPodData) -> Result<Response> {
        self.post_json("/create", data)
    }

    /// `POST /create`, which must succeed.
    pub fn create_ok(&self, data: &RetrievedPodData) -> Result<CreateStruct> {
        self.create(data)?.ok()?.json()
    }

    /// `POST /delete` (any status).
    pub fn delete(&self, pod: &Pod) -> Result<Response> {
        self.post_json("/delete", pod)
    }

    /// `GET /status` with a body, which must succeed.
    pub fn status(&self, pods: &[Pod]) -> Result<Vec<PodStatus>> {
        self.request("GET", "/status", Some(&serde_json::to_vec(pods)?))?
            .ok()?
            .json()
    }

    /// Status of one pod.
    pub fn status_of(&self, pod: &Pod) -> Result<PodStatus> {
        let mut v = self.status(std::slice::from_ref(pod))?;
        if v.len() != 1 {
            bail!("expected one status, got {}", v.len());
        }
        Ok(v.remove(0))
    }

    /// Poll the status of `pod` until `pred` holds.
    pub fn wait_status(
        &self,
        pod: &Pod,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&PodStatus) -> bool,
    ) -> Result<PodStatus> {
        let end = Instant::now() + timeout;
        loop {
            let st = self.status_of(pod)?;
            if pred(&st) {
                return Ok(st);
            }
            if Instant::now() > end {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last status: {}",
                    serde_json::to_string(&st)?
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /getLogs` with a body (any status).
    pub fn logs(&self, req: &LogStruct) -> Result<Response> {
        self.request("GET", "/getLogs", Some(&serde_json::to_vec(req)?))
    }

    /// `GET /getLogs`, streamed (for `Follow`).
    pub fn logs_stream(&self, req: &LogStruct) -> Result<Streaming> {
        self.stream("GET", "/getLogs", Some(&serde_json::to_vec(req)?))
    }

    /// `POST /pinglink`.
    pub fn ping(&self) -> Result<Response> {
        self.request("POST", "/pinglink", None)
    }
}

/// A log request for a container of `pod`.
pub fn log_req(pod: &Pod, container: &str, opts: ContainerLogOpts) -> LogStruct {
    LogStruct {
        namespace: interlink::pod_namespace(pod).to_string(),
        pod_uid: interlink::pod_uid(pod).to_string(),
        pod_name: interlink::pod_name(pod).to_string(),
        container_name: container.to_string(),
        opts,
    }
}

/// A random lowercase UUID (v4 layout).
pub fn random_uid() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Builds a pod and the objects sent with it (`/create` body).
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pub pod: Pod,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    /// Projected volumes rendered as maps named after the volume (file -> content).
    pub projected_maps: Vec<ConfigMap>,
}

fn container(name: &str, cmd: &[&str]) -> Container {
    Container {
        name: name.to_string(),
        image: Some("busybox:stable".to_string()),
        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

impl PodBuilder {
    /// A pod in namespace `default` with a fresh UID and no containers.
    pub fn new(name: &str) -> PodBuilder {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".to_string()),
                uid: Some(random_uid()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: Vec::new(),
                restart_policy: Some("Never".into()),
                ..Default::default()
            }),
            status: None,
        };
        PodBuilder {
            pod,
            config_maps: Vec::new(),
            secrets: Vec::new(),
            projected_maps: Vec::new(),
        }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    /// Add a container running `cmd` (the command, no args).
    pub fn container(mut self, name: &str, cmd: &[&str]) -> PodBuilder {
        self.spec().containers.push(container(name, cmd));
        self
    }

    /// Add an init container running `cmd`.
    pub fn init_container(mut self, name: &str, cmd: &[&str]) -> PodBuilder {
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(container(name, cmd));
        self
    }

    /// Change the last added container (regular, or init when there is none).
    pub fn with_container(mut self, name: &str, f: impl FnOnce(&mut Container)) -> PodBuilder {
        let spec = self.spec();
        let c = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"));
        f(c);
        self
    }

    pub fn env(self, container: &str, name: &str, value: &str) -> PodBuilder {
        self.with_container(container, |c| {
            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: name.into(),
                value: Some(value.into()),
                ..Default::default()
            })
        })
    }

    pub fn grace(mut self, seconds: i64) -> PodBuilder {
        self.spec().termination_grace_period_seconds = Some(seconds);
        self
    }

    /// Add volume `v`, mounted at `mount_path` in `container`.
    pub fn volume(mut self, v: Volume, container: &str, mount_path: &str) -> PodBuilder {
        let name = v.name.clone();
        self.spec().volumes.get_or_insert_with(Vec::new).push(v);
        self.with_container(container, |c| {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name,
                    mount_path: mount_path.into(),
                    ..Default::default()
                })
        })
    }

    /// A ConfigMap `cm` with `data`, as volume `vol` mounted at `mount_path` in `container`.
    pub fn config_map(
        mut self,
        vol: &str,
        cm: &str,
        data: &[(&str, &str)],
        container: &str,
        mount_path: &str,
    ) -> PodBuilder {
        self.config_maps.push(ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        });
        let v = Volume {
            name: vol.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.volume(v, container, mount_path)
    }

    /// A Secret `secret` with `data`, as volume `vol` mounted at `mount_path` in `container`.
    pub fn secret(
        mut self,
        vol: &str,
        secret: &str,
        data: &[(&str, &str)],
        container: &str,
        mount_path: &str,
    ) -> PodBuilder {
        self.secrets.push(Secret {
            metadata: ObjectMeta {
                name: Some(secret.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            k8s_openapi::ByteString(v.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        let v = Volume {
            name: vol.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.volume(v, container, mount_path)
    }

    /// A projected volume `vol` (a service-account token, say) as interLink sends
    /// it: a map named after the volume, file name -> content.
    pub fn projected(
        mut self,
        vol: &str,
        files: &[(&str, &str)],
        container: &str,
        mount_path: &str,
    ) -> PodBuilder {
        self.projected_maps.push(ConfigMap {
            metadata: ObjectMeta {
                name: Some(vol.into()),
                ..Default::default()
            },
            data: Some(
                files
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        });
        let v = Volume {
            name: vol.into(),
            projected: Some(k8s_openapi::api::core::v1::ProjectedVolumeSource {
                sources: Some(vec![k8s_openapi::api::core::v1::VolumeProjection {
                    service_account_token: Some(
                        k8s_openapi::api::core::v1::ServiceAccountTokenProjection {
                            path: "token".into(),
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.volume(v, container, mount_path)
    }

    /// An emptyDir volume `vol` mounted at `mount_path` in each of `containers`.
    pub fn empty_dir(mut self, vol: &str, containers: &[&str], mount_path: &str) -> PodBuilder {
        self.spec()
            .volumes
            .get_or_insert_with(Vec::new)
            .push(Volume {
                name: vol.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
        for c in containers {
            self = self.with_container(c, |c| {
                c.volume_mounts
                    .get_or_insert_with(Vec::new)
                    .push(VolumeMount {
                        name: vol.into(),
                        mount_path: mount_path.into(),
                        ..Default::default()
                    })
            });
        }
        self
    }

    /// Mount `sub_path` of the pod's volume `vol` at `mount_path` in `container`.
    pub fn sub_path_mount(
        self,
        container: &str,
        vol: &str,
        sub_path: &str,
        mount_path: &str,
    ) -> PodBuilder {
        self.with_container(container, |c| {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: vol.into(),
                    mount_path: mount_path.into(),
                    sub_path: Some(sub_path.into()),
                    ..Default::default()
                })
        })
    }

    pub fn uid(&self) -> &str {
        interlink::pod_uid(&self.pod)
    }

    /// The `/create` body: the pod, and each container's ConfigMaps and Secrets.
    pub fn data(&self) -> RetrievedPodData {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| RetrievedContainer {
                name: c.name.clone(),
                config_maps: self.config_maps.clone(),
                secrets: self.secrets.clone(),
                projected_volume_maps: self.projected_maps.clone(),
                ..Default::default()
            })
            .collect();
        RetrievedPodData {
            pod: self.pod.clone(),
            containers,
            ..Default::default()
        }
    }
}

/// The status of container `name` (regular or init).
pub fn container_status<'a>(st: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    st.containers
        .iter()
        .chain(st.init_containers.iter())
        .find(|c| c.name == name)
}

fn state<'a>(st: &'a PodStatus, name: &str) -> Option<&'a ContainerState> {
    container_status(st, name).and_then(|c| c.state.as_ref())
}

pub fn is_running(st: &PodStatus, name: &str) -> bool {
    state(st, name).is_some_and(|s| s.running.is_some())
}

pub fn is_waiting(st: &PodStatus, name: &str) -> bool {
    state(st, name).is_some_and(|s| s.waiting.is_some())
}

/// The exit code of a terminated container.
pub fn exit_code(st: &PodStatus, name: &str) -> Option<i32> {
    state(st, name)
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The reason of a terminated or waiting container.
pub fn reason(st: &PodStatus, name: &str) -> Option<String> {
    let s = state(st, name)?;
    s.terminated
        .as_ref()
        .and_then(|t| t.reason.clone())
        .or_else(|| s.waiting.as_ref().and_then(|w| w.reason.clone()))
}

/// The message of a terminated or waiting container.
pub fn message(st: &PodStatus, name: &str) -> Option<String> {
    let s = state(st, name)?;
    s.terminated
        .as_ref()
        .and_then(|t| t.message.clone())
        .or_else(|| s.waiting.as_ref().and_then(|w| w.message.clone()))
}

/// Are all regular containers terminated?
pub fn all_terminated(st: &PodStatus) -> bool {
    !st.containers.is_empty()
        && st
            .containers
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// Start `interlink-local` on a Unix socket with its data under `dir`
/// (`dir/plugin.sock`, `dir/data`, output in `dir/plugin.log`).
pub fn start_local(dir: &Path) -> Result<(Proc, PluginClient)> {
    start_local_with(dir, &[])
}

/// [`start_local`] with extra arguments.
pub fn start_local_with(dir: &Path, extra: &[&str]) -> Result<(Proc, PluginClient)> {
    let sock = dir.join("plugin.sock");
    let mut cmd = std::process::Command::new(bin("interlink-local"));
    cmd.arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.join("data"))
        .args(extra)
        .env("RUST_LOG", "info,interlink_plugin_local=debug");
    let mut proc = Proc::spawn("interlink-local", cmd, &dir.join("plugin.log"))?;
    if let Err(e) = wait_for_unix_socket(&sock, Duration::from_secs(20)) {
        let out = proc.output();
        proc.stop(Duration::from_secs(1));
        bail!("{e}; plugin output:\n{out}");
    }
    Ok((proc, PluginClient::unix(&sock)))
}

/// Kills, when dropped, every container process that the local plugin under
/// `dir` (as given to [`start_local`]) recorded as running: container processes
/// live in their own process groups and outlive the plugin, so a test that
/// panics before deleting its pods would otherwise leave them behind.
pub struct ReapLocalPods(pub PathBuf);

impl Drop for ReapLocalPods {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0.join("data/pods")) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(bytes) = std::fs::read(e.path().join("state.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let all = ["init_containers", "containers"]
                .into_iter()
                .flat_map(|k| v[k].as_array().cloned().unwrap_or_default());
            for c in all {
                let (Some(pid), Some(ticks)) = (
                    c["state"]["pid"].as_i64(),
                    c["state"]["start_ticks"].as_u64(),
                ) else {
                    continue;
                };
                // only the very process that was started, not a reused pid
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let start = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(19));
                if pid > 1 && start.and_then(|s| s.parse::<u64>().ok()) == Some(ticks) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}
