//! `interlink-slurm subpath-exec`: the helper a job script runs in front of a
//! container runtime when the container mounts volume subPaths.
//!
//! ```text
//! interlink-slurm subpath-exec (--bind|--bind-create ROOT SUBPATH TARGET)... -- RUNTIME ARGS...
//! ```
//!
//! It enters a mount namespace of its own (so the binds vanish with the
//! container and never show on the node), opens each SUBPATH beneath ROOT
//! without following any link, binds it onto TARGET, then execs the runtime.
//! It runs at the moment of use: after the pod's init containers, which could
//! have replaced a directory of the volume with a link. Anything unsafe ends it
//! with exit code [`EXIT_REFUSED`] and a message on stderr (the container's log).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use interlink_plugin_kit::subpath::{self, SubPathBind};

/// The subcommand's name.
pub const SUBCOMMAND: &str = "subpath-exec";

/// Exit code when a subPath cannot be bound safely (the container never ran).
pub const EXIT_REFUSED: i32 = 125;

/// The binds and the command of a `subpath-exec` command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub binds: Vec<SubPathBind>,
    pub command: Vec<OsString>,
}

/// Parse the arguments after the subcommand's name.
pub fn parse(args: &[OsString]) -> Result<Invocation, String> {
    let mut binds = Vec::new();
    let mut i = 0;
    loop {
        let Some(a) = args.get(i) else {
            return Err("missing `--` before the command".into());
        };
        let create = match a.to_str() {
            Some("--") => break,
            Some("--bind") => false,
            Some("--bind-create") => true,
            _ => return Err(format!("unexpected argument {a:?}")),
        };
        let [root, sub, target] = [1, 2, 3].map(|k| args.get(i + k));
        let (Some(root), Some(sub), Some(target)) = (root, sub, target) else {
            return Err(format!("{a:?} needs ROOT SUBPATH TARGET"));
        };
        binds.push(SubPathBind {
            root: PathBuf::from(root),
            sub_path: sub
                .to_str()
                .ok_or_else(|| format!("subPath {sub:?} is not UTF-8"))?
                .to_string(),
            target: PathBuf::from(target),
            create,
        });
        i += 4;
    }
    let command = args[i + 1..].to_vec();
    if command.is_empty() {
        return Err("no command after `--`".into());
    }
    Ok(Invocation { binds, command })
}

/// Run the subcommand; returns only on failure, with the process's exit code.
pub fn run(args: &[OsString]) -> i32 {
    let fail = |msg: String| {
        eprintln!("interlink-slurm {SUBCOMMAND}: {msg}");
        EXIT_REFUSED
    };
    let inv = match parse(args) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    if let Err(e) = subpath::enter_private_mount_namespace() {
        return fail(format!(
            "cannot make a private mount namespace for the subPath mounts ({e}); \
             subPaths with a container runtime need jobs that may mount (root)"
        ));
    }
    if let Err(e) = subpath::prepare(&inv.binds) {
        return fail(format!("container not started: {e}"));
    }
    let err = std::process::Command::new(&inv.command[0])
        .args(&inv.command[1..])
        .exec();
    fail(format!("running {:?}: {err}", inv.command[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_binds_and_command() {
        let inv = parse(&args(&[
            "--bind-create",
            "/v/data",
            "a/b",
            "/p/subpaths/c/0",
            "--bind",
            "/v/cfg",
            "f",
            "/p/subpaths/c/1",
            "--",
            "podman",
            "run",
            "--",
        ]))
        .unwrap();
        assert_eq!(inv.binds.len(), 2);
        assert!(inv.binds[0].create && !inv.binds[1].create);
        assert_eq!(inv.binds[1].sub_path, "f");
        assert_eq!(inv.command, args(&["podman", "run", "--"]));
        assert!(parse(&args(&["--bind", "/v", "x"])).is_err());
        assert!(parse(&args(&["--",])).is_err());
        assert!(parse(&args(&["--other", "--", "x"])).is_err());
        assert!(parse(&args(&["--bind", "/v", "x", "/t", "true"])).is_err());
    }
}
