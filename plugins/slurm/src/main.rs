//! `interlink-slurm`: the interLink plugin that runs each pod as one Slurm job.
//! Flags: `--config FILE` (section `slurm:`), `--listen ADDR`, `--data-root DIR`, `--log FILTER`.
//! `SBATCHPATH`/`SCANCELPATH` (the original interLink's variables) override `sbatch`/`scancel`.
//! `interlink-slurm subpath-exec ...` is the job scripts' subPath helper ([`subpath_exec`]).

use std::sync::Arc;

use interlink_plugin_kit::cli;
use interlink_plugin_slurm::subpath_exec;
use interlink_plugin_slurm::{SlurmConfig, SlurmProvider};

fn main() -> anyhow::Result<()> {
    // run by job scripts on compute nodes, in front of a container runtime
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == subpath_exec::SUBCOMMAND) {
        std::process::exit(subpath_exec::run(&args[2..]));
    }
    cli::run::<SlurmConfig, _, _, _>(
        cli::Info::new(
            "interlink-slurm",
            "interLink plugin: each pod runs as one Slurm job",
        ),
        |settings| async move {
            let mut plugin = settings.plugin;
            // the original interLink README's variables, still set by sites
            if let Some(p) = std::env::var_os("SBATCHPATH") {
                plugin.sbatch = p.to_string_lossy().into_owned();
            }
            if let Some(p) = std::env::var_os("SCANCELPATH") {
                plugin.scancel = p.to_string_lossy().into_owned();
            }
            let provider = SlurmProvider::new(plugin, &settings.data_root)?;
            provider.resume_deletes();
            {
                let reg = settings.metrics.registry();
                let mut reg = reg.lock().unwrap_or_else(|e| e.into_inner());
                provider.register_metrics(&mut reg);
            }
            Ok(Arc::new(provider))
        },
    )
}
