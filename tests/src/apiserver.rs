//! Helpers for the API server tests: start the `interlink` binary with a
//! config, make a PKI with rcgen, mint JWTs and a JWKS, a tiny scripted HTTP
//! server (fake issuer, misbehaving plugins), and client configs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use interlink::PodCreateRequests;
use interlink::client::ClientConfig;

use crate::plugin::PodBuilder;
use crate::{Proc, bin, free_port, wait_for_tcp, wait_for_unix_socket};

/// How the API server listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp,
    Tls,
    Unix(PathBuf),
}

/// A running `interlink` process.
pub struct ApiServer {
    pub proc: Proc,
    /// `http://127.0.0.1`, `https://127.0.0.1` or `unix:///path`.
    pub address: String,
    pub port: Option<u16>,
    pub config: PathBuf,
}

impl ApiServer {
    /// A client config pointing at this server (no token, no TLS files).
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            address: self.address.clone(),
            port: self.port,
            request_timeout: Duration::from_secs(20),
            ..Default::default()
        }
    }

    /// A raw HTTP client (for malformed requests).
    pub fn raw(&self) -> crate::plugin::PluginClient {
        match self.port {
            Some(p) => crate::plugin::PluginClient::tcp(p),
            None => crate::plugin::PluginClient::unix(Path::new(
                self.address.trim_start_matches("unix://"),
            )),
        }
    }
}

/// Write `<dir>/<name>.yaml` with `InterlinkAddress`/`InterlinkPort` for
/// `listen`, `SidecarURL` = `sidecar`, plus `extra` YAML lines, and start the
/// server; waits until it listens.
pub fn start_interlink(
    dir: &Path,
    name: &str,
    listen: &Listen,
    sidecar: &str,
    extra: &str,
) -> Result<ApiServer> {
    let (address, port, head) = match listen {
        Listen::Tcp => {
            let p = free_port();
            (
                "http://127.0.0.1".to_string(),
                Some(p),
                format!("InterlinkAddress: http://127.0.0.1\nInterlinkPort: \"{p}\"\n"),
            )
        }
        Listen::Tls => {
            let p = free_port();
            (
                "https://127.0.0.1".to_string(),
                Some(p),
                format!("InterlinkAddress: https://127.0.0.1\nInterlinkPort: {p}\n"),
            )
        }
        Listen::Unix(s) => (
            format!("unix://{}", s.display()),
            None,
            format!(
                "InterlinkAddress: unix://{}\nInterlinkPort: 0\n",
                s.display()
            ),
        ),
    };
    let yaml = format!(
        "{head}SidecarURL: \"{sidecar}\"\nSidecarPort: \"0\"\nDataRootFolder: {}\nShutdownGraceSeconds: 3\n{extra}",
        dir.join("interlink-data").display()
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml)?;
    let mut cmd = std::process::Command::new(bin("interlink"));
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,interlink=debug");
    let mut proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
    let ready = match (listen, port) {
        (Listen::Unix(s), _) => wait_for_unix_socket(s, Duration::from_secs(20)),
        (_, Some(p)) => wait_for_tcp(p, Duration::from_secs(20)),
        _ => unreachable!(),
    };
    if let Err(e) = ready {
        let out = proc.output();
        proc.stop(Duration::from_secs(1));
        bail!("{e}; interlink output:\n{out}");
    }
    Ok(ApiServer {
        proc,
        address,
        port,
        config,
    })
}

/// The `/create` body for a pod built with the plugin helpers.
pub fn create_request(b: &PodBuilder) -> PodCreateRequests {
    PodCreateRequests {
        pod: b.pod.clone(),
        configmaps: b.config_maps.clone(),
        secrets: b.secrets.clone(),
        ..Default::default()
    }
}

/// Certificates made with rcgen: a CA, a server certificate for
/// `127.0.0.1`/`localhost`, a client certificate, and a second unrelated CA
/// with its own client certificate.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca_cert: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

fn ca(name: &str) -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(rcgen::CertifiedIssuer::self_signed(
        p,
        rcgen::KeyPair::generate()?,
    )?)
}

fn leaf(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    names: &[&str],
    cn: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub fn make_pki(dir: &Path) -> Result<Pki> {
    let ca1 = ca("interlink test CA")?;
    let ca2 = ca("some other CA")?;
    let (sc, sk) = leaf(
        &ca1,
        &["127.0.0.1", "localhost"],
        "interlink",
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (cc, ck) = leaf(
        &ca1,
        &["cri-host"],
        "cri-host",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let (oc, ok) = leaf(
        &ca2,
        &["intruder"],
        "intruder",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let w = |name: &str, text: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    Ok(Pki {
        ca_cert: w("ca.pem", &ca1.pem())?,
        server_cert: w("server.pem", &sc)?,
        server_key: w("server-key.pem", &sk)?,
        client_cert: w("client.pem", &cc)?,
        client_key: w("client-key.pem", &ck)?,
        other_ca_cert: w("other-ca.pem", &ca2.pem())?,
        other_client_cert: w("other-client.pem", &oc)?,
        other_client_key: w("other-client-key.pem", &ok)?,
    })
}

/// An identity provider's signing key (ES256), its JWKS and token minting.
pub struct Idp {
    pub issuer: String,
    pub kid: String,
    key: jsonwebtoken::EncodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
}

impl Idp {
    pub fn new(issuer: &str, kid: &str) -> Result<Idp> {
        let kp = rcgen::KeyPair::generate()?;
        let key = jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes())?;
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)?;
        jwk.common.key_id = Some(kid.to_string());
        Ok(Idp {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            key,
            jwk,
        })
    }

    /// The JWKS document (one key).
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.jwk] }).to_string()
    }

    /// A signed token with these claims (`iss` and `kid` filled in unless given).
    pub fn mint(&self, mut claims: serde_json::Value) -> String {
        if claims.get("iss").is_none() {
            claims["iss"] = self.issuer.clone().into();
        }
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, &claims, &self.key).expect("sign")
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A scripted HTTP/1.1 server on 127.0.0.1 (one thread): `answer(method,
/// path)` gives `Some((status, content_type, body, delay))`, or `None` to
/// accept and never answer. Stops when dropped.
pub struct ScriptedHttp {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

pub type Answer = Option<(u16, &'static str, String, Duration)>;

impl ScriptedHttp {
    pub fn start(
        answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
    ) -> Result<ScriptedHttp> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let answer = answer.clone();
                let stop3 = stop2.clone();
                held.push(std::thread::spawn(move || {
                    let _ = serve_one(s, &*answer, &stop3);
                }));
            }
        });
        Ok(ScriptedHttp { port, stop })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ScriptedHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    s: std::net::TcpStream,
    answer: &dyn Fn(&str, &str) -> Answer,
    stop: &AtomicBool,
) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        if stop.load(Ordering::Relaxed) {
            // stopped: close without answering, like a process that died
            return Ok(());
        }
        match answer(&method, &path) {
            Some((status, ct, text, delay)) => {
                std::thread::sleep(delay);
                write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )?;
                w.flush()?;
            }
            None => {
                // hold the connection open without answering
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Ok(());
            }
        }
    }
}

/// Write `text` to `path` atomically (write + rename), as a token refresher does.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
