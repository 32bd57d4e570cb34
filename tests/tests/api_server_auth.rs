//! Authentication of the `interlink` API server: static tokens from a file
//! reloaded on change, OIDC JWTs checked against a JWKS (file, or the issuer's
//! discovery document), 401 vs 403, and a client whose token file is rotated
//! while it runs. The real `interlink` and `interlink-local` processes.

use std::time::Duration;

use interlink::client::{Client, ClientError};
use interlink_test_harness::apiserver::{
    Idp, Listen, ScriptedHttp, now, start_interlink, write_atomic,
};
use interlink_test_harness::plugin::start_local;
use serde_json::json;

const ISSUER: &str = "https://idp.example.test";

fn expect_status(
    r: Result<Option<interlink::PingResponse>, ClientError>,
    want: u16,
    contains: &str,
    case: &str,
) {
    match r {
        Err(ClientError::Unauthorized { status, message }) => {
            assert_eq!(status, want, "{case}: {message}");
            assert!(
                message.contains(contains),
                "{case}: message {message:?} lacks {contains:?}"
            );
        }
        other => panic!("{case}: expected {want}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    let idp = Idp::new(ISSUER, "key-1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# name per token\nstatic-secret-1 ci-runner\n").unwrap();
    let auth = format!(
        "Auth:\n  TokensFile: {}\n  OIDC:\n    Issuer: {ISSUER}\n    Audiences: [interlink]\n    JWKSFile: {}\n    AllowedSubjects: [cri-host]\n    AllowedGroups: [offload]\n",
        tokens.display(),
        jwks.display()
    );
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, &auth).unwrap();

    // the client's token file, rewritten between cases while the same client runs
    let token_file = dir.path().join("client.token");
    std::fs::write(&token_file, "placeholder").unwrap();
    let mut cfg = srv.client_config();
    cfg.token_file = Some(token_file.clone());
    let client = Client::new(cfg).unwrap();
    let no_token = Client::new(srv.client_config()).unwrap();

    let good = |sub: &str, extra: serde_json::Value| {
        let mut c = json!({"sub": sub, "aud": "interlink", "exp": now() + 300, "nbf": now() - 10});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        idp.mint(c)
    };

    // no token
    expect_status(
        no_token.ping().await,
        401,
        "missing bearer token",
        "no token",
    );
    // wrong token
    write_atomic(&token_file, "not-a-known-token").unwrap();
    expect_status(client.ping().await, 401, "unknown token", "wrong token");
    // the static token works
    write_atomic(&token_file, "static-secret-1\n").unwrap();
    client.ping().await.expect("static token");
    // a valid JWT for an allowed subject
    write_atomic(&token_file, &good("cri-host", json!({}))).unwrap();
    client.ping().await.expect("JWT for an allowed subject");
    // allowed through a group
    write_atomic(
        &token_file,
        &good("someone", json!({"groups": ["staff", "offload"]})),
    )
    .unwrap();
    client.ping().await.expect("JWT for an allowed group");
    // expired
    write_atomic(
        &token_file,
        &good(
            "cri-host",
            json!({"exp": now() - 3600, "nbf": now() - 7200}),
        ),
    )
    .unwrap();
    expect_status(client.ping().await, 401, "expired", "expired JWT");
    // not yet valid
    write_atomic(&token_file, &good("cri-host", json!({"nbf": now() + 3600}))).unwrap();
    expect_status(
        client.ping().await,
        401,
        "not yet valid",
        "nbf in the future",
    );
    // wrong audience
    write_atomic(
        &token_file,
        &good("cri-host", json!({"aud": "another-service"})),
    )
    .unwrap();
    expect_status(client.ping().await, 401, "audience", "wrong audience");
    // wrong issuer
    write_atomic(
        &token_file,
        &good("cri-host", json!({"iss": "https://evil.example"})),
    )
    .unwrap();
    expect_status(client.ping().await, 401, "issuer", "wrong issuer");
    // signed by a key the JWKS does not have
    let stranger = Idp::new(ISSUER, "key-1").unwrap();
    write_atomic(
        &token_file,
        &stranger.mint(json!({"sub": "cri-host", "aud": "interlink", "exp": now() + 300})),
    )
    .unwrap();
    expect_status(client.ping().await, 401, "signature", "foreign signature");
    // tampered payload
    let t = good("cri-host", json!({}));
    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
    parts[1] = good("admin", json!({}))
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    write_atomic(&token_file, &parts.join(".")).unwrap();
    expect_status(client.ping().await, 401, "signature", "tampered payload");
    // valid, but the subject is not on the allow-list
    write_atomic(
        &token_file,
        &good("unknown-user", json!({"groups": ["staff"]})),
    )
    .unwrap();
    expect_status(client.ping().await, 403, "not allowed", "unknown subject");

    // the server's tokens file is rotated: the new token works, the old one stops, no restart
    write_atomic(&tokens, "static-secret-2 ci-runner\n").unwrap();
    write_atomic(&token_file, "static-secret-1").unwrap();
    expect_status(
        client.ping().await,
        401,
        "unknown token",
        "revoked static token",
    );
    write_atomic(&token_file, "static-secret-2").unwrap();
    client.ping().await.expect("rotated static token");

    // the JWKS file is rotated to a new key: tokens of the new key work
    let idp2 = Idp::new(ISSUER, "key-2").unwrap();
    write_atomic(&jwks, &idp2.jwks()).unwrap();
    write_atomic(
        &token_file,
        &idp2.mint(json!({"sub": "cri-host", "aud": "interlink", "exp": now() + 300})),
    )
    .unwrap();
    client.ping().await.expect("token of the rotated JWKS key");

    // /healthz and /metrics need no token
    let raw = srv.raw();
    assert_eq!(raw.request("GET", "/healthz", None).unwrap().status, 200);
    let m = raw.request("GET", "/metrics", None).unwrap();
    assert!(
        m.text()
            .contains(r#"interlink_http_requests_total{endpoint="/pinglink",code="401"}"#)
    );
    // no token value ever reaches the log
    let log = srv.proc.output();
    for secret in ["static-secret-1", "static-secret-2", "not-a-known-token"] {
        assert!(!log.contains(secret), "token {secret} in the server log");
    }
    assert!(!log.contains(&t[..40]), "a JWT in the server log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_keys_from_the_issuer_discovery_document() {
    let dir = tempfile::tempdir().unwrap();
    let (_plugin, _) = start_local(dir.path()).unwrap();
    let sidecar = format!("unix://{}", dir.path().join("plugin.sock").display());
    // the issuer is the scripted server itself
    let idp_holder: std::sync::Arc<std::sync::Mutex<Option<(String, String)>>> = Default::default();
    let h = idp_holder.clone();
    let issuer_srv = ScriptedHttp::start(move |_m, path| {
        let (issuer, jwks) = h.lock().unwrap().clone().unwrap_or_default();
        match path {
            "/.well-known/openid-configuration" => Some((
                200,
                "application/json",
                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}).to_string(),
                Duration::ZERO,
            )),
            "/keys" => Some((200, "application/json", jwks, Duration::ZERO)),
            _ => Some((404, "text/plain", "no".into(), Duration::ZERO)),
        }
    })
    .unwrap();
    let issuer = issuer_srv.url();
    let idp = Idp::new(&issuer, "k1").unwrap();
    *idp_holder.lock().unwrap() = Some((issuer.clone(), idp.jwks()));
    let auth = format!("Auth:\n  OIDC:\n    Issuer: {issuer}\n    Audiences: interlink\n");
    let srv = start_interlink(dir.path(), "interlink", &Listen::Tcp, &sidecar, &auth).unwrap();

    let token_file = dir.path().join("client.token");
    std::fs::write(
        &token_file,
        idp.mint(json!({"sub": "anyone", "aud": "interlink", "exp": now() + 300})),
    )
    .unwrap();
    let mut cfg = srv.client_config();
    cfg.token_file = Some(token_file.clone());
    let client = Client::new(cfg).unwrap();
    // no allow-list: every valid token is allowed. A transport failure of the
    // very first connection (seen once in CI-like runs, not reproduced since:
    // "connection reset by peer" before the server logged the request) is
    // retried; an auth answer is never retried.
    let mut first = client.ping().await;
    for _ in 0..3 {
        match &first {
            Err(ClientError::Unreachable(e)) => {
                eprintln!("first ping unreachable, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                first = client.ping().await;
            }
            _ => break,
        }
    }
    first.expect("token verified with keys from the issuer");
    write_atomic(
        &token_file,
        &idp.mint(json!({"sub": "anyone", "aud": "other", "exp": now() + 300})),
    )
    .unwrap();
    expect_status(
        client.ping().await,
        401,
        "audience",
        "wrong audience (issuer keys)",
    );
}
