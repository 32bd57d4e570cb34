//! The Slurm plugin of interLink: each pod becomes one Slurm job.
//!
//! - [`config`]: the `slurm:` section of the config file.
//! - [`resources`]: flavors and resources to `#SBATCH` flags; [`sbatch_flags`]:
//!   sbatch's option syntax, for the flags pods may give.
//! - [`volumes`], [`env`]: the kit's pod model (ConfigMaps/Secrets/projected maps,
//!   downward API) as files, mounts and job-script env.
//! - [`script`]: the job script; [`files`]: what it writes for the plugin to read.
//! - [`subpath_exec`]: the job's helper that binds volume subPaths safely.
//! - [`slurm`]: sbatch/squeue/scontrol/scancel; [`jobinfo`]: parsing their answers.
//! - [`status`]: container states; [`logs`]: container logs; [`store`]: persisted pods.
//! - [`provider`]: the [`Provider`](interlink_plugin_kit::Provider) tying them together.

pub mod config;
pub mod env;
pub mod exec;
pub mod files;
pub mod jobinfo;
pub mod logs;
pub mod probes;
pub mod provider;
pub mod resources;
pub mod sbatch_flags;
pub mod script;
pub mod slurm;
pub mod status;
pub mod store;
pub mod subpath_exec;
pub mod template;
pub mod volumes;

pub use config::SlurmConfig;
pub use interlink_plugin_kit::LogStream;
pub use provider::SlurmProvider;

impl interlink_plugin_kit::config::PluginSettings for SlurmConfig {
    const SECTION: &'static str = "slurm";
}
