//! interLink plugin that runs each pod as containers through the Docker Engine
//! API: Docker itself or podman's Docker-compatible service.
//!
//! A pod is an infra container (network mode from the config, `none` by default)
//! that holds the pod's network, IPC and UTS namespaces, plus one engine container
//! per Kubernetes container joined to them with `container:<infra>`. Every engine
//! container carries the label `interlink.pod-uid`. Init containers run in order
//! (each must exit 0), then the regular containers start. Env, downward API and
//! volume contents come from the plugin kit's pod model. ConfigMap, Secret,
//! projected and downwardAPI volumes are written under
//! `<data-root>/pods/<uid>/volumes/` and bind mounted read-only; emptyDirs are directories there. State is persisted next to
//! them, so a restarted plugin keeps tracking (and finishes starting) its pods.

pub mod config;
pub mod engine;
pub mod exec;
pub mod provider;
pub mod spec;
pub mod state;
pub mod stats;
pub mod status;
pub mod volumes;

pub use config::Config;
pub use provider::DockerProvider;
