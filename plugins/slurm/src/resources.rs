//! From a pod to Slurm resources: quantities, the flavor, and the `#SBATCH` flags.

use std::collections::BTreeMap;

use interlink_plugin_kit::quantity::{InvalidQuantity, parse_scaled};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::config::{Flavor, SlurmConfig, VALUE_LISTED};
use crate::sbatch_flags::{self, SbatchOpt};

pub const ANN_FLAGS: &str = "slurm-job.vk.io/flags";
pub const ANN_PRE_EXEC: &str = "slurm-job.vk.io/pre-exec";
pub const ANN_FLAVOR: &str = "slurm-job.vk.io/flavor";
pub const ANN_SINGULARITY_OPTIONS: &str = "slurm-job.vk.io/singularity-options";
pub const ANN_SINGULARITY_MOUNTS: &str = "slurm-job.vk.io/singularity-mounts";
pub const ANN_MPI_FLAGS: &str = "slurm-job.vk.io/mpi-flags";
pub const ANN_IMAGE_ROOT: &str = "slurm-job.vk.io/image-root";
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// What a pod asks for, summed as Kubernetes does: regular containers add up,
/// an init container counts alone (they run one at a time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
}

impl PodResources {
    pub fn cpus(&self) -> u32 {
        self.cpu_millis.div_ceil(1000) as u32
    }
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes.div_ceil(1 << 20)
    }
}

/// The Slurm side of a pod: the chosen flavor and every `#SBATCH` flag, in order
/// (later flags override earlier ones in sbatch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobResources {
    pub flavor: Option<String>,
    pub flags: Vec<String>,
}

fn container_resources(c: &Container) -> Result<PodResources, String> {
    let mut r = PodResources::default();
    let Some(res) = &c.resources else {
        return Ok(r);
    };
    let pick = |name: &str| -> Option<&Quantity> {
        res.requests
            .as_ref()
            .and_then(|m| m.get(name))
            .or_else(|| res.limits.as_ref().and_then(|m| m.get(name)))
    };
    let ctx = |e: InvalidQuantity| format!("container {:?}: {e}", c.name);
    if let Some(q) = pick("cpu") {
        r.cpu_millis = parse_scaled(&q.0, 1000.0).map_err(ctx)?;
    }
    if let Some(q) = pick("memory") {
        r.memory_bytes = parse_scaled(&q.0, 1.0).map_err(ctx)?;
    }
    // GPUs are extended resources: limits are what counts (requests must equal them).
    let gpu = res
        .limits
        .as_ref()
        .and_then(|m| m.get(GPU_RESOURCE))
        .or_else(|| res.requests.as_ref().and_then(|m| m.get(GPU_RESOURCE)));
    if let Some(q) = gpu {
        r.gpus = parse_scaled(&q.0, 1.0).map_err(ctx)?;
    }
    Ok(r)
}

/// What the whole pod asks for.
pub fn pod_resources(pod: &Pod) -> Result<PodResources, String> {
    let Some(spec) = &pod.spec else {
        return Ok(PodResources::default());
    };
    let mut sum = PodResources::default();
    for c in &spec.containers {
        let r = container_resources(c)?;
        sum.cpu_millis += r.cpu_millis;
        sum.memory_bytes += r.memory_bytes;
        sum.gpus += r.gpus;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_resources(c)?;
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.max(r.memory_bytes);
        sum.gpus = sum.gpus.max(r.gpus);
    }
    Ok(sum)
}

fn fits(f: &Flavor, r: &PodResources) -> bool {
    (r.gpus == 0 || f.gpus > 0)
        && (f.cpus == 0 || f.cpus >= r.cpus())
        && (f.memory_mib == 0 || f.memory_mib >= r.memory_mib())
}

/// Choose the flavor: the annotation's, else the default one when the pod fits it,
/// else the smallest flavor that fits, else the default.
pub fn choose_flavor<'a>(
    flavors: &'a BTreeMap<String, Flavor>,
    default: Option<&'a str>,
    annotation: Option<&str>,
    r: &PodResources,
) -> Result<Option<(&'a str, &'a Flavor)>, String> {
    if let Some(name) = annotation.map(str::trim).filter(|s| !s.is_empty()) {
        return match flavors.get_key_value(name) {
            Some((k, f)) => Ok(Some((k.as_str(), f))),
            None => Err(format!(
                "unknown flavor {name:?} in {ANN_FLAVOR} (configured: {})",
                if flavors.is_empty() {
                    "none".to_string()
                } else {
                    flavors.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )),
        };
    }
    let default = default.and_then(|d| flavors.get_key_value(d));
    if let Some((k, f)) = default
        && fits(f, r)
    {
        return Ok(Some((k.as_str(), f)));
    }
    let size = |f: &Flavor| {
        (
            f.gpus,
            if f.cpus == 0 { u32::MAX } else { f.cpus },
            if f.memory_mib == 0 {
                u64::MAX
            } else {
                f.memory_mib
            },
        )
    };
    let best = flavors
        .iter()
        .filter(|(_, f)| fits(f, r))
        .min_by_key(|(_, f)| size(f));
    Ok(best.or(default).map(|(k, f)| (k.as_str(), f)))
}

/// A flag must look like one (`-x`, `--long[=value]`) and be one line.
pub fn check_flag(f: &str) -> Result<(), String> {
    if !f.starts_with('-') || f.len() < 2 {
        return Err(format!("sbatch flag {f:?} must start with '-'"));
    }
    if f.chars().any(|c| c.is_control()) {
        return Err(format!("sbatch flag {f:?} must be a single line"));
    }
    Ok(())
}

/// Split an options line into flags: words separated by blanks, quotes group
/// words; a word that is not a flag is the value of the flag before it (`-p debug`).
/// For lines the admin trusts (`slurm-job.vk.io/singularity-options` when allowed);
/// a pod's sbatch flags go through [`pod_flags`].
pub fn split_flags(s: &str) -> Result<Vec<String>, String> {
    let words = split_words(s).map_err(|e| format!("{e} in {ANN_FLAGS}: {s:?}"))?;
    let mut flags: Vec<String> = Vec::new();
    for w in words {
        if w.starts_with('-') {
            flags.push(w);
        } else if let Some(last) = flags.last_mut() {
            last.push(' ');
            last.push_str(&w);
        } else {
            return Err(format!(
                "{ANN_FLAGS}: {w:?} is not a flag (flags start with '-')"
            ));
        }
    }
    for f in &flags {
        check_flag(f).map_err(|e| format!("{ANN_FLAGS}: {e}"))?;
    }
    Ok(flags)
}

/// Split a line into words: separated by blanks, quotes group words (no
/// escapes, no expansion: the words are data).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unbalanced quote".into());
    }
    if in_word {
        words.push(cur);
    }
    if words.iter().any(|w| w.chars().any(|c| c.is_control())) {
        return Err("control character".into());
    }
    Ok(words)
}

/// The values a pod may give to a value-listed option (`partition`, `account`,
/// `qos`): the admin's list, plus the config's own default.
fn allowed_values<'a>(cfg: &'a SlurmConfig, name: &str) -> Vec<&'a str> {
    let (list, own) = match name {
        "partition" => (&cfg.allowed_partitions, cfg.partition.as_str()),
        "account" => (&cfg.allowed_accounts, cfg.account.as_str()),
        _ => (&cfg.allowed_qos, ""),
    };
    list.iter()
        .map(String::as_str)
        .chain((!own.is_empty()).then_some(own))
        .collect()
}

/// Whether the admin lets pods give this option (by its canonical long name).
fn pod_may_give(cfg: &SlurmConfig, name: &str) -> bool {
    cfg.allowed_pod_flags
        .iter()
        .filter_map(|f| sbatch_flags::lookup(f))
        .any(|o| o.canonical == name)
}

/// Check one option a pod gives against the admin's policy.
fn check_pod_flag(cfg: &SlurmConfig, o: &SbatchOpt) -> Result<(), String> {
    if let Some((_, key)) = VALUE_LISTED.iter().find(|(n, _)| *n == o.name) {
        let allowed = allowed_values(cfg, o.name);
        let value = o.value.as_deref().unwrap_or_default();
        for v in value.split(',') {
            if !allowed.contains(&v) {
                return Err(format!(
                    "{ANN_FLAGS}: {}: {} {v:?} is not one pods may use (the site admin lists them in {key}: {})",
                    o.describe(),
                    o.name,
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
        return Ok(());
    }
    if !pod_may_give(cfg, o.name) {
        let mut allowed: Vec<String> = cfg
            .allowed_pod_flags
            .iter()
            .map(|f| format!("--{}", f.trim_start_matches('-')))
            .collect();
        allowed.extend(
            VALUE_LISTED
                .iter()
                .filter(|(n, _)| !allowed_values(cfg, n).is_empty())
                .map(|(n, _)| format!("--{n} (listed values)")),
        );
        return Err(format!(
            "{ANN_FLAGS}: sbatch option {} is not allowed for pods (the site admin allows: {}; config key allowed_pod_flags)",
            o.describe(),
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        ));
    }
    Ok(())
}

/// The pod's `slurm-job.vk.io/flags`, read as sbatch reads options, each checked
/// against the admin's policy and written back as one canonical `#SBATCH` argument.
pub fn pod_flags(cfg: &SlurmConfig, annotation: &str) -> Result<Vec<String>, String> {
    let opts = sbatch_flags::parse(annotation).map_err(|e| format!("{ANN_FLAGS}: {e}"))?;
    opts.iter()
        .map(|o| check_pod_flag(cfg, o).map(|()| o.directive()))
        .collect()
}

/// Every `#SBATCH` flag of the pod's job (without output/job name, which the
/// script adds): config defaults, resources, flavor flags, then the pod's own.
pub fn job_resources(cfg: &SlurmConfig, pod: &Pod) -> Result<JobResources, String> {
    let ann = pod.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    let r = pod_resources(pod)?;
    let flavor = choose_flavor(
        &cfg.flavors,
        cfg.default_flavor.as_deref(),
        get(ANN_FLAVOR),
        &r,
    )?;

    let mut flags = Vec::new();
    if !cfg.partition.is_empty() {
        flags.push(format!("--partition={}", cfg.partition));
    }
    if !cfg.account.is_empty() {
        flags.push(format!("--account={}", cfg.account));
    }
    if !cfg.time.is_empty() {
        flags.push(format!("--time={}", cfg.time));
    }
    // the pod's own deadline, in Slurm's whole minutes
    if let Some(d) = pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .filter(|d| *d > 0)
    {
        flags.push(format!("--time={}", (d as u64).div_ceil(60)));
    }
    let fl = flavor.map(|(_, f)| f);
    let cpus = if r.cpu_millis > 0 {
        r.cpus()
    } else {
        fl.map_or(0, |f| f.cpus)
    };
    if cpus > 0 {
        flags.push(format!("--cpus-per-task={cpus}"));
    }
    let mem = if r.memory_bytes > 0 {
        r.memory_mib()
    } else {
        fl.map_or(0, |f| f.memory_mib)
    };
    if mem > 0 {
        flags.push(format!("--mem={mem}M"));
    }
    let gpus = if r.gpus > 0 {
        r.gpus
    } else {
        fl.map_or(0, |f| f.gpus as u64)
    };
    if gpus > 0 {
        flags.push(format!("--gres=gpu:{gpus}"));
    }
    flags.extend(cfg.extra_flags.iter().cloned());
    if let Some(f) = fl {
        flags.extend(f.flags.iter().cloned());
    }
    if let Some(a) = get(ANN_FLAGS) {
        flags.extend(pod_flags(cfg, a)?);
    }
    Ok(JobResources {
        flavor: flavor.map(|(k, _)| k.to_string()),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_totals_follow_kubernetes() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3", "memory": "64Mi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "700m", "memory": "512Mi", "nvidia.com/gpu": "2"}}}
        ]}}));
        let r = pod_resources(&p).unwrap();
        assert_eq!(r.cpu_millis, 3000); // init container's 3 > 1.2
        assert_eq!(r.memory_mib(), 1536);
        assert_eq!(r.gpus, 2);
        let bad = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "x"}}}]}}),
        );
        assert!(pod_resources(&bad).unwrap_err().contains("\"a\""));
    }

    fn flavors() -> BTreeMap<String, Flavor> {
        let mut m = BTreeMap::new();
        m.insert(
            "small".into(),
            Flavor {
                cpus: 1,
                memory_mib: 2048,
                ..Default::default()
            },
        );
        m.insert(
            "large".into(),
            Flavor {
                cpus: 16,
                memory_mib: 65536,
                ..Default::default()
            },
        );
        m.insert(
            "gpu".into(),
            Flavor {
                cpus: 8,
                memory_mib: 0,
                gpus: 1,
                flags: vec!["--qos=gpu".into()],
            },
        );
        m
    }

    #[test]
    fn flavor_choice() {
        let f = flavors();
        let none = PodResources::default();
        let pick = |ann: Option<&str>, r: &PodResources| {
            choose_flavor(&f, Some("small"), ann, r)
                .unwrap()
                .map(|(k, _)| k.to_string())
        };
        assert_eq!(pick(None, &none).as_deref(), Some("small"));
        assert_eq!(pick(Some("large"), &none).as_deref(), Some("large"));
        let four = PodResources {
            cpu_millis: 4000,
            ..Default::default()
        };
        assert_eq!(pick(None, &four).as_deref(), Some("large"));
        let gpu = PodResources {
            gpus: 1,
            ..Default::default()
        };
        assert_eq!(pick(None, &gpu).as_deref(), Some("gpu"));
        let huge = PodResources {
            cpu_millis: 64000,
            ..Default::default()
        };
        assert_eq!(pick(None, &huge).as_deref(), Some("small")); // nothing fits: default
        let err = choose_flavor(&f, None, Some("medium"), &none).unwrap_err();
        assert!(err.contains("medium") && err.contains("small"), "{err}");
        assert_eq!(
            choose_flavor(&BTreeMap::new(), None, None, &none).unwrap(),
            None
        );
    }

    #[test]
    fn flags_annotation() {
        assert_eq!(
            split_flags("--qos=x  -p debug --comment='a b'").unwrap(),
            vec!["--qos=x", "-p debug", "--comment=a b"]
        );
        assert!(split_flags("debug").is_err());
        assert!(split_flags("--x='open").is_err());
        assert!(split_flags("--comment=\"a\nb\"").is_err());
        assert!(split_flags("").unwrap().is_empty());
    }

    #[test]
    fn job_flags_in_order() {
        let cfg = SlurmConfig {
            partition: "debug".into(),
            account: "proj".into(),
            time: "00:10:00".into(),
            extra_flags: vec!["--exclusive".into()],
            flavors: flavors(),
            default_flavor: Some("small".into()),
            allowed_qos: vec!["urgent".into()],
            ..Default::default()
        };
        let p = pod(json!({"metadata": {"name": "p", "annotations": {
                "slurm-job.vk.io/flags": "--qos=urgent --mem=3G"}},
            "spec": {"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}));
        let j = job_resources(&cfg, &p).unwrap();
        assert_eq!(j.flavor.as_deref(), Some("gpu"));
        assert_eq!(
            j.flags,
            vec![
                "--partition=debug",
                "--account=proj",
                "--time=00:10:00",
                "--cpus-per-task=8",
                "--gres=gpu:2",
                "--exclusive",
                "--qos=gpu",
                "--qos=urgent",
                "--mem=3G"
            ]
        );
        let p = pod(json!({"metadata": {"name": "p"},
            "spec": {"activeDeadlineSeconds": 90,
                     "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "100M"}}}]}}));
        let j = job_resources(&cfg, &p).unwrap();
        assert_eq!(j.flavor.as_deref(), Some("small"));
        assert!(j.flags.contains(&"--cpus-per-task=1".to_string()));
        assert!(j.flags.contains(&"--mem=96M".to_string()));
        let times: Vec<&String> = j
            .flags
            .iter()
            .filter(|f| f.starts_with("--time="))
            .collect();
        assert_eq!(
            times,
            ["--time=00:10:00", "--time=2"],
            "the pod's deadline comes last and wins"
        );
    }

    fn policy() -> SlurmConfig {
        SlurmConfig {
            partition: "debug".into(),
            allowed_partitions: vec!["gpu".into(), "long".into()],
            allowed_accounts: vec!["proj".into()],
            ..Default::default()
        }
    }

    #[test]
    fn pods_get_only_allow_listed_flags() {
        let cfg = policy();
        assert_eq!(
            pod_flags(&cfg, "--time=5 -C 'a|b' --gres gpu:1 -N1 --time-m=2").unwrap(),
            [
                "--time=5",
                "--constraint=\"a|b\"",
                "--gres=gpu:1",
                "--nodes=1",
                "--time-min=2"
            ]
        );
        // the attacks of security issue 8, each refused naming the flag
        for (flags, names) in [
            ("--uid=0", "--uid=0"),
            ("--ui=0", "--ui=0 (--uid)"),
            ("--gid 0", "--gid 0"),
            ("--export=ALL,BASH_ENV=/x/volumes/cm/env", "--export=ALL"),
            ("--export-f=/x", "--export-f=/x (--export-file)"),
            ("--export-file=/etc/x", "--export-file"),
            ("--output=/etc/x", "--output=/etc/x"),
            ("-o/etc/x", "-o/etc/x (--output)"),
            ("--error /etc/x", "--error"),
            ("-D /", "(--chdir)"),
            ("--wrap='id'", "--wrap"),
            ("--get-user-env", "--get-user-env"),
            ("--nice=-1000", "--nice"),
            ("--reservation=x", "--reservation"),
            ("--time=5 -Hi/etc/shadow", "-i/etc/shadow (--input)"),
        ] {
            let e = pod_flags(&cfg, flags).unwrap_err();
            assert!(
                e.contains(names) && e.contains("not allowed") && e.contains("allowed_pod_flags"),
                "{flags}: {e}"
            );
        }
        // value-listed options: only the admin's values (and the config's own)
        assert_eq!(
            pod_flags(&cfg, "-pgpu --partition=debug --account=proj -p long,gpu").unwrap(),
            [
                "--partition=gpu",
                "--partition=debug",
                "--account=proj",
                "--partition=long,gpu"
            ]
        );
        for (flags, what) in [
            ("-pX", "-pX (--partition): partition \"X\""),
            ("--part=gpu,secret", "partition \"secret\""),
            ("-A other", "account \"other\""),
            ("--qos=high", "qos \"high\""),
            ("--partition=", "partition \"\""),
        ] {
            let e = pod_flags(&cfg, flags).unwrap_err();
            assert!(e.contains(what) && e.contains("allowed_"), "{flags}: {e}");
        }
        assert!(
            pod_flags(&cfg, "--qos=high")
                .unwrap_err()
                .contains("allowed_qos: none")
        );
        // syntax errors and newlines, from the parser, name the annotation
        let e = pod_flags(&cfg, "--time=5\n#SBATCH --uid=0").unwrap_err();
        assert!(
            e.contains(ANN_FLAGS) && e.contains("control character"),
            "{e}"
        );
        let e = pod_flags(&cfg, "--time=5 debug").unwrap_err();
        assert!(e.contains("not a flag"), "{e}");
        let e = pod_flags(&cfg, "--exp=ALL,BASH_ENV=/x").unwrap_err();
        assert!(e.contains("--exp=ALL") && e.contains("ambiguous"), "{e}");
        let e = pod_flags(&cfg, "--nosuch=1").unwrap_err();
        assert!(e.contains("--nosuch=1"), "{e}");
    }

    #[test]
    fn the_admin_decides_which_flags() {
        let cfg = SlurmConfig {
            allowed_pod_flags: vec!["--exclusive".into(), "tasks-per-node".into()],
            ..Default::default()
        };
        assert_eq!(
            pod_flags(&cfg, "--exclusive --ntasks-per-node=2").unwrap(),
            ["--exclusive", "--ntasks-per-node=2"]
        );
        let e = pod_flags(&cfg, "--time=5").unwrap_err();
        assert!(e.contains("--exclusive, --tasks-per-node"), "{e}");
        let none = SlurmConfig {
            allowed_pod_flags: vec![],
            ..Default::default()
        };
        let e = pod_flags(&none, "--time=5").unwrap_err();
        assert!(e.contains("allows: none"), "{e}");
    }
}
