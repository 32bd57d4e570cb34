//! Authentication of API calls: static bearer tokens from a file and OIDC
//! JWTs. A missing or invalid token is 401, a valid but not allowed one 403.
//! Token values never reach a log line; the caller's name or subject does.

mod oidc;
mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

pub use oidc::Verdict;

use super::config::AuthConfig;
use super::error::json_error;

/// Who may call; `None` parts are not configured.
pub struct Authenticator {
    tokens: Option<tokens::TokensFile>,
    oidc: Option<oidc::Oidc>,
}

/// The authenticated caller, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

impl Authenticator {
    /// `Ok(None)` when no authentication is configured.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Arc<Self>>, String> {
        if cfg.tokens_file.is_none() && cfg.oidc.is_none() {
            return Ok(None);
        }
        let tokens = cfg
            .tokens_file
            .clone()
            .map(tokens::TokensFile::open)
            .transpose()?;
        let oidc = cfg.oidc.clone().map(oidc::Oidc::new).transpose()?;
        Ok(Some(Arc::new(Authenticator { tokens, oidc })))
    }

    /// Check a bearer token.
    pub async fn check(&self, token: &str) -> Verdict {
        if let Some(t) = &self.tokens
            && let Some(name) = t.check(token)
        {
            return Verdict::Allowed(name);
        }
        match &self.oidc {
            // three dot-separated parts: a JWT
            Some(o) if token.split('.').count() == 3 => o.verify(token).await,
            _ => Verdict::Invalid("unknown token".into()),
        }
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = json_error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Middleware: demand a valid bearer token.
pub async fn require(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        tracing::info!(%path, "refused: no bearer token");
        return unauthorized("missing bearer token (Authorization: Bearer ...)");
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        tracing::info!(%path, "refused: malformed Authorization header");
        return unauthorized("malformed Authorization header, expected \"Bearer <token>\"");
    };
    match auth.check(token).await {
        Verdict::Allowed(who) => {
            tracing::debug!(%path, caller = %who, "authenticated");
            req.extensions_mut().insert(Caller(who));
            next.run(req).await
        }
        Verdict::Invalid(why) => {
            tracing::info!(%path, reason = %why, "refused: invalid token");
            unauthorized(&why)
        }
        Verdict::Forbidden(why) => {
            tracing::info!(%path, reason = %why, "refused: not allowed");
            json_error(StatusCode::FORBIDDEN, &why)
        }
    }
}
