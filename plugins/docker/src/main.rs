//! `interlink-docker`: the Docker plugin served over HTTP (see the library docs).
//! Flags and the config file are the kit's (`--config`, `--listen`,
//! `--data-root`, `--log`); the plugin's own keys are in the `docker:` section.

use std::sync::Arc;

use anyhow::Context;
use interlink_plugin_docker::{Config, DockerProvider};
use interlink_plugin_kit::cli::{self, Info};

fn main() -> anyhow::Result<()> {
    cli::run::<Config, _, _, _>(
        Info::new(
            "interlink-docker",
            "interLink plugin running pods as containers through the Docker Engine API (Docker or podman)",
        ),
        |s| async move {
            s.plugin
                .validate()
                .map_err(anyhow::Error::msg)
                .context("invalid config")?;
            let root = std::fs::canonicalize(&s.data_root)
                .with_context(|| format!("data root {}", s.data_root.display()))?;
            Ok(Arc::new(DockerProvider::open(s.plugin, &root)?))
        },
    )
}
