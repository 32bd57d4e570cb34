//! How one container becomes a command line on this host: argv, environment
//! and working directory, resolved at create time.
//!
//! - **No image isolation.** The image is recorded and reported, never pulled or
//!   used: `command` + `args` run as given, with this host's programs. A container
//!   with neither is refused (there is no image entrypoint to fall back to).
//! - **Mount paths.** There is no mount namespace, so a `volumeMount` cannot appear
//!   at its `mountPath`. Instead every absolute mount path found in `command`,
//!   `args`, `env` values and `workingDir` is rewritten to the volume's directory
//!   under the pod directory (a path-prefix match on whole path components: with
//!   a mount at `/etc/config`, `cat /etc/config/a.conf` becomes
//!   `cat <pod>/volumes/cfg/a.conf`, `/etc/configs` is left alone). Programs that
//!   build paths at run time can use `INTERLINK_MOUNTS`, which lists
//!   `mountPath=hostPath` pairs separated by `:`.
//! - **Environment.** Not inherited from the plugin. Each container gets `PATH`
//!   (the plugin's `path` setting, else the plugin's own `PATH`), `HOME` (its working
//!   directory), `HOSTNAME` (the pod name), `INTERLINK_POD_DIR`, `INTERLINK_MOUNTS`,
//!   then `envFrom` and `env` as the kit's pod model resolves them
//!   ([`interlink_plugin_kit::pod::env`]: Kubernetes' `$(VAR)` expansion and
//!   `valueFrom` of ConfigMap/Secret keys, downward-API fields, resource
//!   fields; the pod IP is the host's, see
//!   [`interlink_plugin_kit::pod::host`]).
//!   As in Kubernetes, `$(VAR)` is also expanded in `command` and `args`, and `$$`
//!   stands for a literal `$` (a shell's `$$` is written `$$$$`).
//! - **Working directory.** `<pod>/work`, shared by the pod's containers; a
//!   `workingDir` inside a mount maps to the volume, any other `workingDir` to
//!   `<pod>/work/<workingDir>` (created). A `workingDir` with a `..` component is
//!   refused: the directory made never lies outside those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use interlink_plugin_kit::pod::{self, Env, PodView};
use k8s_openapi::api::core::v1::Container;

use crate::state::Launch;

/// Why a container cannot be launched: a Kubernetes waiting reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError {
    pub reason: &'static str,
    pub message: String,
}

fn config_error(message: String) -> LaunchError {
    LaunchError {
        reason: "CreateContainerConfigError",
        message,
    }
}

/// A mount: the path the container asked for, the directory that stands for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub path: String,
    pub host: PathBuf,
}

/// The container's mounts, longest mount path first.
pub fn mounts(c: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<Mount> {
    let mut out: Vec<Mount> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let mut host = volumes.get(&m.name)?.clone();
            if let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host = host.join(sp);
            }
            let path = m.mount_path.trim_end_matches('/');
            let path = if path.is_empty() { "/" } else { path };
            Some(Mount {
                path: path.to_string(),
                host,
            })
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '~' | '+' | '@' | '%')
}

/// Replace every mount path that appears in `s` as a whole path prefix.
pub fn rewrite(s: &str, mounts: &[Mount]) -> String {
    if mounts.is_empty() || !s.contains('/') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    'outer: while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with('/') && !prev.is_some_and(is_path_char) {
            for m in mounts {
                if m.path == "/" {
                    continue;
                }
                if let Some(after) = rest.strip_prefix(m.path.as_str()) {
                    let next = after.chars().next();
                    if next.is_none() || next == Some('/') || !next.is_some_and(is_path_char) {
                        out.push_str(&m.host.to_string_lossy());
                        i += m.path.len();
                        prev = m.path.chars().last();
                        continue 'outer;
                    }
                }
            }
        }
        let c = rest.chars().next().unwrap_or('\0');
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// Where `program` resolves with this `PATH` (relative paths against `cwd`).
pub fn find_program(program: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = if program.starts_with('/') {
            PathBuf::from(program)
        } else {
            cwd.join(program)
        };
        return executable(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// Where a container's `workingDir` is on this host: in the directory of the
/// mount that holds it (the longest mount path that is a whole-component prefix),
/// else under `<pod>/work`. Built component by component from the normalised
/// path, so it never leaves those directories: `.` and empty components are
/// dropped, a `..` component or a relative path is refused.
pub fn working_dir(work: &Path, w: &str, mounts: &[Mount]) -> Result<PathBuf, LaunchError> {
    let parts: Vec<&str> = w
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if !w.starts_with('/') || parts.contains(&"..") {
        return Err(config_error(format!(
            "workingDir {w:?} must be an absolute path without '..' components"
        )));
    }
    let (mut dir, rest) = mounts
        .iter()
        .filter(|m| m.path != "/")
        .find_map(|m| {
            let mp: Vec<&str> = m
                .path
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            parts
                .starts_with(&mp)
                .then(|| (m.host.clone(), &parts[mp.len()..]))
        })
        .unwrap_or_else(|| (work.to_path_buf(), &parts[..]));
    dir.extend(rest);
    Ok(dir)
}

/// Resolve container `c` of the pod into a [`Launch`].
pub fn resolve(
    pod_dir: &Path,
    view: PodView<'_>,
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    path_var: &str,
) -> Result<Launch, LaunchError> {
    let mounts = mounts(c, volumes);
    let work = pod_dir.join("work");
    let cwd = match c.working_dir.as_deref().filter(|w| !w.is_empty()) {
        None => work.clone(),
        Some(w) => working_dir(&work, w, &mounts)?,
    };
    std::fs::create_dir_all(&cwd).map_err(|e| {
        config_error(format!(
            "cannot create working directory {}: {e}",
            cwd.display()
        ))
    })?;

    let mut env = Env::new();
    env.set("PATH", path_var.to_string());
    env.set("HOME", cwd.to_string_lossy().into_owned());
    env.set("HOSTNAME", interlink::pod_name(view.pod).to_string());
    env.set("INTERLINK_POD_DIR", pod_dir.to_string_lossy().into_owned());
    let pairs: Vec<String> = mounts
        .iter()
        .map(|m| format!("{}={}", m.path, m.host.display()))
        .collect();
    env.set("INTERLINK_MOUNTS", pairs.join(":"));
    // mount paths in `env` values point at the volumes' directories
    pod::env::resolve_into(view, c, &mut env, &|v| rewrite(&v, &mounts))
        .map_err(|e| config_error(e.with_field_names()))?;

    let mut argv: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| rewrite(&env.expand(a), &mounts))
        .collect();
    if argv.is_empty() {
        return Err(config_error(format!(
            "container {:?} has neither command nor args: the local plugin does not run images, so it needs a command",
            c.name
        )));
    }
    let path_now = env.get("PATH").unwrap_or_default().to_string();
    match find_program(&argv[0], &path_now, &cwd) {
        Some(p) => argv[0] = p.to_string_lossy().into_owned(),
        None => {
            return Err(LaunchError {
                reason: "CreateContainerError",
                message: format!(
                    "command {:?} not found on this host (PATH={path_now}); the local plugin runs commands on the host and ignores the image {:?}",
                    argv[0],
                    c.image.as_deref().unwrap_or("")
                ),
            });
        }
    }
    Ok(Launch {
        argv,
        env: env.into_vars(),
        cwd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_paths() {
        let m = vec![
            Mount {
                path: "/etc/config/sub".into(),
                host: "/p/v/b".into(),
            },
            Mount {
                path: "/etc/config".into(),
                host: "/p/v/a".into(),
            },
        ];
        assert_eq!(rewrite("cat /etc/config/x.conf", &m), "cat /p/v/a/x.conf");
        assert_eq!(rewrite("/etc/config", &m), "/p/v/a");
        assert_eq!(rewrite("/etc/config/sub/y", &m), "/p/v/b/y");
        assert_eq!(rewrite("/etc/configs/x", &m), "/etc/configs/x");
        assert_eq!(rewrite("x/etc/config/y", &m), "x/etc/config/y");
        assert_eq!(
            rewrite("A=/etc/config;B='/etc/config/z'", &m),
            "A=/p/v/a;B='/p/v/a/z'"
        );
    }

    #[test]
    fn working_dir_stays_in_the_pod_or_its_mounts() {
        let m = vec![
            Mount {
                path: "/etc/config".into(),
                host: "/p/v/a".into(),
            },
            Mount {
                path: "/".into(),
                host: "/p/v/root".into(),
            },
        ];
        let work = Path::new("/p/work");
        let wd = |w: &str| working_dir(work, w, &m);
        assert_eq!(wd("/data/x").unwrap(), Path::new("/p/work/data/x"));
        assert_eq!(wd("/").unwrap(), Path::new("/p/work"));
        assert_eq!(wd("//a/./b/").unwrap(), Path::new("/p/work/a/b"));
        assert_eq!(wd("/etc/config").unwrap(), Path::new("/p/v/a"));
        assert_eq!(wd("/etc/config/./s").unwrap(), Path::new("/p/v/a/s"));
        assert_eq!(
            wd("/etc/configs").unwrap(),
            Path::new("/p/work/etc/configs")
        );
        for bad in [
            "/../../../../tmp/x",
            "/etc/config/../../x",
            "/a/..",
            "relative/dir",
        ] {
            let e = wd(bad).unwrap_err();
            assert_eq!(e.reason, "CreateContainerConfigError");
            assert!(e.message.contains("without '..'"), "{}", e.message);
        }
    }
}
