//! The plugin's configuration: Slurm defaults, flavors, container runtime, the
//! paths of the Slurm commands and the polling settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a container's image is run on the compute node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    /// `apptainer exec docker://IMAGE ...` (as upstream's Slurm plugin).
    #[default]
    Apptainer,
    /// `singularity exec docker://IMAGE ...`.
    Singularity,
    /// `podman run --rm IMAGE ...`.
    Podman,
    /// No container: the command runs directly on the node. Mount paths are not
    /// bound; volumes are found through `$INTERLINK_VOLUME_<NAME>` and `$INTERLINK_POD_DIR`.
    None,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Apptainer => "apptainer",
            ContainerRuntime::Singularity => "singularity",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::None => "none",
        }
    }
}

/// A named set of Slurm settings, chosen by the `slurm-job.vk.io/flavor`
/// annotation or by the pod's resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Flavor {
    /// CPUs per task when the pod asks for none; also the most this flavor offers
    /// when flavors are chosen by resources (0 = unbounded).
    pub cpus: u32,
    /// Memory in MiB when the pod asks for none; also the most this flavor offers (0 = unbounded).
    pub memory_mib: u64,
    /// GPUs (`--gres=gpu:N`) when the pod asks for none; a pod that asks for
    /// GPUs is given a flavor with GPUs.
    pub gpus: u32,
    /// Extra `#SBATCH` flags, e.g. `--qos=long`.
    pub flags: Vec<String>,
}

/// Everything the Slurm plugin reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    /// `#SBATCH --partition`; empty = Slurm's default partition.
    pub partition: String,
    /// `#SBATCH --account`; empty = none.
    pub account: String,
    /// `#SBATCH --time` (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH`...); empty = partition default.
    pub time: String,
    /// Flags added to every job.
    pub extra_flags: Vec<String>,
    /// Named flavors.
    pub flavors: BTreeMap<String, Flavor>,
    /// The flavor used when the pod names none and its resources do not pick one.
    pub default_flavor: Option<String>,
    /// How images are run.
    pub container_runtime: ContainerRuntime,
    /// Options put after `apptainer exec` / `singularity exec` / `podman run`.
    pub runtime_options: Vec<String>,
    /// Prefix of images for apptainer/singularity (`docker://`); images that already
    /// hold a scheme (`docker://`, `oras://`, a path to a `.sif`) are used as given.
    pub image_prefix: String,
    /// The shell the job script runs under (bash 5: `$EPOCHREALTIME` stamps log lines).
    pub shell: String,
    /// Prefix each container log line with its time in the job (a bash loop, about
    /// 30,000 lines/s); off = raw output, without `Timestamps`/`Since*` support.
    pub log_timestamps: bool,
    /// Commands, by name on `PATH` or absolute path.
    pub sbatch: String,
    pub squeue: String,
    pub scancel: String,
    pub scontrol: String,
    /// `SLURM_CONF` for the commands above; unset = inherit the plugin's environment.
    pub slurm_conf: Option<PathBuf>,
    /// How long one `squeue --json` answer is reused by concurrent status requests.
    pub status_cache_ms: u64,
    /// How often a following log request looks for new output.
    pub log_poll_ms: u64,
    /// Time limit of one Slurm command.
    pub command_timeout_s: u64,
    /// Directory for pod directories on a filesystem the compute nodes share;
    /// unset = `<data root>/pods`.
    pub pods_dir: Option<PathBuf>,
    /// This plugin's binary as the compute nodes see it (its `subpath-exec`
    /// subcommand binds volume subPaths for a container runtime); unset = the
    /// path the plugin runs from.
    pub subpath_helper: Option<PathBuf>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: String::new(),
            account: String::new(),
            time: String::new(),
            extra_flags: Vec::new(),
            flavors: BTreeMap::new(),
            default_flavor: None,
            container_runtime: ContainerRuntime::Apptainer,
            runtime_options: Vec::new(),
            image_prefix: "docker://".into(),
            shell: "/bin/bash".into(),
            log_timestamps: true,
            sbatch: "sbatch".into(),
            squeue: "squeue".into(),
            scancel: "scancel".into(),
            scontrol: "scontrol".into(),
            slurm_conf: None,
            status_cache_ms: 500,
            log_poll_ms: 200,
            command_timeout_s: 30,
            pods_dir: None,
            subpath_helper: None,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid slurm plugin configuration: {0}")]
pub struct ConfigError(pub String);

impl SlurmConfig {
    /// Check what serde cannot: flags look like flags, the default flavor exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(d) = &self.default_flavor
            && !self.flavors.contains_key(d)
        {
            return Err(ConfigError(format!(
                "default_flavor {d:?} is not one of the flavors ({})",
                self.flavors.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let all = self
            .extra_flags
            .iter()
            .chain(self.flavors.values().flat_map(|f| f.flags.iter()));
        for f in all {
            crate::resources::check_flag(f).map_err(ConfigError)?;
        }
        for (what, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time", &self.time),
        ] {
            if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError(format!("{what} {v:?} must not contain spaces")));
            }
        }
        for (what, v) in [
            ("sbatch", &self.sbatch),
            ("squeue", &self.squeue),
            ("scancel", &self.scancel),
            ("scontrol", &self.scontrol),
            ("shell", &self.shell),
        ] {
            if v.is_empty() {
                return Err(ConfigError(format!("{what} must not be empty")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_flavors() {
        let c: SlurmConfig = serde_yaml::from_str(
            r#"
partition: debug
time: "00:30:00"
container_runtime: none
flavors:
  small: { cpus: 1, memory_mib: 1024 }
  gpu: { gpus: 1, flags: ["--qos=gpu"] }
default_flavor: small
squeue: /usr/bin/squeue
"#,
        )
        .unwrap();
        assert_eq!(c.container_runtime, ContainerRuntime::None);
        assert_eq!(c.flavors["gpu"].flags, vec!["--qos=gpu"]);
        assert_eq!(c.sbatch, "sbatch");
        c.validate().unwrap();
    }

    #[test]
    fn the_example_config_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins/slurm.yaml"
        );
        let cfg: interlink_plugin_kit::config::Config<SlurmConfig> =
            interlink_plugin_kit::config::load(std::path::Path::new(path)).unwrap();
        cfg.plugin.validate().unwrap();
        assert_eq!(cfg.plugin.flavors["gpu"].gpus, 1);
        assert_eq!(cfg.plugin.default_flavor.as_deref(), Some("small"));
    }

    #[test]
    fn rejects_unknown_keys_and_default_flavor() {
        assert!(serde_yaml::from_str::<SlurmConfig>("partion: x").is_err());
        let c = SlurmConfig {
            default_flavor: Some("big".into()),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("big"));
        let c = SlurmConfig {
            extra_flags: vec!["qos=x".into()],
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
