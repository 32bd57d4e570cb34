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
    /// `enroot import` + `enroot create` + `enroot start` (as upstream's Slurm
    /// plugin's `ContainerRuntime: enroot`); the container's root filesystem is
    /// removed when it ends.
    Enroot,
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
            ContainerRuntime::Enroot => "enroot",
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

/// The sbatch options pods may give by default: what the job needs and where it
/// may run among the nodes its partition offers, never who it runs as, its
/// environment, files, partition, account or QOS.
pub const DEFAULT_POD_FLAGS: &[&str] = &[
    "time",
    "time-min",
    "begin",
    "deadline",
    "hold",
    "signal",
    "requeue",
    "no-requeue",
    "comment",
    "constraint",
    "prefer",
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "cpus-per-task",
    "mincpus",
    "mem",
    "mem-per-cpu",
    "tmp",
    "gres",
    "gres-flags",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "cpus-per-gpu",
    "mem-per-gpu",
    "hint",
    "threads-per-core",
    "nodelist",
    "exclude",
];

/// Options a pod can take only from a list of values, and the config key of the list.
pub const VALUE_LISTED: &[(&str, &str)] = &[
    ("partition", "allowed_partitions"),
    ("account", "allowed_accounts"),
    ("qos", "allowed_qos"),
];

/// Options that stop sbatch from submitting (or from answering with a job id):
/// never allowed in jobs' scripts.
pub const NEVER_FLAGS: &[&str] = &[
    "help",
    "usage",
    "version",
    "parsable",
    "test-only",
    "wait",
    "wrap",
];

/// What the plugin answers at `/status` ping (upstream's `PingResponse`): the
/// node's capacity and taints as the site admin states them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingConfig {
    /// The virtual node's capacity; a field left out is measured (the sum of
    /// the nodes' `CPUTot`/`RealMemory`, stable totals, never what is free).
    pub resources: PingResourcesConfig,
    /// Taints advertised on the virtual node; unset = leave the node's taints
    /// alone, `[]` = clear them (upstream's `Taints`).
    pub taints: Option<Vec<TaintConfig>>,
}

/// Configured capacity (Kubernetes quantities: `"128"`, `"512Gi"`, `"110"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingResourcesConfig {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pods: Option<String>,
    /// Accelerators: `{resource_type: nvidia.com/gpu, available: "8"}`.
    pub accelerators: Vec<AcceleratorConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcceleratorConfig {
    pub resource_type: String,
    pub available: String,
}

/// A taint on the virtual node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaintConfig {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
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
    /// Flags added to every job (the admin's: taken as written, one line each).
    pub extra_flags: Vec<String>,
    /// The sbatch options pods may give in `slurm-job.vk.io/flags`, by long name
    /// (`time`, `--gres`...); the default is [`DEFAULT_POD_FLAGS`]. Abbreviations
    /// and short forms count as the option they stand for.
    pub allowed_pod_flags: Vec<String>,
    /// The partitions a pod may ask for with `--partition`/`-p` (and the config's
    /// own `partition`); none by default. The plugin submits as root, so Slurm's
    /// own access checks do not protect these.
    pub allowed_partitions: Vec<String>,
    /// The accounts a pod may charge with `--account`/`-A` (and the config's own).
    pub allowed_accounts: Vec<String>,
    /// The QOSes a pod may ask for with `--qos`/`-q`.
    pub allowed_qos: Vec<String>,
    /// Shell run by every job before its containers, on the node, as the job's
    /// user (root): the admin's. Empty = none.
    pub pre_exec: String,
    /// Also run a pod's `slurm-job.vk.io/pre-exec` annotation (after `pre_exec`):
    /// lets every pod author run shell on the nodes outside any container.
    pub allow_pre_exec_annotation: bool,
    /// Also take a pod's `slurm-job.vk.io/singularity-options` annotation (after
    /// `runtime_options`): lets every pod author give apptainer/singularity options
    /// such as `--bind /:/host`.
    pub allow_singularity_options_annotation: bool,
    /// Host directories under which pods may mount `hostPath` volumes (absolute;
    /// the path is normalised before it is compared); none by default.
    pub allowed_host_paths: Vec<PathBuf>,
    /// Also take a pod's `slurm-job.vk.io/singularity-mounts` annotation (binds
    /// of the node's paths, apptainer/singularity only).
    pub allow_singularity_mounts_annotation: bool,
    /// Also take a pod's `slurm-job.vk.io/mpi-flags` annotation: the container
    /// is started under `mpi_command` followed by the pod's flags (words, each
    /// quoted); mpiexec runs on the node, outside the container, so off by default.
    pub allow_mpi_flags_annotation: bool,
    /// The MPI launcher put before the container runtime for pods with
    /// `slurm-job.vk.io/mpi-flags` (the admin's; `${SLURM_NTASKS:-1}` is expanded by the job: Slurm sets it only with `--ntasks`).
    pub mpi_command: Vec<String>,
    /// Binds added to every apptainer/singularity/enroot container, `HOST:CONTAINER[:ro]`
    /// (the admin's; upstream's `slurm-job.vk.io/singularity-mounts`).
    pub singularity_mounts: Vec<String>,
    /// Where images are taken from for apptainer/singularity/enroot: a prefix put
    /// before image names without a scheme (`/cvmfs/unpacked.cern.ch/`, a SIF
    /// directory, `docker://registry.site/`); replaces `image_prefix` when set.
    pub image_root: Option<String>,
    /// Other image roots a pod may choose with `slurm-job.vk.io/image-root`
    /// (exact values); none by default, so the annotation is refused.
    pub allowed_image_roots: Vec<String>,
    /// Run the containers' liveness/readiness/startup probes and postStart/preStop
    /// exec hooks in the job (upstream's `EnableProbes`).
    pub enable_probes: bool,
    /// A job script template file (the admin's, read at start): see
    /// [`crate::template`] for its variables. Unset = the built-in script.
    pub job_script_template: Option<PathBuf>,
    /// What `/status` ping answers.
    pub ping: PingConfig,
    /// Named flavors.
    pub flavors: BTreeMap<String, Flavor>,
    /// The flavor used when the pod names none and its resources do not pick one.
    pub default_flavor: Option<String>,
    /// How images are run.
    pub container_runtime: ContainerRuntime,
    /// Options put after `apptainer exec` / `singularity exec` / `podman run` (the admin's).
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
            allowed_pod_flags: DEFAULT_POD_FLAGS.iter().map(|s| s.to_string()).collect(),
            allowed_partitions: Vec::new(),
            allowed_accounts: Vec::new(),
            allowed_qos: Vec::new(),
            pre_exec: String::new(),
            allow_pre_exec_annotation: false,
            allow_singularity_options_annotation: false,
            allowed_host_paths: Vec::new(),
            allow_singularity_mounts_annotation: false,
            allow_mpi_flags_annotation: false,
            mpi_command: vec!["mpiexec".into(), "-np".into(), "${SLURM_NTASKS:-1}".into()],
            singularity_mounts: Vec::new(),
            image_root: None,
            allowed_image_roots: Vec::new(),
            enable_probes: true,
            job_script_template: None,
            ping: PingConfig::default(),
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
        for f in &self.allowed_pod_flags {
            let Some(o) = crate::sbatch_flags::lookup(f) else {
                return Err(ConfigError(format!(
                    "allowed_pod_flags: {f:?} is not an sbatch option (give its full long name, e.g. \"time\")"
                )));
            };
            if let Some((_, key)) = VALUE_LISTED.iter().find(|(n, _)| *n == o.canonical) {
                return Err(ConfigError(format!(
                    "allowed_pod_flags: {f:?} grants access by its value: list the values pods may use in {key} instead"
                )));
            }
            if NEVER_FLAGS.contains(&o.canonical) {
                return Err(ConfigError(format!(
                    "allowed_pod_flags: {f:?} would stop sbatch from submitting the job"
                )));
            }
        }
        for (key, list) in [
            ("allowed_partitions", &self.allowed_partitions),
            ("allowed_accounts", &self.allowed_accounts),
            ("allowed_qos", &self.allowed_qos),
        ] {
            for v in list {
                if v.is_empty()
                    || v.contains(',')
                    || v.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(ConfigError(format!(
                        "{key}: {v:?} must be one name, without spaces or commas"
                    )));
                }
            }
        }
        for m in &self.singularity_mounts {
            if m.is_empty() || m.chars().any(|c| c.is_control()) || !m.starts_with('/') {
                return Err(ConfigError(format!(
                    "singularity_mounts: {m:?} must be HOST:CONTAINER[:ro] with an absolute host path"
                )));
            }
        }
        if self.mpi_command.is_empty() {
            return Err(ConfigError("mpi_command must not be empty".into()));
        }
        for t in self.ping.taints.iter().flatten() {
            if t.key.is_empty()
                || !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&t.effect.as_str())
            {
                return Err(ConfigError(format!(
                    "ping.taints: {t:?} needs a key and an effect (NoSchedule, PreferNoSchedule or NoExecute)"
                )));
            }
        }
        for p in &self.allowed_host_paths {
            if !p.is_absolute() {
                return Err(ConfigError(format!(
                    "allowed_host_paths: {} must be an absolute path",
                    p.display()
                )));
            }
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
    fn upstream_feature_keys() {
        let c: SlurmConfig = serde_yaml::from_str(
            r#"
container_runtime: enroot
image_root: /cvmfs/unpacked.cern.ch/
allowed_image_roots: [/sif/]
singularity_mounts: ["/cvmfs:/cvmfs:ro"]
allow_singularity_mounts_annotation: true
allow_mpi_flags_annotation: true
mpi_command: [srun, --mpi=pmix]
enable_probes: false
job_script_template: /etc/interlink/job.tmpl
ping:
  resources: {cpu: "64", memory: 256Gi}
  taints: [{key: a, effect: NoExecute}]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.container_runtime, ContainerRuntime::Enroot);
        assert!(!c.enable_probes && SlurmConfig::default().enable_probes);
        let bad = |yaml: &str, says: &str| {
            let c: SlurmConfig = serde_yaml::from_str(yaml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        };
        bad("singularity_mounts: [cvmfs]", "absolute host path");
        bad("ping: {taints: [{key: a, effect: Never}]}", "NoSchedule");
        bad("mpi_command: []", "mpi_command");
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

    #[test]
    fn pod_policy_keys() {
        let c: SlurmConfig = serde_yaml::from_str(
            r#"
allowed_pod_flags: [time, "--gres", exclusive]
allowed_partitions: [gpu]
allowed_accounts: [proj]
allowed_qos: [normal]
pre_exec: "module load apptainer"
allow_pre_exec_annotation: true
allow_singularity_options_annotation: true
allowed_host_paths: [/scratch]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.allowed_host_paths, vec![PathBuf::from("/scratch")]);
        // the defaults: a safe list of flags, nothing else
        let d = SlurmConfig::default();
        assert!(d.allowed_pod_flags.iter().any(|f| f == "time"));
        assert!(d.allowed_pod_flags.iter().any(|f| f == "gres"));
        assert!(d.allowed_pod_flags.iter().any(|f| f == "constraint"));
        for f in &d.allowed_pod_flags {
            let o = crate::sbatch_flags::lookup(f).unwrap();
            assert!(
                ![
                    "uid",
                    "gid",
                    "export",
                    "export-file",
                    "output",
                    "error",
                    "input",
                    "chdir",
                    "get-user-env",
                    "partition",
                    "account",
                    "qos",
                    "nice",
                    "priority"
                ]
                .contains(&o.canonical),
                "{f}"
            );
        }
        assert!(d.allowed_partitions.is_empty() && d.allowed_host_paths.is_empty());
        assert!(!d.allow_pre_exec_annotation && !d.allow_singularity_options_annotation);
        d.validate().unwrap();

        let bad = |c: SlurmConfig, what: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        bad(
            SlurmConfig {
                allowed_pod_flags: vec!["tim".into()],
                ..Default::default()
            },
            "\"tim\" is not an sbatch option",
        );
        bad(
            SlurmConfig {
                allowed_pod_flags: vec!["partition".into()],
                ..Default::default()
            },
            "allowed_partitions",
        );
        bad(
            SlurmConfig {
                allowed_pod_flags: vec!["wait".into()],
                ..Default::default()
            },
            "stop sbatch",
        );
        bad(
            SlurmConfig {
                allowed_qos: vec!["a,b".into()],
                ..Default::default()
            },
            "allowed_qos",
        );
        bad(
            SlurmConfig {
                allowed_host_paths: vec!["scratch".into()],
                ..Default::default()
            },
            "absolute",
        );
    }
}
