//! OIDC JWT validation: signature against a JWKS (a file reloaded on change,
//! or fetched from the issuer), `iss`, `aud`, `exp`/`nbf`, then an allow-list
//! of subjects or groups.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::server::config::OidcConfig;

/// How often a URL-sourced JWKS is refetched at most when an unknown key id shows up.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Age after which a URL-sourced JWKS is refetched anyway.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The outcome of checking a JWT.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and allowed; the subject.
    Allowed(String),
    /// Not a valid token (401).
    Invalid(String),
    /// Valid but not on the allow-list (403).
    Forbidden(String),
}

enum Source {
    File {
        path: PathBuf,
        stamp: Option<(Option<SystemTime>, u64, u64)>,
    },
    Url {
        url: Option<String>,
        http: reqwest::Client,
        fetched: Option<Instant>,
        tried: Option<Instant>,
    },
}

pub struct Oidc {
    cfg: OidcConfig,
    keys: RwLock<Arc<Vec<Jwk>>>,
    source: tokio::sync::Mutex<Source>,
}

const ALLOWED_ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Parse a JWKS document, skipping keys this library cannot use.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys: Vec<Jwk> = set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| DecodingKey::from_jwk(k).is_ok())
        .collect();
    Ok(keys)
}

fn http_client(cfg: &OidcConfig) -> Result<reqwest::Client, String> {
    let provider = crate::tls::provider();
    let roots = match &cfg.ca_cert_file {
        Some(p) => crate::tls::root_store_from(p)?,
        None => crate::tls::webpki_roots(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("OIDC http client: {e}"))
}

impl Oidc {
    /// Set up from the config; a JWKS file must load now, a URL is fetched on
    /// first use (and retried) so the server can start before the issuer.
    pub fn new(cfg: OidcConfig) -> Result<Self, String> {
        let source = if let Some(path) = &cfg.jwks_file {
            Source::File {
                path: path.clone(),
                stamp: None,
            }
        } else {
            Source::Url {
                url: cfg.jwks_url.clone(),
                http: http_client(&cfg)?,
                fetched: None,
                tried: None,
            }
        };
        let oidc = Oidc {
            cfg,
            keys: RwLock::new(Arc::new(Vec::new())),
            source: tokio::sync::Mutex::new(source),
        };
        if let Source::File { path, stamp } = &mut *oidc.source.try_lock().expect("fresh") {
            let (keys, s) = load_file(path)?;
            *oidc.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
            *stamp = Some(s);
        }
        Ok(oidc)
    }

    fn current(&self) -> Arc<Vec<Jwk>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reload the keys if their source changed; `unknown_kid` asks a URL source
    /// to refetch early (rate-limited).
    async fn refresh(&self, unknown_kid: bool) {
        let mut src = self.source.lock().await;
        match &mut *src {
            Source::File { path, stamp } => {
                let now = file_stamp(path).ok();
                if now.is_some() && now == *stamp {
                    return;
                }
                match load_file(path) {
                    Ok((keys, s)) => {
                        tracing::info!(file = %path.display(), keys = keys.len(), "JWKS file loaded");
                        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                        *stamp = Some(s);
                    }
                    Err(e) => tracing::warn!("{e}; keeping the previous keys"),
                }
            }
            Source::Url {
                url,
                http,
                fetched,
                tried,
            } => {
                let stale = fetched.is_none_or(|f| f.elapsed() > MAX_AGE);
                let may_retry = tried.is_none_or(|t| t.elapsed() > REFETCH_MIN_INTERVAL);
                let first = fetched.is_none() && tried.is_none();
                if !(first || (stale && may_retry) || (unknown_kid && may_retry)) {
                    return;
                }
                *tried = Some(Instant::now());
                match fetch(http, url, &self.cfg.issuer).await {
                    Ok(keys) => {
                        tracing::info!(keys = keys.len(), "JWKS fetched from the issuer");
                        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                        *fetched = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!("cannot fetch the JWKS: {e}"),
                }
            }
        }
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
        let keys = self.current();
        let usable = |k: &&Jwk| {
            k.common
                .key_algorithm
                .is_none_or(|a| a.to_string() == format!("{alg:?}"))
        };
        match kid {
            Some(kid) => keys
                .iter()
                .filter(usable)
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            None => {
                let mut it = keys.iter().filter(usable);
                let first = it.next().cloned();
                // without a kid, only an unambiguous set is usable
                if it.next().is_some() { None } else { first }
            }
        }
    }

    /// Check a JWT.
    pub async fn verify(&self, token: &str) -> Verdict {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return Verdict::Invalid("malformed token".into()),
        };
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Verdict::Invalid(format!("token algorithm {:?} is not accepted", header.alg));
        }
        self.refresh(false).await;
        let kid = header.kid.as_deref();
        let jwk = match self.find(kid, header.alg) {
            Some(k) => k,
            None => {
                self.refresh(true).await;
                match self.find(kid, header.alg) {
                    Some(k) => k,
                    None => return Verdict::Invalid("no known key signed this token".into()),
                }
            }
        };
        let key = match DecodingKey::from_jwk(&jwk) {
            Ok(k) => k,
            Err(_) => return Verdict::Invalid("signing key unusable".into()),
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&self.cfg.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = self.cfg.leeway();
        let claims = match jsonwebtoken::decode::<serde_json::Value>(token, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".to_string(),
                    ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_string(),
                    ErrorKind::InvalidAudience => "token audience is not accepted".to_string(),
                    ErrorKind::InvalidIssuer => "token issuer is not accepted".to_string(),
                    ErrorKind::InvalidSignature => "token signature is invalid".to_string(),
                    ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c:?} claim"),
                    ErrorKind::InvalidAlgorithm => {
                        "token algorithm does not match its key".to_string()
                    }
                    _ => "invalid token".to_string(),
                };
                return Verdict::Invalid(why);
            }
        };
        self.allow(&claims)
    }

    fn allow(&self, claims: &serde_json::Value) -> Verdict {
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string();
        let (subs, groups) = (&self.cfg.allowed_subjects, &self.cfg.allowed_groups);
        if subs.is_empty() && groups.is_empty() {
            return Verdict::Allowed(sub);
        }
        if !sub.is_empty() && subs.contains(&sub) {
            return Verdict::Allowed(sub);
        }
        let token_groups: HashSet<&str> = match claims.get(self.cfg.groups_claim()) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|g| g.as_str()).collect(),
            Some(serde_json::Value::String(s)) => [s.as_str()].into(),
            _ => HashSet::new(),
        };
        if groups.iter().any(|g| token_groups.contains(g.as_str())) {
            return Verdict::Allowed(sub);
        }
        Verdict::Forbidden(format!("subject {sub:?} is not allowed"))
    }
}

/// What identifies one version of a file (mtime, length, inode).
type Stamp = (Option<SystemTime>, u64, u64);

fn file_stamp(path: &PathBuf) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.modified().ok(), m.len(), m.ino()))
}

fn load_file(path: &PathBuf) -> Result<(Vec<Jwk>, Stamp), String> {
    let stamp = file_stamp(path).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    let bytes = std::fs::read(path).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    let keys = parse_jwks(&bytes).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    Ok((keys, stamp))
}

async fn fetch(
    http: &reqwest::Client,
    url: &mut Option<String>,
    issuer: &str,
) -> Result<Vec<Jwk>, String> {
    if url.is_none() {
        let disco = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: serde_json::Value = get(http, &disco).await.and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| format!("{disco}: not JSON: {e}"))
        })?;
        let jwks = doc
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .ok_or_else(|| format!("{disco}: no jwks_uri"))?;
        *url = Some(jwks.to_string());
    }
    let u = url.as_deref().unwrap_or_default();
    let bytes = get(http, u).await?;
    parse_jwks(&bytes).map_err(|e| format!("{u}: {e}"))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<bytes::Bytes, String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: status {}", resp.status()));
    }
    resp.bytes().await.map_err(|e| format!("{url}: {e}"))
}
