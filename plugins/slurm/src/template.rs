//! The admin's job script template (`job_script_template`), in the place of
//! upstream's Go-template `JobScriptTemplate`.
//!
//! Upstream's API server executes a Go template with the whole pod as data and
//! hands the text to the plugin, which runs it as the job script: every pod
//! field printed by the template becomes shell code. Here the template is a
//! file the site admin configures, read once when the plugin starts; it holds
//! `{{ .Variable }}` placeholders only (no other template code), and every
//! value that comes from a pod is inserted as one shell-quoted word, exactly as
//! the built-in script quotes it. Values are inserted in one pass, so a value
//! holding `{{ ... }}` is never read as a placeholder.
//!
//! Variables:
//! - `{{ .SbatchFlags }}`: the `#SBATCH` lines (job name, output file, the
//!   admin's, flavor's and allowed pod flags), each on its own line. Put them
//!   right after the `#!` line: sbatch stops reading `#SBATCH` at the first command.
//! - `{{ .Job }}`: the job itself (pod directory, helpers, pre-exec, init
//!   containers, containers, probes): required, exactly once.
//! - `{{ .Shell }}`: the config's `shell` (for the `#!` line).
//! - `{{ .PodName }}`, `{{ .PodNamespace }}`, `{{ .PodUID }}` (upstream's
//!   `.Pod.Name`, `.Pod.Namespace`, `.Pod.UID` are accepted too), `{{ .JobName }}`,
//!   `{{ .PodDir }}`: one shell-quoted word each.

use std::path::Path;

/// A problem with the template file (reported when the plugin starts).
#[derive(Debug, thiserror::Error)]
#[error("job_script_template {path}: {msg}")]
pub struct TemplateError {
    pub path: String,
    pub msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    SbatchFlags,
    Job,
    Shell,
    PodName,
    PodNamespace,
    PodUid,
    JobName,
    PodDir,
}

const VARS: &[(&str, Var)] = &[
    ("SbatchFlags", Var::SbatchFlags),
    ("Job", Var::Job),
    ("Shell", Var::Shell),
    ("PodName", Var::PodName),
    ("Pod.Name", Var::PodName),
    ("PodNamespace", Var::PodNamespace),
    ("Pod.Namespace", Var::PodNamespace),
    ("PodUID", Var::PodUid),
    ("Pod.UID", Var::PodUid),
    ("JobName", Var::JobName),
    ("PodDir", Var::PodDir),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a job gives the template's variables (as the built-in script has them).
pub struct Values<'a> {
    pub shell: &'a str,
    pub sbatch: &'a str,
    pub body: &'a str,
    pub pod_name: &'a str,
    pub pod_namespace: &'a str,
    pub pod_uid: &'a str,
    pub job_name: &'a str,
    pub pod_dir: &'a str,
}

impl Template {
    /// Read and check the admin's template file.
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let err = |msg: String| TemplateError {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Template::parse(&text).map_err(err)
    }

    /// Parse template text: `{{ .Name }}` placeholders, nothing else.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a \"{{\" without \"}}\"".to_string())?;
            let inner = after[..close]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-');
            let name = inner.trim();
            let var = name
                .strip_prefix('.')
                .and_then(|n| VARS.iter().find(|(k, _)| *k == n))
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!(
                        "{{{{ {name} }}}} is not a variable of the slurm plugin's job script \
                         template (only placeholders, no template code: {})",
                        VARS.iter()
                            .map(|(k, _)| format!(".{k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let jobs = parts.iter().filter(|p| **p == Part::Var(Var::Job)).count();
        if jobs != 1 {
            return Err(format!(
                "{{{{ .Job }}}} must appear exactly once (it runs the pod's containers), found {jobs}"
            ));
        }
        Ok(Template { parts })
    }

    /// The job script: the admin's text with the values in place.
    pub fn render(&self, v: &Values<'_>) -> String {
        use crate::script::sh_quote;
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::SbatchFlags) => out.push_str(v.sbatch.trim_end_matches('\n')),
                Part::Var(Var::Job) => out.push_str(v.body),
                Part::Var(Var::Shell) => out.push_str(v.shell),
                Part::Var(Var::PodName) => out.push_str(&sh_quote(v.pod_name)),
                Part::Var(Var::PodNamespace) => out.push_str(&sh_quote(v.pod_namespace)),
                Part::Var(Var::PodUid) => out.push_str(&sh_quote(v.pod_uid)),
                Part::Var(Var::JobName) => out.push_str(&sh_quote(v.job_name)),
                Part::Var(Var::PodDir) => out.push_str(&sh_quote(v.pod_dir)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(name: &'a str) -> Values<'a> {
        Values {
            shell: "/bin/bash",
            sbatch: "#SBATCH --job-name=ns-p\n#SBATCH --time=10\n",
            body: "echo body\n",
            pod_name: name,
            pod_namespace: "ns",
            pod_uid: "u1",
            job_name: "ns-p",
            pod_dir: "/data/pods/u1",
        }
    }

    #[test]
    fn placeholders_are_filled_and_pod_values_quoted() {
        let t = Template::parse(
            "#!{{ .Shell }}\n{{.SbatchFlags}}\nmodule load site\necho start {{ .Pod.Name }} in {{ .PodNamespace }} at {{ .PodDir }}\n{{ .Job }}",
        )
        .unwrap();
        let out = t.render(&values("$(reboot) {{ .Job }}"));
        assert_eq!(
            out,
            "#!/bin/bash\n#SBATCH --job-name=ns-p\n#SBATCH --time=10\nmodule load site\n\
             echo start '$(reboot) {{ .Job }}' in ns at /data/pods/u1\necho body\n"
        );
    }

    #[test]
    fn anything_but_a_variable_is_refused() {
        for (text, says) in [
            (
                "{{ .Job }}{{ .Pod.Spec.Containers }}",
                "Pod.Spec.Containers",
            ),
            ("{{ .Job }}{{ range .Containers }}x{{ end }}", "range"),
            ("{{ .Job }} {{ .Job }}", "exactly once"),
            ("echo no job", "exactly once"),
            ("{{ .Job }} {{ .PodName ", "without"),
        ] {
            let e = Template::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.tmpl");
        std::fs::write(&p, "{{ .Pod.Spec }}").unwrap();
        let e = Template::load(&p).unwrap_err().to_string();
        assert!(e.contains("job.tmpl") && e.contains("Pod.Spec"), "{e}");
        assert!(Template::load(&dir.path().join("none")).is_err());
    }
}
