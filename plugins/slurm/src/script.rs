//! The job script of a pod: `#SBATCH` lines, pre-exec, init containers in order,
//! regular containers concurrently; each container's output, start time and exit
//! code go to files under `<pod dir>/containers/` that the plugin reads.
//!
//! File formats (written by the script, read by [`crate::files`]):
//! - `NAME.log`: one line per output line, `RFC3339-micro-UTC SP text` (stdout and stderr merged)
//! - `NAME.started`: `EPOCH_SECONDS.MICROS`
//! - `NAME.exit`: `EXIT_CODE SP EPOCH_SECONDS.MICROS` (128+N when killed by signal N)
//! - `job.started` / `job.done`: `JOB_ID SP TIME` / `EXIT_CODE SP TIME` at the ends of the script

use std::path::{Path, PathBuf};

use crate::config::ContainerRuntime;
use crate::probes::{Checks, Probe, ProbeAction};
use crate::volumes::Mount;

/// One container as the script runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Probes and lifecycle hooks run in the job (regular containers only).
    pub checks: Checks,
}

/// The MPI launch of the regular containers (`slurm-job.vk.io/mpi-flags`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MpiLaunch {
    /// The admin's launcher words (`mpi_command`): shell words, `$VAR` expands.
    pub launcher: Vec<String>,
    /// The pod's flags: each one quoted word.
    pub flags: Vec<String>,
}

/// Everything the job script is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobScript {
    pub pod_dir: PathBuf,
    pub pod_label: String,
    pub job_name: String,
    pub flags: Vec<String>,
    pub pre_exec: Option<String>,
    pub init: Vec<ContainerRun>,
    pub containers: Vec<ContainerRun>,
    pub runtime: ContainerRuntime,
    pub runtime_options: Vec<String>,
    pub image_prefix: String,
    pub shell: String,
    /// Prefix each log line with its time (needed for `Timestamps` and `Since*`).
    pub stamp_logs: bool,
    /// The plugin's own binary as compute nodes see it: its `subpath-exec`
    /// subcommand binds subPaths safely just before a container starts.
    pub subpath_helper: String,
    /// Binds added to every container (apptainer/singularity/enroot), `HOST:CONTAINER[:ro]`.
    pub binds: Vec<String>,
    /// MPI launch of the regular containers: the admin's launcher words (shell
    /// words: `$SLURM_NTASKS` expands) and the pod's flags (each quoted as data).
    pub mpi: Option<MpiLaunch>,
    /// The admin's job script template (see [`crate::template`]); `None` = the built-in layout.
    pub template: Option<std::sync::Arc<crate::template::Template>>,
    /// The pod's name, namespace and uid, for the template's variables.
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
}

/// Quote a word for the shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `INTERLINK_VOLUME_<NAME>`: where a volume is when there is no container to bind it.
pub fn volume_env_name(volume: &str) -> String {
    let up: String = volume
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("INTERLINK_VOLUME_{up}")
}

/// A Slurm job name from the pod's namespace and name.
pub fn job_name(namespace: &str, name: &str) -> String {
    let raw = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}-{name}")
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

fn image_ref(prefix: &str, image: &str) -> String {
    if image.contains("://") || image.starts_with('/') || image.starts_with("./") {
        image.to_string()
    } else {
        format!("{prefix}{image}")
    }
}

/// The name a podman/enroot container of this pod runs under (unique per node:
/// the pod directory's name is the pod's uid).
pub fn runtime_name(s: &JobScript, c: &ContainerRun) -> String {
    let pod = s
        .pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("il-{pod}-{}", c.name)
}

/// Where the `i`-th subPath mount of a container is bound: in the pod directory,
/// outside every volume, so no container can replace it with a link.
pub fn subpath_target(s: &JobScript, c: &ContainerRun, i: usize) -> PathBuf {
    s.pod_dir.join("subpaths").join(&c.name).join(i.to_string())
}

/// The container's subPath mounts (with their index), for a container runtime.
fn subpath_mounts<'a>(s: &JobScript, c: &'a ContainerRun) -> Vec<(usize, &'a Mount)> {
    if s.runtime == ContainerRuntime::None {
        return Vec::new();
    }
    c.mounts
        .iter()
        .filter(|m| m.sub_path.is_some())
        .enumerate()
        .collect()
}

/// The command line that runs a container (without `exec`), or why it cannot be built.
///
/// With subPath mounts the runtime runs under `<helper> subpath-exec`: in a mount
/// namespace of its own, the helper opens each subPath beneath its volume without
/// following links (after the init containers ran, at the moment of use), binds
/// it onto the plugin's own mount point, then execs the runtime, which is given
/// only those mount points. The binds vanish with the container.
pub fn container_command(s: &JobScript, c: &ContainerRun) -> Result<Vec<String>, String> {
    let mut w: Vec<String> = Vec::new();
    let subpaths = subpath_mounts(s, c);
    if !subpaths.is_empty() {
        w.push(s.subpath_helper.clone());
        w.push("subpath-exec".into());
        for (i, m) in &subpaths {
            w.push(if m.create { "--bind-create" } else { "--bind" }.into());
            w.push(m.host.display().to_string());
            w.push(m.sub_path.clone().unwrap_or_default());
            w.push(subpath_target(s, c, *i).display().to_string());
        }
        w.push("--".into());
    }
    match s.runtime {
        ContainerRuntime::None => {
            if c.command.is_empty() && c.args.is_empty() {
                return Err(format!(
                    "container {:?} has no command: with container_runtime 'none' the image's entrypoint is not available",
                    c.name
                ));
            }
            w.extend(c.command.iter().cloned());
            w.extend(c.args.iter().cloned());
        }
        ContainerRuntime::Apptainer | ContainerRuntime::Singularity => {
            w.push(s.runtime.as_str().into());
            w.push(if c.command.is_empty() { "run" } else { "exec" }.into());
            w.extend(s.runtime_options.iter().cloned());
            for b in &s.binds {
                w.push("--bind".into());
                w.push(b.clone());
            }
            push_mounts(&mut w, s, c, "--bind", Some("--pwd"));
            w.push(image_ref(&s.image_prefix, &c.image));
            w.extend(c.command.iter().cloned());
            w.extend(c.args.iter().cloned());
        }
        ContainerRuntime::Podman => {
            w.extend(["podman", "run", "--rm", "--network=host"].map(String::from));
            if needs_name(c) {
                w.push(format!("--name={}", runtime_name(s, c)));
                w.push("--replace".into());
            }
            w.extend(s.runtime_options.iter().cloned());
            for (k, _) in &c.env {
                w.push("-e".into());
                w.push(k.clone());
            }
            push_mounts(&mut w, s, c, "-v", Some("-w"));
            let mut rest = c.command.iter();
            if let Some(ep) = rest.next() {
                w.push("--entrypoint".into());
                w.push(ep.clone());
            }
            w.push(c.image.clone());
            w.extend(rest.cloned());
            w.extend(c.args.iter().cloned());
        }
        ContainerRuntime::Enroot => {
            // the root filesystem was made by `enroot create` (see `enroot_prepare`)
            w.extend(enroot_start(s, c));
            if c.working_dir.is_some() {
                // enroot has no working-directory option: the image's shell
                // changes to it (the directory is an argument, never code)
                w.extend(
                    ["/bin/sh", "-c", r#"cd "$1" && shift && exec "$@""#, "sh"].map(String::from),
                );
                w.push(c.working_dir.clone().unwrap_or_default());
            }
            w.extend(c.command.iter().cloned());
            w.extend(c.args.iter().cloned());
        }
    }
    Ok(w)
}

/// `enroot start --rw [options] [--env K]... [--mount ...]... NAME`.
fn enroot_start(s: &JobScript, c: &ContainerRun) -> Vec<String> {
    let mut w: Vec<String> = vec!["enroot".into(), "start".into(), "--rw".into()];
    w.extend(s.runtime_options.iter().cloned());
    for (k, _) in &c.env {
        w.push("--env".into());
        w.push(k.clone());
    }
    for b in &s.binds {
        w.push("--mount".into());
        w.push(b.clone());
    }
    push_mounts(&mut w, s, c, "--mount", None);
    w.push(runtime_name(s, c));
    w
}

/// The lines that make an enroot container's root filesystem from its image
/// (in the pod directory: `images/NAME.sqsh`), before the container runs.
fn enroot_prepare(s: &JobScript, c: &ContainerRun) -> String {
    let name = runtime_name(s, c);
    let sqsh = s.pod_dir.join("images").join(format!("{}.sqsh", c.name));
    let sqsh = sh_quote(&sqsh.display().to_string());
    format!(
        "    mkdir -p \"$INTERLINK_POD_DIR/images\"\n    enroot remove -f {n} >/dev/null 2>&1\n    enroot import --output {sqsh} {img} || exit 1\n    enroot create --name {n} {sqsh} || exit 1\n",
        n = sh_quote(&name),
        img = sh_quote(&image_ref(&s.image_prefix, &c.image)),
    )
}

/// A podman container gets a name when probes or hooks must reach it.
fn needs_name(c: &ContainerRun) -> bool {
    !c.checks.is_empty()
}

/// The command line that runs `"$@"` inside a running container (probes and
/// hooks), without `exec`; `"$@"` is appended by the caller.
pub fn in_container(s: &JobScript, c: &ContainerRun) -> Vec<String> {
    match s.runtime {
        ContainerRuntime::None => Vec::new(),
        ContainerRuntime::Apptainer | ContainerRuntime::Singularity => {
            // a second instance of the image with the container's binds
            let mut w: Vec<String> = vec![s.runtime.as_str().into(), "exec".into()];
            w.extend(s.runtime_options.iter().cloned());
            for b in &s.binds {
                w.push("--bind".into());
                w.push(b.clone());
            }
            push_mounts(&mut w, s, c, "--bind", Some("--pwd"));
            w.push(image_ref(&s.image_prefix, &c.image));
            w
        }
        ContainerRuntime::Podman => {
            let mut w: Vec<String> = vec!["podman".into(), "exec".into()];
            for (k, _) in &c.env {
                w.push("-e".into());
                w.push(k.clone());
            }
            if let Some(wd) = &c.working_dir {
                w.push("-w".into());
                w.push(wd.clone());
            }
            w.push(runtime_name(s, c));
            w
        }
        ContainerRuntime::Enroot => enroot_start(s, c),
    }
}

/// `<mount_flag> host:path[:ro]` for every mount (a subPath's host side is its
/// mount point, see [`container_command`]), then `<workdir_flag> dir` when the
/// container sets a working directory.
fn push_mounts(
    w: &mut Vec<String>,
    s: &JobScript,
    c: &ContainerRun,
    mount_flag: &str,
    workdir_flag: Option<&str>,
) {
    let mut sub = 0;
    for m in &c.mounts {
        let ro = if m.read_only { ":ro" } else { "" };
        let host = if m.sub_path.is_some() {
            sub += 1;
            subpath_target(s, c, sub - 1)
        } else {
            m.host.clone()
        };
        w.push(mount_flag.into());
        w.push(format!("{}:{}{ro}", host.display(), m.path));
    }
    if let (Some(wd), Some(flag)) = (&c.working_dir, workdir_flag) {
        w.push(flag.into());
        w.push(wd.clone());
    }
}

const PRELUDE: &str = r#"
# --- helpers (interlink-slurm) ---
__il_job=$$
__il_dir="$INTERLINK_POD_DIR/containers"
mkdir -p "$__il_dir"
__il_now() { local t=${EPOCHREALTIME:-$(date +%s.%N)}; printf '%s' "${t/,/.}"; }
# prefix each line with its UTC time, as Kubernetes' timestamped logs
__il_stamp() {
    trap '' TERM INT
    export TZ=UTC0
    local line t
    while IFS= read -r line || [ -n "$line" ]; do
        t=${EPOCHREALTIME/,/.}
        printf '%(%Y-%m-%dT%H:%M:%S)T.%sZ %s\n' "${t%.*}" "${t#*.}" "$line"
    done
}
# run one container: NAME FUNCTION; writes NAME.started, NAME.log, NAME.exit
__il_run() {
    local name=$1 fn=$2 rc
    trap ':' TERM INT
    printf '%s\n' "$(__il_now)" > "$__il_dir/$name.started"
    if [ "$__il_stamp_logs" = 1 ]; then
        ( "$fn" ) 2>&1 </dev/null | __il_stamp >> "$__il_dir/$name.log"
        rc=${PIPESTATUS[0]}
    else
        ( "$fn" ) >> "$__il_dir/$name.log" 2>&1 </dev/null
        rc=$?
    fi
    printf '%s %s\n' "$rc" "$(__il_now)" > "$__il_dir/$name.exit.tmp"
    mv -f "$__il_dir/$name.exit.tmp" "$__il_dir/$name.exit"
    return "$rc"
}
# wait for a background container, through signals that interrupt `wait`
__il_wait() {
    local rc
    while :; do
        wait "$1"; rc=$?
        kill -0 "$1" 2>/dev/null || break
    done
    [ "$rc" -eq 0 ] || [ "$__il_rc" -ne 0 ] || __il_rc=$rc
}
__il_bg=()
__il_finish() {
    local p
    for p in "${__il_bg[@]}"; do kill "$p" 2>/dev/null; done
    ! declare -F __il_cleanup >/dev/null || __il_cleanup
    printf '%s %s\n' "$__il_rc" "$(__il_now)" > "$INTERLINK_POD_DIR/job.done"
    exit "$__il_rc"
}
"#;

/// Helpers of probes and hooks (only in scripts that have some).
const CHECKS_PRELUDE: &str = r#"
# --- probes and lifecycle hooks (interlink-slurm) ---
__il_log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
# the container has not ended, and the job's shell still runs: a job killed
# before the container's end was written leaves no probe looping on its own
__il_alive() { [ ! -e "$__il_dir/$1.exit" ] && kill -0 "$__il_job" 2>/dev/null; }
__il_set_ready() {
    printf '%s\n' "$2" > "$__il_dir/$1.ready.tmp" && mv -f "$__il_dir/$1.ready.tmp" "$__il_dir/$1.ready"
}
# wait until the container runs (its pid is known); false if it ended first
__il_wait_pid() {
    while [ ! -e "$__il_dir/$1.pid" ]; do
        __il_alive "$1" || return 1
        sleep 0.2
    done
}
__il_kill() {
    local pid
    pid=$(cat "$__il_dir/$1.pid" 2>/dev/null) || return 0
    __il_log "container $1: $2: killed"
    kill -TERM "$pid" 2>/dev/null
}
# SECONDS COMMAND...: the command, killed after SECONDS
__il_timeout() {
    local t=$1 p w rc
    shift
    "$@" &
    p=$!
    ( sleep "$t" & s=$!; trap 'kill $s 2>/dev/null; exit 0' TERM; wait $s; kill -KILL $p 2>/dev/null ) &
    w=$!
    wait "$p"; rc=$?
    kill "$w" 2>/dev/null
    return "$rc"
}
# NAME KIND DELAY PERIOD TIMEOUT SUCCESS-THRESHOLD FAILURE-THRESHOLD CHECK
__il_probe() {
    local name=$1 kind=$2 delay=$3 period=$4 t=$5 need=$6 fail=$7 fn=$8 ok=0 bad=0 state=
    [ "$delay" -gt 0 ] && sleep "$delay"
    while __il_alive "$name"; do
        if __il_timeout "$t" "$fn" >/dev/null 2>&1 </dev/null; then
            ok=$((ok + 1)); bad=0
        else
            bad=$((bad + 1)); ok=0
        fi
        if [ "$ok" -ge "$need" ] && [ "$state" != ok ]; then
            state=ok
            __il_log "container $name: $kind probe succeeded"
            case $kind in
                startup) printf 'SUCCESS\n' > "$__il_dir/$name.startup"; return 0 ;;
                readiness) __il_set_ready "$name" 1 ;;
            esac
        elif [ "$bad" -ge "$fail" ] && [ "$state" != failed ]; then
            state=failed
            __il_log "container $name: $kind probe failed $bad times"
            case $kind in
                startup|liveness) __il_kill "$name" "$kind probe failed"; return 1 ;;
                readiness) __il_set_ready "$name" 0 ;;
            esac
        elif [ "$bad" -gt 0 ]; then
            __il_log "container $name: $kind probe failed ($bad/$fail)"
        fi
        sleep "$period"
    done
}
"#;

/// The preStop handler: hooks in their containers, then TERM to every container
/// still running (the job's shell alone is signalled when a pod has preStop hooks).
const PRE_STOP_PRELUDE: &str = r#"
__il_stopping=0
__il_stop() {
    [ "$__il_stopping" = 1 ] && return
    __il_stopping=1
    local f h=()
    __il_pre_stop_hooks
    for f in "$__il_dir"/*.pid; do
        [ -e "$f" ] || continue
        f=${f##*/}
        __il_alive "${f%.pid}" && kill -TERM "$(cat "$__il_dir/$f")" 2>/dev/null
    done
}
"#;

/// A word the admin wrote, for the shell with `$VAR` expanded (`"..."`).
fn sh_dquote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '`') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// The shell that runs one probe's check (exit 0 = success).
fn probe_check(i: usize, p: &Probe) -> String {
    match &p.action {
        ProbeAction::Exec(cmd) => {
            let words: Vec<String> = cmd.iter().map(|w| sh_quote(w)).collect();
            format!("__il_x{i} {}", words.join(" "))
        }
        ProbeAction::Http {
            scheme,
            port,
            path,
            headers,
        } => {
            let mut w = format!(
                "curl -fsSk -o /dev/null --max-time {} --noproxy '*'",
                p.timeout_s
            );
            for (k, v) in headers {
                w.push_str(&format!(" -H {}", sh_quote(&format!("{k}: {v}"))));
            }
            w.push_str(&format!(
                " {}",
                sh_quote(&format!("{scheme}://127.0.0.1:{port}{path}"))
            ));
            w
        }
        ProbeAction::Tcp { port } => {
            format!("( exec 3<>/dev/tcp/127.0.0.1/{port} ) 2>/dev/null")
        }
    }
}

fn probe_line(name: &str, kind: &str, i: usize, k: char, p: &Probe) -> String {
    format!(
        "__il_probe {} {kind} {} {} {} {} {} __il_k{i}{k}",
        sh_quote(name),
        p.initial_delay_s,
        p.period_s,
        p.timeout_s,
        p.success_threshold,
        p.failure_threshold
    )
}

/// Render the job script.
pub fn render(s: &JobScript) -> Result<String, String> {
    let mut out = String::new();
    let pod_dir = s.pod_dir.display().to_string();
    if pod_dir.chars().any(|c| c.is_control()) {
        return Err(format!("pod directory {pod_dir:?} is not a usable path"));
    }
    let mut sbatch = String::new();
    sbatch.push_str(&format!("#SBATCH --job-name={}\n", s.job_name));
    sbatch.push_str(&format!(
        "#SBATCH --output={}\n",
        Path::new(&pod_dir).join("job.out").display()
    ));
    for f in &s.flags {
        crate::resources::check_flag(f)?;
        sbatch.push_str(&format!("#SBATCH {f}\n"));
    }
    out.push_str(&format!(
        "# Generated by interlink-slurm for pod {} (container runtime: {})\n",
        s.pod_label.replace(|c: char| c.is_control(), "?"),
        s.runtime.as_str()
    ));
    out.push_str(&format!(
        "export INTERLINK_POD_DIR={}\n",
        sh_quote(&pod_dir)
    ));
    out.push_str("cd \"$INTERLINK_POD_DIR\" || exit 1\n");
    out.push_str(&format!("__il_stamp_logs={}\n", u8::from(s.stamp_logs)));
    out.push_str(PRELUDE);
    let any_checks = s.containers.iter().any(|c| !c.checks.is_empty());
    let any_pre_stop = s.containers.iter().any(|c| c.checks.pre_stop.is_some());
    if any_checks {
        out.push_str(CHECKS_PRELUDE);
    }
    if any_pre_stop {
        out.push_str(PRE_STOP_PRELUDE);
    }

    // one function per container: its environment, then exec of the runtime
    let all: Vec<&ContainerRun> = s.init.iter().chain(s.containers.iter()).collect();
    for (i, c) in all.iter().enumerate() {
        let is_main = i >= s.init.len();
        out.push_str(&format!("__il_c{i}() {{ # container {}\n", c.name));
        let mut setup = String::new();
        for (k, v) in &c.env {
            if !crate::env::valid_name(k) {
                return Err(format!(
                    "container {:?}: env name {k:?} is not a valid variable name",
                    c.name
                ));
            }
            setup.push_str(&format!("    export {k}={}\n", sh_quote(v)));
        }
        if s.runtime == ContainerRuntime::None {
            for m in &c.mounts {
                setup.push_str(&format!(
                    "    export {}={}\n",
                    volume_env_name(&m.volume),
                    sh_quote(&m.source().display().to_string())
                ));
            }
            if let Some(wd) = &c.working_dir {
                let q = sh_quote(wd);
                setup.push_str(&format!(
                    "    cd {q} || {{ echo \"workingDir {}: not found\" >&2; exit 1; }}\n",
                    wd.replace(['"', '$', '`', '\\'], "_")
                ));
            }
        }
        out.push_str(&setup);
        if s.runtime == ContainerRuntime::Enroot {
            out.push_str(&enroot_prepare(s, c));
        }
        let cmd = container_command(s, c)?;
        let mut words: Vec<String> = Vec::new();
        if let (true, Some(m)) = (is_main, &s.mpi) {
            words.extend(m.launcher.iter().map(|w| sh_dquote(w)));
            words.extend(m.flags.iter().map(|w| sh_quote(w)));
        }
        words.extend(cmd.iter().map(|w| sh_quote(w)));
        out.push_str("    printf '%s\\n' \"$BASHPID\" > \"$__il_dir/\"");
        out.push_str(&sh_quote(&format!("{}.pid", c.name)));
        out.push('\n');
        out.push_str(&format!("    exec {}\n}}\n", words.join(" ")));
        if is_main && !c.checks.is_empty() {
            render_checks(&mut out, s, c, i, &setup);
        }
    }
    if s.runtime == ContainerRuntime::Enroot {
        // the containers' root filesystems go with the job
        let names: Vec<String> = all.iter().map(|c| sh_quote(&runtime_name(s, c))).collect();
        out.push_str(&format!(
            "__il_cleanup() {{\n    local n\n    for n in {}; do enroot remove -f \"$n\" >/dev/null 2>&1; done\n}}\n",
            names.join(" ")
        ));
    }
    if any_pre_stop {
        out.push_str("__il_pre_stop_hooks() {\n    local h=()\n");
        for (j, c) in s.containers.iter().enumerate() {
            if let Some(cmd) = &c.checks.pre_stop {
                let i = s.init.len() + j;
                let words: Vec<String> = cmd.iter().map(|w| sh_quote(w)).collect();
                out.push_str(&format!(
                    "    if __il_alive {n}; then __il_log \"container \"{n}\": preStop hook\"; __il_x{i} {} & h+=($!); fi\n",
                    words.join(" "),
                    n = sh_quote(&c.name)
                ));
            }
        }
        out.push_str("    [ ${#h[@]} -eq 0 ] || wait \"${h[@]}\"\n}\n");
    }

    out.push_str("\n# --- the pod ---\n__il_rc=0\n");
    out.push_str(if any_pre_stop {
        "trap '__il_stop' TERM INT\n"
    } else {
        "trap ':' TERM INT\n"
    });
    out.push_str("printf '%s %s\\n' \"${SLURM_JOB_ID:-}\" \"$(__il_now)\" > \"$INTERLINK_POD_DIR/job.started\"\n");
    if let Some(pre) = s.pre_exec.as_deref().filter(|p| !p.trim().is_empty()) {
        out.push_str("# pre-exec (slurm-job.vk.io/pre-exec)\n");
        out.push_str(pre);
        if !pre.ends_with('\n') {
            out.push('\n');
        }
    }
    for (i, c) in s.init.iter().enumerate() {
        out.push_str(&format!(
            "__il_run {} __il_c{i} || {{ __il_rc=$?; __il_finish; }}\n",
            sh_quote(&c.name)
        ));
    }
    let base = s.init.len();
    for (j, c) in s.containers.iter().enumerate() {
        out.push_str(&format!(
            "__il_run {} __il_c{} &\n__il_p{j}=$!\n",
            sh_quote(&c.name),
            base + j
        ));
        if !c.checks.is_empty() {
            out.push_str(&format!("__il_w{} &\n__il_bg+=($!)\n", base + j));
        }
    }
    for j in 0..s.containers.len() {
        out.push_str(&format!("__il_wait \"$__il_p{j}\"\n"));
    }
    out.push_str("__il_finish\n");
    match &s.template {
        Some(t) => Ok(t.render(&crate::template::Values {
            shell: &s.shell,
            sbatch: &sbatch,
            body: &out,
            pod_name: &s.pod_name,
            pod_namespace: &s.pod_namespace,
            pod_uid: &s.pod_uid,
            job_name: &s.job_name,
            pod_dir: &pod_dir,
        })),
        None => Ok(format!("#!{}\n{sbatch}{out}", s.shell)),
    }
}

/// A container's probes and hooks: `__il_xI` runs `"$@"` in the container,
/// `__il_kI{s,r,l}` are the checks, `__il_wI` runs postStart and the probes.
fn render_checks(out: &mut String, s: &JobScript, c: &ContainerRun, i: usize, setup: &str) {
    let k = &c.checks;
    let name = sh_quote(&c.name);
    let inside: Vec<String> = in_container(s, c).iter().map(|w| sh_quote(w)).collect();
    out.push_str(&format!(
        "__il_x{i}() {{ # in container {}\n{setup}",
        c.name
    ));
    out.push_str(&format!("    exec {} \"$@\"\n}}\n", inside.join(" ")).replace("exec  ", "exec "));
    for (kind, p) in [('s', &k.startup), ('r', &k.readiness), ('l', &k.liveness)] {
        if let Some(p) = p {
            out.push_str(&format!("__il_k{i}{kind}() {{ {}; }}\n", probe_check(i, p)));
        }
    }
    out.push_str(&format!(
        "__il_w{i}() {{\n    __il_wait_pid {name} || return 0\n"
    ));
    if let Some(cmd) = &k.post_start {
        let words: Vec<String> = cmd.iter().map(|w| sh_quote(w)).collect();
        out.push_str(&format!(
            "    if ! ( __il_x{i} {} ) </dev/null; then\n        __il_log \"container \"{name}\": postStart hook failed\"\n        __il_kill {name} 'postStart hook failed'\n        return 0\n    fi\n",
            words.join(" ")
        ));
    }
    if let Some(p) = &k.startup {
        out.push_str(&format!(
            "    {} || return 0\n",
            probe_line(&c.name, "startup", i, 's', p)
        ));
        if k.readiness.is_none() {
            out.push_str(&format!("    __il_set_ready {name} 1\n"));
        }
    }
    if let Some(p) = &k.readiness {
        out.push_str(&format!(
            "    {} &\n",
            probe_line(&c.name, "readiness", i, 'r', p)
        ));
    }
    if let Some(p) = &k.liveness {
        out.push_str(&format!(
            "    {} &\n",
            probe_line(&c.name, "liveness", i, 'l', p)
        ));
    }
    out.push_str("    wait\n}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(runtime: ContainerRuntime) -> JobScript {
        JobScript {
            pod_dir: PathBuf::from("/data/pods/u1"),
            pod_label: "ns/p (u1)".into(),
            job_name: job_name("ns", "p"),
            flags: vec!["--partition=debug".into(), "--mem=100M".into()],
            pre_exec: Some("module load x".into()),
            init: vec![ContainerRun {
                name: "setup".into(),
                image: "busybox".into(),
                command: vec!["sh".into(), "-c".into(), "echo 'init'".into()],
                ..Default::default()
            }],
            containers: vec![ContainerRun {
                name: "main".into(),
                image: "docker.io/library/alpine:3".into(),
                command: vec!["python3".into()],
                args: vec!["-c".into(), "print(\"it's\")".into()],
                working_dir: Some("/work".into()),
                env: vec![("GREETING".into(), "hello world".into())],
                mounts: vec![Mount {
                    volume: "cfg".into(),
                    host: PathBuf::from("/data/pods/u1/volumes/cfg"),
                    path: "/etc/cfg".into(),
                    read_only: true,
                    ..Default::default()
                }],
                checks: Default::default(),
            }],
            runtime,
            runtime_options: vec!["--nv".into()],
            image_prefix: "docker://".into(),
            shell: "/bin/bash".into(),
            stamp_logs: true,
            subpath_helper: "/opt/il/interlink-slurm".into(),
            binds: Vec::new(),
            mpi: None,
            template: None,
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
            pod_uid: "u1".into(),
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("abc-1.2"), "abc-1.2");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME `x`"), "'$HOME `x`'");
        assert_eq!(volume_env_name("kube-api.x"), "INTERLINK_VOLUME_KUBE_API_X");
        assert_eq!(job_name("default", "my pod"), "default-my_pod");
    }

    #[test]
    fn header_and_order() {
        let s = render(&base(ContainerRuntime::None)).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        assert_eq!(lines[1], "#SBATCH --job-name=ns-p");
        assert_eq!(lines[2], "#SBATCH --output=/data/pods/u1/job.out");
        assert_eq!(lines[3], "#SBATCH --partition=debug");
        assert_eq!(lines[4], "#SBATCH --mem=100M");
        // every #SBATCH line comes before the first command
        let first_cmd = lines.iter().position(|l| !l.starts_with('#')).unwrap();
        assert!(lines[first_cmd..].iter().all(|l| !l.starts_with("#SBATCH")));
        let pre = s.find("module load x").unwrap();
        let init = s
            .find("__il_run setup __il_c0 || { __il_rc=$?; __il_finish; }")
            .unwrap();
        let main = s.find("__il_run main __il_c1 &").unwrap();
        assert!(pre < init && init < main);
        assert!(s.contains("__il_wait \"$__il_p0\"\n__il_finish\n"));
    }

    #[test]
    fn runtime_none_runs_the_command() {
        let s = render(&base(ContainerRuntime::None)).unwrap();
        assert!(s.contains("    export GREETING='hello world'\n"), "{s}");
        assert!(s.contains("    export INTERLINK_VOLUME_CFG=/data/pods/u1/volumes/cfg\n"));
        assert!(s.contains("    cd /work || {"));
        assert!(
            s.contains(r#"    exec python3 -c 'print("it'\''s")'"#),
            "{s}"
        );
        assert!(s.contains("    exec sh -c 'echo '\\''init'\\'''\n"), "{s}");
        let mut no_cmd = base(ContainerRuntime::None);
        no_cmd.containers[0].command.clear();
        no_cmd.containers[0].args.clear();
        assert!(render(&no_cmd).unwrap_err().contains("entrypoint"));
    }

    #[test]
    fn apptainer_and_singularity() {
        for (rt, bin) in [
            (ContainerRuntime::Apptainer, "apptainer"),
            (ContainerRuntime::Singularity, "singularity"),
        ] {
            let s = render(&base(rt)).unwrap();
            let want = format!(
                "    exec {bin} exec --nv --bind /data/pods/u1/volumes/cfg:/etc/cfg:ro --pwd /work docker://docker.io/library/alpine:3 python3 -c 'print(\"it'\\''s\")'"
            );
            assert!(s.contains(&want), "{s}");
            assert!(s.contains("    export GREETING='hello world'\n"));
            assert!(!s.contains("INTERLINK_VOLUME_"));
        }
        let mut sif = base(ContainerRuntime::Apptainer);
        sif.containers[0].image = "/images/tool.sif".into();
        sif.containers[0].command.clear();
        let s = render(&sif).unwrap();
        assert!(s.contains("exec apptainer run --nv --bind /data/pods/u1/volumes/cfg:/etc/cfg:ro --pwd /work /images/tool.sif -c"), "{s}");
    }

    #[test]
    fn podman() {
        let s = render(&base(ContainerRuntime::Podman)).unwrap();
        let want = "    exec podman run --rm --network=host --nv -e GREETING -v /data/pods/u1/volumes/cfg:/etc/cfg:ro -w /work --entrypoint python3 docker.io/library/alpine:3 -c 'print(\"it'\\''s\")'";
        assert!(s.contains(want), "{s}");
    }

    /// A subPath never reaches the runtime as a path under its volume: the
    /// runtime binds the helper's mount point, and the helper opens the subPath.
    #[test]
    fn subpaths_go_through_the_helper() {
        let with_subpaths = |rt| {
            let mut b = base(rt);
            b.containers[0].mounts.push(Mount {
                volume: "data".into(),
                host: PathBuf::from("/data/pods/u1/volumes/data"),
                path: "/host".into(),
                sub_path: Some("escape".into()),
                create: true,
                ..Default::default()
            });
            b.containers[0].mounts.push(Mount {
                volume: "cfg".into(),
                host: PathBuf::from("/data/pods/u1/volumes/cfg"),
                path: "/etc/one".into(),
                read_only: true,
                sub_path: Some("a/one.conf".into()),
                ..Default::default()
            });
            b
        };
        let helper = "exec /opt/il/interlink-slurm subpath-exec --bind-create /data/pods/u1/volumes/data escape /data/pods/u1/subpaths/main/0 --bind /data/pods/u1/volumes/cfg a/one.conf /data/pods/u1/subpaths/main/1 --";
        let s = render(&with_subpaths(ContainerRuntime::Podman)).unwrap();
        let want = format!(
            "    {helper} podman run --rm --network=host --nv -e GREETING -v /data/pods/u1/volumes/cfg:/etc/cfg:ro -v /data/pods/u1/subpaths/main/0:/host -v /data/pods/u1/subpaths/main/1:/etc/one:ro -w /work"
        );
        assert!(s.contains(&want), "{s}");
        assert!(!s.contains("volumes/data/escape"), "{s}");
        let s = render(&with_subpaths(ContainerRuntime::Apptainer)).unwrap();
        let want = format!(
            "    {helper} apptainer exec --nv --bind /data/pods/u1/volumes/cfg:/etc/cfg:ro --bind /data/pods/u1/subpaths/main/0:/host --bind /data/pods/u1/subpaths/main/1:/etc/one:ro --pwd /work"
        );
        assert!(s.contains(&want), "{s}");
        // init containers without subPaths are run directly
        assert!(
            s.contains("    exec apptainer exec --nv docker://busybox sh"),
            "{s}"
        );
        // runtime none: no isolation to protect, the path is given as is
        let s = render(&with_subpaths(ContainerRuntime::None)).unwrap();
        assert!(!s.contains("subpath-exec"), "{s}");
        assert!(s.contains("export INTERLINK_VOLUME_DATA=/data/pods/u1/volumes/data/escape"));
    }

    #[test]
    fn rejects_bad_flags_and_env() {
        let mut b = base(ContainerRuntime::None);
        b.flags.push("--x\n#evil".into());
        assert!(render(&b).is_err());
        let mut b = base(ContainerRuntime::None);
        b.containers[0].env.push(("A B".into(), "x".into()));
        assert!(render(&b).is_err());
    }

    /// The script really runs (bash, no Slurm): files and codes as documented.
    #[test]
    fn script_runs_under_bash() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = Some("export FROM_PRE=pre".into());
        s.containers = vec![
            ContainerRun {
                name: "ok".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo \"$GREETING $FROM_PRE\"; printf 'no newline'".into(),
                ],
                env: vec![("GREETING".into(), "hi".into())],
                ..Default::default()
            },
            ContainerRun {
                name: "bad".into(),
                command: vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
                ..Default::default()
            },
        ];
        let script = render(&s).unwrap();
        let path = dir.path().join("job.sh");
        std::fs::write(&path, script).unwrap();
        let st = std::process::Command::new("bash")
            .arg(&path)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(3));
        let read =
            |f: &str| std::fs::read_to_string(dir.path().join("containers").join(f)).unwrap();
        let log = read("ok.log");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines[0].ends_with("Z hi pre"), "{log}");
        assert!(lines[1].ends_with("Z no newline"));
        let ts = lines[0].split(' ').next().unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        assert!(read("bad.log").ends_with("Z oops\n"));
        assert!(read("ok.exit").starts_with("0 "));
        assert!(read("bad.exit").starts_with("3 "));
        assert!(
            std::fs::read_to_string(dir.path().join("job.done"))
                .unwrap()
                .starts_with("3 ")
        );
        // the setup init container ran first
        assert!(read("setup.log").ends_with("Z init\n"));
    }

    #[test]
    fn unstamped_logs_are_the_raw_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = None;
        s.stamp_logs = false;
        s.init.clear();
        s.containers = vec![ContainerRun {
            name: "raw".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo one; echo two >&2; exit 4".into(),
            ],
            ..Default::default()
        }];
        let path = dir.path().join("job.sh");
        std::fs::write(&path, render(&s).unwrap()).unwrap();
        let st = std::process::Command::new("bash")
            .arg(&path)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(4));
        let log = std::fs::read_to_string(dir.path().join("containers/raw.log")).unwrap();
        assert_eq!(log, "one\ntwo\n");
        assert!(
            std::fs::read_to_string(dir.path().join("containers/raw.exit"))
                .unwrap()
                .starts_with("4 ")
        );
    }

    #[test]
    fn failing_init_stops_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = None;
        s.init[0].command = vec!["sh".into(), "-c".into(), "exit 7".into()];
        s.containers[0].command = vec!["true".into()];
        s.containers[0].args.clear();
        s.containers[0].working_dir = None;
        let path = dir.path().join("job.sh");
        std::fs::write(&path, render(&s).unwrap()).unwrap();
        let st = std::process::Command::new("bash")
            .arg(&path)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(7));
        assert!(dir.path().join("containers/setup.exit").exists());
        assert!(!dir.path().join("containers/main.started").exists());
    }

    fn exec_probe(cmd: &[&str], period: u32, fail: u32) -> Probe {
        Probe {
            action: ProbeAction::Exec(cmd.iter().map(|s| s.to_string()).collect()),
            initial_delay_s: 0,
            period_s: period,
            timeout_s: 2,
            success_threshold: 1,
            failure_threshold: fail,
        }
    }

    fn run_script(s: &JobScript) -> (std::process::ExitStatus, String) {
        let path = s.pod_dir.join("job.sh");
        std::fs::write(&path, render(s).unwrap()).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Probes and hooks really run (bash, runtime none): a readiness exec probe
    /// marks the container ready once its command succeeds, a failing liveness
    /// probe kills its container, postStart runs in the container's env.
    #[test]
    fn probes_and_hooks_run_in_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = None;
        s.init.clear();
        s.containers = vec![
            ContainerRun {
                name: "web".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("sleep 1; touch {d}/flag; sleep 2"),
                ],
                env: vec![("HOOK_WORD".into(), "from env".into())],
                checks: Checks {
                    readiness: Some(exec_probe(&["test", "-e", &format!("{d}/flag")], 1, 3)),
                    post_start: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        format!("echo \"$HOOK_WORD\" > {d}/hook.out"),
                    ]),
                    ..Default::default()
                },
                ..Default::default()
            },
            ContainerRun {
                name: "sick".into(),
                command: vec!["sleep".into(), "30".into()],
                checks: Checks {
                    liveness: Some(exec_probe(&["false"], 1, 2)),
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        let t0 = std::time::Instant::now();
        let (st, out) = run_script(&s);
        assert!(t0.elapsed() < std::time::Duration::from_secs(20), "{out}");
        assert_eq!(st.code(), Some(143), "{out}");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        assert_eq!(read("containers/web.ready"), "1\n", "{out}");
        assert!(
            out.contains("container web: readiness probe succeeded"),
            "{out}"
        );
        assert!(
            out.contains("container web: readiness probe failed (1/3)"),
            "{out}"
        );
        assert_eq!(read("hook.out"), "from env\n");
        assert!(read("containers/web.exit").starts_with("0 "));
        assert!(
            out.contains("container sick: liveness probe failed 2 times"),
            "{out}"
        );
        assert!(
            out.contains("container sick: liveness probe failed: killed"),
            "{out}"
        );
        assert!(read("containers/sick.exit").starts_with("143 "), "{out}");
    }

    /// TERM to the job's shell runs preStop in the container, then ends the containers.
    #[test]
    fn pre_stop_runs_before_the_containers_end() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = None;
        s.init.clear();
        s.containers = vec![ContainerRun {
            name: "app".into(),
            command: vec!["sleep".into(), "30".into()],
            checks: Checks {
                pre_stop: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!("echo bye > {d}/stop.out"),
                ]),
                ..Default::default()
            },
            ..Default::default()
        }];
        let path = dir.path().join("job.sh");
        std::fs::write(&path, render(&s).unwrap()).unwrap();
        let mut child = std::process::Command::new("bash")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("containers/app.pid");
        for _ in 0..100 {
            if pid_file.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(pid_file.exists());
        let t0 = std::time::Instant::now();
        // the job's shell alone, as `scancel --batch` does
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let st = child.wait().unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(st.code(), Some(143));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stop.out")).unwrap(),
            "bye\n"
        );
        assert!(
            std::fs::read_to_string(dir.path().join("containers/app.exit"))
                .unwrap()
                .starts_with("143 ")
        );
    }

    /// Tenant words of probes and hooks reach the script only quoted; probes go
    /// through the container's runtime; HTTP/TCP probes target 127.0.0.1.
    #[test]
    fn probe_text_per_runtime() {
        let with_checks = |rt| {
            let mut b = base(rt);
            b.containers[0].checks = Checks {
                readiness: Some(exec_probe(&["sh", "-c", "$(reboot); `id`"], 5, 3)),
                liveness: Some(Probe {
                    action: ProbeAction::Http {
                        scheme: "http".into(),
                        port: 8080,
                        path: "/h'z".into(),
                        headers: vec![("X-T".into(), "a b".into())],
                    },
                    initial_delay_s: 7,
                    period_s: 10,
                    timeout_s: 1,
                    success_threshold: 1,
                    failure_threshold: 3,
                }),
                startup: Some(Probe {
                    action: ProbeAction::Tcp { port: 9000 },
                    initial_delay_s: 0,
                    period_s: 1,
                    timeout_s: 1,
                    success_threshold: 1,
                    failure_threshold: 30,
                }),
                ..Default::default()
            };
            render(&b).unwrap()
        };
        let s = with_checks(ContainerRuntime::Apptainer);
        assert!(s.contains("__il_x1() { # in container main\n    export GREETING='hello world'\n    exec apptainer exec --nv --bind /data/pods/u1/volumes/cfg:/etc/cfg:ro --pwd /work docker://docker.io/library/alpine:3 \"$@\"\n}"), "{s}");
        assert!(
            s.contains("__il_k1r() { __il_x1 sh -c '$(reboot); `id`'; }"),
            "{s}"
        );
        assert!(s.contains("__il_k1l() { curl -fsSk -o /dev/null --max-time 1 --noproxy '*' -H 'X-T: a b' 'http://127.0.0.1:8080/h'\\''z'; }"), "{s}");
        assert!(
            s.contains("__il_k1s() { ( exec 3<>/dev/tcp/127.0.0.1/9000 ) 2>/dev/null; }"),
            "{s}"
        );
        assert!(s.contains("    __il_probe main startup 0 1 1 1 30 __il_k1s || return 0\n    __il_probe main readiness 0 5 2 1 3 __il_k1r &\n    __il_probe main liveness 7 10 1 1 3 __il_k1l &\n"), "{s}");
        assert!(
            s.contains("__il_run main __il_c1 &\n__il_p0=$!\n__il_w1 &\n__il_bg+=($!)\n"),
            "{s}"
        );
        let s = with_checks(ContainerRuntime::Podman);
        assert!(
            s.contains("exec podman run --rm --network=host --name=il-u1-main --replace --nv"),
            "{s}"
        );
        assert!(
            s.contains("    exec podman exec -e GREETING -w /work il-u1-main \"$@\"\n"),
            "{s}"
        );
        // no probes: no helpers, no name
        let s = render(&base(ContainerRuntime::Podman)).unwrap();
        assert!(!s.contains("__il_probe") && !s.contains("--name="), "{s}");
    }

    #[test]
    fn enroot_imports_creates_and_starts() {
        let s = render(&base(ContainerRuntime::Enroot)).unwrap();
        assert!(s.contains("    enroot remove -f il-u1-main >/dev/null 2>&1\n    enroot import --output /data/pods/u1/images/main.sqsh docker://docker.io/library/alpine:3 || exit 1\n    enroot create --name il-u1-main /data/pods/u1/images/main.sqsh || exit 1\n"), "{s}");
        assert!(s.contains("    exec enroot start --rw --nv --env GREETING --mount /data/pods/u1/volumes/cfg:/etc/cfg:ro il-u1-main /bin/sh -c 'cd \"$1\" && shift && exec \"$@\"' sh /work python3 -c 'print(\"it'\\''s\")'\n"), "{s}");
        assert!(
            s.contains("    exec enroot start --rw --nv il-u1-setup sh -c"),
            "{s}"
        );
        assert!(
            s.contains("    for n in il-u1-setup il-u1-main; do enroot remove -f \"$n\" >/dev/null 2>&1; done\n"),
            "{s}"
        );
    }

    /// The admin's launcher words keep `$SLURM_NTASKS`; the pod's flags are quoted;
    /// init containers are not launched by MPI; binds go to every container.
    #[test]
    fn mpi_and_binds() {
        let mut b = base(ContainerRuntime::Apptainer);
        b.mpi = Some(MpiLaunch {
            launcher: vec!["mpiexec".into(), "-np".into(), "$SLURM_NTASKS".into()],
            flags: vec!["--bind-to".into(), "core;reboot".into()],
        });
        b.binds = vec!["/cvmfs:/cvmfs:ro".into()];
        let s = render(&b).unwrap();
        assert!(s.contains("    exec \"mpiexec\" \"-np\" \"$SLURM_NTASKS\" --bind-to 'core;reboot' apptainer exec --nv --bind /cvmfs:/cvmfs:ro --bind /data/pods/u1/volumes/cfg"), "{s}");
        assert!(
            s.contains(
                "    exec apptainer exec --nv --bind /cvmfs:/cvmfs:ro docker://busybox sh -c"
            ),
            "{s}"
        );
    }

    /// With a template the admin's lines surround the job; pod values are quoted.
    #[test]
    fn template_wraps_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = base(ContainerRuntime::None);
        s.pod_dir = dir.path().to_path_buf();
        s.pre_exec = None;
        s.pod_name = "p; touch /tmp/x".into();
        s.init.clear();
        s.containers = vec![ContainerRun {
            name: "c".into(),
            command: vec!["sh".into(), "-c".into(), "echo \"site=$SITE\"".into()],
            ..Default::default()
        }];
        s.template = Some(std::sync::Arc::new(
            crate::template::Template::parse(
                "#!{{ .Shell }}\n{{ .SbatchFlags }}\n#SBATCH --comment=site\nexport SITE=cern\necho \"pod\" {{ .PodName }}\n{{ .Job }}",
            )
            .unwrap(),
        ));
        let text = render(&s).unwrap();
        assert!(
            text.starts_with("#!/bin/bash\n#SBATCH --job-name=ns-p\n"),
            "{text}"
        );
        assert!(text.contains("#SBATCH --mem=100M\n#SBATCH --comment=site\nexport SITE=cern\necho \"pod\" 'p; touch /tmp/x'\n"), "{text}");
        let (st, out) = run_script(&s);
        assert_eq!(st.code(), Some(0));
        assert!(out.contains("pod p; touch /tmp/x"), "{out}");
        let log = std::fs::read_to_string(dir.path().join("containers/c.log")).unwrap();
        assert!(log.ends_with("Z site=cern\n"), "{log}");
    }
}
