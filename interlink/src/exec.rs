//! The wire of the exec extension (see [`crate::extensions::EXEC`]): what
//! `GET /exec`, `GET /attach` and `GET /portforward` carry in their query, the
//! Kubernetes `v5.channel.k8s.io` framing of exec and attach streams, and the
//! exit status as the `metav1.Status` JSON Kubernetes sends on its status channel.
//!
//! - A request ([`StreamRequest`]: [`ExecRequest`], [`AttachRequest`],
//!   [`PortForwardRequest`]) is a query string: `podUID`, `namespace`, `podName`, `container`,
//!   `command` (repeated, exec only), `tty`, `stdin` (`1`/`true` or `0`/`false`,
//!   absent = false), `port` (port-forward only).
//! - Each is a WebSocket upgrade (RFC 6455) with the subprotocol
//!   [`PROTOCOL`] for exec and attach. Errors before the upgrade are plain HTTP
//!   with a JSON `{"error": ...}` body: 400 bad input, 404 unknown pod or
//!   container, 501 the server or its plugin has no exec extension.
//! - exec/attach messages are binary, the first byte a [`Channel`]: stdin,
//!   stdout, stderr, status (sent once by the executing side just before it
//!   closes), resize (JSON [`TermSize`]), close (one more byte: the channel
//!   closed, `[255, 0]` is the end of stdin).
//! - port-forward messages are the raw TCP bytes both ways; a WebSocket close is
//!   the end of the stream; an error after the upgrade closes with code 1011
//!   and the reason.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::validate;

/// The WebSocket subprotocol of exec and attach streams.
pub const PROTOCOL: &str = "v5.channel.k8s.io";

/// The WebSocket close code of a port-forward whose target failed.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;

/// Why a request or a frame cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

fn err(m: impl Into<String>) -> WireError {
    WireError(m.into())
}

/// The pod (and container) a request is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
}

impl Target {
    /// A valid UID, namespace (DNS label) and pod name (DNS subdomain), all given.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.pod_uid.is_empty() {
            return Err(err("podUID is required"));
        }
        if self.namespace.is_empty() {
            return Err(err("namespace is required"));
        }
        if self.pod_name.is_empty() {
            return Err(err("podName is required"));
        }
        validate::check_pod_ref_fields(&self.pod_uid, &self.pod_name, &self.namespace).map_err(
            |e| {
                err(e
                    .replace("metadata.uid", "podUID")
                    .replace("metadata.namespace", "namespace")
                    .replace("metadata.name", "podName"))
            },
        )
    }
}

fn check_container(c: &str) -> Result<(), WireError> {
    if c.is_empty() {
        return Err(err("container is required"));
    }
    if !validate::is_dns_label(c) {
        return Err(err(format!("container {c:?} is not a valid DNS label")));
    }
    Ok(())
}

/// `GET /exec`: run `command` in `container` of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub target: Target,
    pub container: String,
    /// The program and its arguments (at least the program).
    pub command: Vec<String>,
    /// Give the command a terminal (stderr then comes on stdout).
    pub tty: bool,
    /// Send it stdin (else its stdin is empty).
    pub stdin: bool,
}

/// `GET /attach`: the streams of `container`'s main process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub target: Target,
    pub container: String,
    pub tty: bool,
    pub stdin: bool,
}

/// `GET /portforward`: one TCP connection to `port` of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardRequest {
    pub target: Target,
    pub port: u16,
}

/// Longest command accepted (arguments and their bytes).
const MAX_ARGS: usize = 4096;
const MAX_COMMAND_BYTES: usize = 1 << 20;

/// The query's pairs, decoded.
fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str, WireError> {
    let mut found = pairs.iter().filter(|(k, _)| k == key);
    let first = found.next().map(|(_, v)| v.as_str()).unwrap_or("");
    if found.next().is_some() {
        return Err(err(format!("{key} is given more than once")));
    }
    Ok(first)
}

fn flag(pairs: &[(String, String)], key: &str) -> Result<bool, WireError> {
    match single(pairs, key)? {
        "" | "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        v => Err(err(format!("{key}={v:?}: expected 1 or 0"))),
    }
}

fn target(pairs: &[(String, String)]) -> Result<Target, WireError> {
    Ok(Target {
        pod_uid: single(pairs, "podUID")?.to_string(),
        namespace: single(pairs, "namespace")?.to_string(),
        pod_name: single(pairs, "podName")?.to_string(),
    })
}

fn query(target: &Target) -> form_urlencoded::Serializer<'static, String> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("podUID", &target.pod_uid)
        .append_pair("namespace", &target.namespace)
        .append_pair("podName", &target.pod_name);
    q
}

fn bit(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// The query of exec (with a command) and attach (without).
fn stream_query(t: &Target, container: &str, command: &[String], tty: bool, stdin: bool) -> String {
    let mut q = query(t);
    q.append_pair("container", container);
    for a in command {
        q.append_pair("command", a);
    }
    q.append_pair("tty", bit(tty))
        .append_pair("stdin", bit(stdin));
    q.finish()
}

/// (target, container, tty, stdin) of an exec or attach query.
fn stream_parts(p: &[(String, String)]) -> Result<(Target, String, bool, bool), WireError> {
    Ok((
        target(p)?,
        single(p, "container")?.to_string(),
        flag(p, "tty")?,
        flag(p, "stdin")?,
    ))
}

/// What the three requests of the extension have in common: an endpoint, a
/// subprotocol, a target pod, and their query string.
pub trait StreamRequest: Sized + Send + Sync + 'static {
    /// The endpoint (on the API server and the plugin alike).
    const PATH: &'static str;
    /// The WebSocket subprotocol it speaks, if any.
    const PROTOCOL: Option<&'static str>;
    /// The pod.
    fn target(&self) -> &Target;
    /// The query string (without `?`).
    fn to_query(&self) -> String;
    /// Check every field.
    fn validate(&self) -> Result<(), WireError>;
    /// Read a query string (without `?`), unchecked.
    fn parse(query: &str) -> Result<Self, WireError>;
    /// Read and validate a query string (without `?`).
    fn from_query(query: &str) -> Result<Self, WireError> {
        let r = Self::parse(query)?;
        r.validate()?;
        Ok(r)
    }
}

impl StreamRequest for ExecRequest {
    const PATH: &'static str = crate::extensions::EXEC_PATH;
    const PROTOCOL: Option<&'static str> = Some(PROTOCOL);

    fn target(&self) -> &Target {
        &self.target
    }

    fn to_query(&self) -> String {
        stream_query(
            &self.target,
            &self.container,
            &self.command,
            self.tty,
            self.stdin,
        )
    }

    fn parse(query: &str) -> Result<ExecRequest, WireError> {
        let p = pairs(query);
        let (target, container, tty, stdin) = stream_parts(&p)?;
        let command = p
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        Ok(ExecRequest {
            target,
            container,
            command,
            tty,
            stdin,
        })
    }

    fn validate(&self) -> Result<(), WireError> {
        self.target.validate()?;
        check_container(&self.container)?;
        match self.command.first() {
            None => return Err(err("command is required (one command= per argument)")),
            Some(p) if p.is_empty() => return Err(err("the command's program is empty")),
            _ => {}
        }
        if self.command.len() > MAX_ARGS
            || self.command.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES
        {
            return Err(err("the command is too long"));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(err("the command holds a NUL byte"));
        }
        Ok(())
    }
}

impl StreamRequest for AttachRequest {
    const PATH: &'static str = crate::extensions::ATTACH_PATH;
    const PROTOCOL: Option<&'static str> = Some(PROTOCOL);

    fn target(&self) -> &Target {
        &self.target
    }

    fn to_query(&self) -> String {
        stream_query(&self.target, &self.container, &[], self.tty, self.stdin)
    }

    fn parse(query: &str) -> Result<AttachRequest, WireError> {
        let (target, container, tty, stdin) = stream_parts(&pairs(query))?;
        Ok(AttachRequest {
            target,
            container,
            tty,
            stdin,
        })
    }

    fn validate(&self) -> Result<(), WireError> {
        self.target.validate()?;
        check_container(&self.container)
    }
}

impl StreamRequest for PortForwardRequest {
    const PATH: &'static str = crate::extensions::PORT_FORWARD_PATH;
    const PROTOCOL: Option<&'static str> = None;

    fn target(&self) -> &Target {
        &self.target
    }

    fn to_query(&self) -> String {
        let mut q = query(&self.target);
        q.append_pair("port", &self.port.to_string());
        q.finish()
    }

    fn parse(query: &str) -> Result<PortForwardRequest, WireError> {
        let p = pairs(query);
        let port = single(&p, "port")?;
        if port.is_empty() {
            return Err(err("port is required"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| err(format!("port {port:?} is not a port number (1-65535)")))?;
        Ok(PortForwardRequest {
            target: target(&p)?,
            port,
        })
    }

    fn validate(&self) -> Result<(), WireError> {
        self.target.validate()?;
        if self.port == 0 {
            return Err(err("port 0 is not a port number (1-65535)"));
        }
        Ok(())
    }
}

/// The channel of an exec/attach message (its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Stdin,
    Stdout,
    Stderr,
    /// The exit status, as `metav1.Status` JSON (see [`ExitStatus`]).
    Status,
    /// A terminal size, as JSON (see [`TermSize`]).
    Resize,
    /// The end of a channel: the payload is the channel's byte.
    Close,
}

impl Channel {
    pub fn byte(self) -> u8 {
        match self {
            Channel::Stdin => 0,
            Channel::Stdout => 1,
            Channel::Stderr => 2,
            Channel::Status => 3,
            Channel::Resize => 4,
            Channel::Close => 255,
        }
    }

    pub fn from_byte(b: u8) -> Option<Channel> {
        Some(match b {
            0 => Channel::Stdin,
            1 => Channel::Stdout,
            2 => Channel::Stderr,
            3 => Channel::Status,
            4 => Channel::Resize,
            255 => Channel::Close,
            _ => return None,
        })
    }
}

/// One exec/attach message: a channel and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: Channel,
    pub data: Bytes,
}

impl Frame {
    pub fn new(channel: Channel, data: impl Into<Bytes>) -> Frame {
        Frame {
            channel,
            data: data.into(),
        }
    }

    /// The message that closes `channel` (`[255, channel]`).
    pub fn close(channel: Channel) -> Frame {
        Frame::new(Channel::Close, vec![channel.byte()])
    }

    /// A resize message.
    pub fn resize(size: TermSize) -> Frame {
        Frame::new(Channel::Resize, size.to_json())
    }

    /// A status message.
    pub fn status(status: &ExitStatus) -> Frame {
        Frame::new(Channel::Status, status.to_json())
    }

    /// The bytes of the binary message.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + self.data.len());
        b.put_u8(self.channel.byte());
        b.extend_from_slice(&self.data);
        b.freeze()
    }

    /// Read a binary message.
    pub fn decode(msg: &Bytes) -> Result<Frame, WireError> {
        let Some(&first) = msg.first() else {
            return Err(err("an empty message has no channel"));
        };
        let channel =
            Channel::from_byte(first).ok_or_else(|| err(format!("unknown channel {first}")))?;
        Ok(Frame {
            channel,
            data: msg.slice(1..),
        })
    }

    /// For a close message: the channel it closes.
    pub fn closed_channel(&self) -> Option<Channel> {
        if self.channel != Channel::Close {
            return None;
        }
        self.data.first().and_then(|b| Channel::from_byte(*b))
    }
}

/// A terminal size, as Kubernetes sends it on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TermSize {
    pub fn to_json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(b: &[u8]) -> Result<TermSize, WireError> {
        serde_json::from_slice(b).map_err(|e| err(format!("resize: {e}")))
    }
}

/// How an exec or attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    ExitCode(i32),
    /// It could not run, or failed otherwise: the message says why.
    Failure(String),
}

const NON_ZERO: &str = "command terminated with non-zero exit code: ";

#[derive(Serialize, Deserialize, Default)]
struct Status {
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
}

#[derive(Serialize, Deserialize, Default)]
struct Details {
    #[serde(default)]
    causes: Vec<Cause>,
}

#[derive(Serialize, Deserialize, Default)]
struct Cause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl ExitStatus {
    /// The status of an exit code.
    pub fn from_code(code: i32) -> ExitStatus {
        if code == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::ExitCode(code)
        }
    }

    /// The exit code, when there is one.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Success => Some(0),
            ExitStatus::ExitCode(c) => Some(*c),
            ExitStatus::Failure(_) => None,
        }
    }

    /// `metav1.Status` JSON, as Kubernetes writes it on the status channel.
    pub fn to_json(&self) -> Bytes {
        let s = match self {
            ExitStatus::Success => Status {
                status: "Success".into(),
                ..Default::default()
            },
            ExitStatus::ExitCode(c) => Status {
                status: "Failure".into(),
                message: Some(format!("{NON_ZERO}{c}")),
                reason: Some("NonZeroExitCode".into()),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode".into()),
                        message: Some(c.to_string()),
                    }],
                }),
                ..Default::default()
            },
            ExitStatus::Failure(m) => Status {
                status: "Failure".into(),
                message: Some(m.clone()),
                ..Default::default()
            },
        };
        Bytes::from(serde_json::to_vec(&s).unwrap_or_default())
    }

    /// Read a status message.
    pub fn from_json(b: &[u8]) -> Result<ExitStatus, WireError> {
        let s: Status =
            serde_json::from_slice(b).map_err(|e| err(format!("status is not JSON: {e}")))?;
        match s.status.as_str() {
            "Success" => Ok(ExitStatus::Success),
            "Failure" => {
                if s.reason.as_deref() == Some("NonZeroExitCode") {
                    let code = s
                        .details
                        .iter()
                        .flat_map(|d| &d.causes)
                        .find(|c| c.reason.as_deref() == Some("ExitCode"))
                        .and_then(|c| c.message.as_deref())
                        .and_then(|m| m.trim().parse::<i32>().ok());
                    if let Some(code) = code {
                        return Ok(ExitStatus::from_code(code));
                    }
                }
                Ok(ExitStatus::Failure(
                    s.message.unwrap_or_else(|| "failed".to_string()),
                ))
            }
            other => Err(err(format!(
                "status {other:?} is neither Success nor Failure"
            ))),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Success => f.write_str("exit code 0"),
            ExitStatus::ExitCode(c) => write!(f, "exit code {c}"),
            ExitStatus::Failure(m) => f.write_str(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "7f0c1f5e-2a9d-4c4e-9a43-8f3c0e2d1b6a";

    fn target() -> Target {
        Target {
            pod_uid: UID.into(),
            namespace: "team-a".into(),
            pod_name: "web-0".into(),
        }
    }

    #[test]
    fn exec_query_round_trip() {
        let r = ExecRequest {
            target: target(),
            container: "main".into(),
            command: vec!["sh".into(), "-c".into(), "echo a&b=c; exit 3".into()],
            tty: true,
            stdin: false,
        };
        let q = r.to_query();
        assert!(
            q.contains("command=sh&command=-c&command=echo+a%26b%3Dc"),
            "{q}"
        );
        assert_eq!(ExecRequest::from_query(&q).unwrap(), r);
        let a = AttachRequest {
            target: target(),
            container: "main".into(),
            tty: false,
            stdin: true,
        };
        assert_eq!(AttachRequest::from_query(&a.to_query()).unwrap(), a);
        let p = PortForwardRequest {
            target: target(),
            port: 8080,
        };
        assert_eq!(PortForwardRequest::from_query(&p.to_query()).unwrap(), p);
    }

    #[test]
    fn bad_queries_say_why() {
        let ok = format!("podUID={UID}&namespace=ns&podName=p&container=c");
        let cases = [
            (ok.clone(), "command is required"),
            (format!("{ok}&command="), "program is empty"),
            (format!("{ok}&command=ls&tty=yes"), "tty=\"yes\""),
            (format!("{ok}&command=ls&container=d"), "more than once"),
            (
                "podUID=../x&namespace=ns&podName=p&container=c&command=ls".to_string(),
                "podUID",
            ),
            (
                format!("podUID={UID}&namespace=NS&podName=p&container=c&command=ls"),
                "namespace",
            ),
            (
                format!("podUID={UID}&namespace=ns&podName=p&container=../c&command=ls"),
                "container \"../c\"",
            ),
            (
                format!("podUID={UID}&podName=p&container=c&command=ls"),
                "namespace is required",
            ),
            (
                format!("podUID={UID}&namespace=ns&podName=p&container=c&command=a%00b"),
                "NUL",
            ),
        ];
        for (q, want) in cases {
            let e = ExecRequest::from_query(&q).unwrap_err();
            assert!(e.0.contains(want), "{q}: {e}");
        }
        for (q, want) in [
            (
                format!("podUID={UID}&namespace=ns&podName=p"),
                "port is required",
            ),
            (
                format!("podUID={UID}&namespace=ns&podName=p&port=0"),
                "port 0",
            ),
            (
                format!("podUID={UID}&namespace=ns&podName=p&port=70000"),
                "\"70000\"",
            ),
        ] {
            let e = PortForwardRequest::from_query(&q).unwrap_err();
            assert!(e.0.contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn framing() {
        let f = Frame::new(Channel::Stdout, &b"hello"[..]);
        let wire = f.encode();
        assert_eq!(&wire[..], b"\x01hello");
        assert_eq!(Frame::decode(&wire).unwrap(), f);
        let c = Frame::close(Channel::Stdin);
        assert_eq!(&c.encode()[..], &[255, 0]);
        assert_eq!(
            Frame::decode(&c.encode()).unwrap().closed_channel(),
            Some(Channel::Stdin)
        );
        let r = Frame::resize(TermSize {
            width: 80,
            height: 24,
        });
        assert_eq!(&r.encode()[..], b"\x04{\"Width\":80,\"Height\":24}");
        assert_eq!(
            TermSize::from_json(&Frame::decode(&r.encode()).unwrap().data).unwrap(),
            TermSize {
                width: 80,
                height: 24
            }
        );
        assert!(Frame::decode(&Bytes::new()).is_err());
        assert!(Frame::decode(&Bytes::from_static(b"\x07x")).is_err());
        assert_eq!(
            Frame::decode(&Bytes::from_static(b"\x00"))
                .unwrap()
                .data
                .len(),
            0
        );
    }

    #[test]
    fn status_json_as_kubernetes_sends_it() {
        assert_eq!(
            &ExitStatus::Success.to_json()[..],
            br#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            std::str::from_utf8(&ExitStatus::ExitCode(3).to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            std::str::from_utf8(&ExitStatus::Failure("no such container".into()).to_json())
                .unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"no such container"}"#
        );
        for s in [
            ExitStatus::Success,
            ExitStatus::ExitCode(3),
            ExitStatus::ExitCode(-1),
            ExitStatus::Failure("x".into()),
        ] {
            assert_eq!(ExitStatus::from_json(&s.to_json()).unwrap(), s);
        }
        // what a kubelet writes for an exit code, with the API's other fields
        let k = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
        assert_eq!(ExitStatus::from_json(k).unwrap(), ExitStatus::ExitCode(7));
        assert_eq!(ExitStatus::from_code(0), ExitStatus::Success);
        assert!(ExitStatus::from_json(b"nope").is_err());
        assert!(ExitStatus::from_json(br#"{"status":"Maybe"}"#).is_err());
    }
}
