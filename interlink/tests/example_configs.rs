//! The example configurations in examples/interlink/ stay valid.

use std::path::PathBuf;

use interlink::server::ServerConfig;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/interlink")
        .join(name)
}

#[test]
fn examples_parse_and_check() {
    let plain = ServerConfig::from_yaml_file(example("InterLinkConfig.yaml")).unwrap();
    plain.check().unwrap();
    assert_eq!(plain.interlink_port, 3000);
    assert!(!plain.auth_enabled());
    let oidc = ServerConfig::from_yaml_file(example("oidc.example.yaml")).unwrap();
    oidc.check().unwrap();
    let o = oidc.auth.oidc.as_ref().unwrap();
    assert_eq!(o.audiences, vec!["interlink"]);
    assert_eq!(o.allowed_groups, vec!["interlink-offload"]);
    let tokens = std::fs::read_to_string(example("tokens.example")).unwrap();
    assert!(
        tokens
            .lines()
            .any(|l| l.starts_with("example-token-change-me-1 "))
    );
}
