//! The one-node Slurm cluster of scripts/slurm-start.sh for the tests: find its
//! controller (or skip, or fail under `INTERLINK_REQUIRE_BACKENDS=1`), write an
//! `interlink-slurm` config for it and start the plugin on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::{Proc, backends_required, bin, free_port, wait_for_tcp};

/// Where the cluster's config is (`$SLURM_CONF`, else the one of
/// scripts/slurm-start.sh), if a controller answers `scontrol ping`.
///
/// Otherwise: panics when backends are required (`INTERLINK_REQUIRE_BACKENDS=1`),
/// else prints `SKIP: <what>: <why>` and gives `None`.
pub fn slurm_conf(what: &str) -> Option<PathBuf> {
    let conf = std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/slurm-local/cluster/etc/slurm.conf"));
    let why = if !conf.exists() {
        format!(
            "no Slurm config at {} (run scripts/slurm-start.sh)",
            conf.display()
        )
    } else {
        match Command::new("scontrol")
            .arg("ping")
            .env("SLURM_CONF", &conf)
            .output()
        {
            Err(e) => format!("scontrol not runnable: {e}"),
            Ok(o) if String::from_utf8_lossy(&o.stdout).contains("is UP") => return Some(conf),
            Ok(o) => format!(
                "slurmctld is not up: {}",
                String::from_utf8_lossy(&o.stdout).trim()
            ),
        }
    };
    if backends_required() {
        panic!("Slurm is required (INTERLINK_REQUIRE_BACKENDS=1) but unavailable: {why}");
    }
    eprintln!("SKIP: {what}: {why}");
    None
}

/// An `interlink-slurm` config for the cluster of `conf`: partition `debug`,
/// 5 minutes, logs polled every 100 ms, then `extra` (lines indented under
/// `slurm:`, e.g. `"  container_runtime: none\n"`).
pub fn plugin_config(conf: &Path, extra: &str) -> String {
    format!(
        "slurm:\n  slurm_conf: {}\n  partition: debug\n  time: \"00:05:00\"\n  log_poll_ms: 100\n{extra}",
        conf.display()
    )
}

/// A running `interlink-slurm` on 127.0.0.1:`port`, stopped when dropped.
pub struct SlurmPlugin {
    pub proc: Proc,
    pub port: u16,
}

/// Start `interlink-slurm` on a free TCP port with [`plugin_config`]`(conf,
/// extra)` written to `<dir>/plugin.yaml`, its data root `<dir>/root`, its
/// output in `<dir>/plugin.log`, `env` added to its environment; wait until
/// it listens.
pub fn start_plugin(
    conf: &Path,
    dir: &Path,
    extra: &str,
    env: &[(String, String)],
) -> Result<SlurmPlugin> {
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("plugin.yaml");
    std::fs::write(&cfg, plugin_config(conf, extra))?;
    let port = free_port();
    let mut cmd = Command::new(bin("interlink-slurm"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-root")
        .arg(dir.join("root"))
        .env("RUST_LOG", "info,interlink_plugin_slurm=debug")
        .envs(env.iter().cloned());
    let proc = Proc::spawn("interlink-slurm", cmd, &dir.join("plugin.log"))?;
    wait_for_tcp(port, Duration::from_secs(20))?;
    Ok(SlurmPlugin { proc, port })
}
