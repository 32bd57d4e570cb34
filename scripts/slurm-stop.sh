#!/usr/bin/env bash
# slurm-stop.sh - stop the single-node Slurm cluster started by slurm-start.sh.
#
#   scripts/slurm-stop.sh                  cancel jobs, stop slurmd, slurmctld, munged
#   scripts/slurm-stop.sh --only slurmctld stop only that daemon, jobs keep running
#                                          (fault tests; slurm-start.sh brings it back)
#
# Cancels remaining jobs (so no slurmstepd/job processes outlive slurmd), then
# stops slurmd, slurmctld and munged by the pids in their pidfiles.  A pid is
# only signalled if its /proc comm matches the daemon and its command line
# mentions $SLURM_LOCAL_ROOT, so a system-wide Slurm/munge is never touched.
# Leaves config, state and logs in place (SLURM_LOCAL_PURGE=1 removes them).
set -uo pipefail

ROOT=${SLURM_LOCAL_ROOT:-/tmp/slurm-local/cluster}
RUN=$ROOT/run
export SLURM_CONF=$ROOT/etc/slurm.conf

log() { printf '[slurm-local %s] %s\n' "$(date +%T)" "$*" >&2; }

# running PID: process exists and is not a zombie (an un-reaped daemon stays
# in /proc as state Z when PID 1 does not reap promptly, e.g. in containers)
running() { local st; st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }

pid_of() {   # pid_of PIDFILE COMM -> pid if it is ours and alive
    local pf=$1 comm=$2 pid cmd
    [ -s "$pf" ] || return 1
    pid=$(tr -dc '0-9' < "$pf")
    [ -n "$pid" ] && running "$pid" || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $cmd == *"$ROOT"* ]] || return 1
    echo "$pid"
}

stop_pid() {  # stop_pid NAME PID : SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 150); do running "$pid" || { log "$name (pid $pid) stopped"; return 0; }; sleep 0.1; done
    log "$name (pid $pid) ignored SIGTERM for 15s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do running "$pid" || return 0; sleep 0.1; done
    log "WARNING: $name (pid $pid) still present"; return 1
}

ONLY=""
case "${1:-}" in
    "") ;;
    --only)
        ONLY=${2:-}
        [[ $ONLY =~ ^(slurmctld|slurmd|munged)$ ]] || { log "usage: $0 [--only slurmctld|slurmd|munged]"; exit 2; } ;;
    *) log "usage: $0 [--only slurmctld|slurmd|munged]"; exit 2 ;;
esac

rc=0
ctld=$(pid_of "$RUN/slurmctld.pid" slurmctld || true)
slurmd=$(pid_of "$RUN/slurmd.pid" slurmd || true)
munged=$(pid_of "$RUN/munged.pid" munged || true)

if [ -n "$ONLY" ]; then
    case $ONLY in
        slurmctld) pid=$ctld ;; slurmd) pid=$slurmd ;; munged) pid=$munged ;;
    esac
    if [ -z "$pid" ]; then log "$ONLY is not running under $ROOT"; exit 0; fi
    stop_pid "$ONLY" "$pid" || exit 1
    rm -f "$RUN/$ONLY.pid"
    exit 0
fi

# 1. cancel jobs that are still pending/running, wait (bounded) for them to end
if [ -n "$ctld" ] && [ -f "$SLURM_CONF" ]; then
    ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ids// /}" ]; then
        log "cancelling jobs: $ids"
        # shellcheck disable=SC2086
        scancel $ids 2>/dev/null || true
        for _ in $(seq 1 200); do
            left=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
            [ -z "${left// /}" ] && break; sleep 0.1
        done
        [ -z "${left// /}" ] || log "WARNING: jobs still not finished after 20s: $left"
    fi
fi
if [ -n "$slurmd" ]; then
    steps=$(scontrol listpids 2>/dev/null | awk 'NR>1{print $1}' | tr '\n' ' ' || true)
    [ -z "${steps// /}" ] || log "WARNING: job step processes still present on the node: $steps"
fi

# 2. daemons, in reverse start order
[ -n "$slurmd" ] && { stop_pid slurmd "$slurmd" || rc=1; }
[ -n "$ctld" ]   && { stop_pid slurmctld "$ctld" || rc=1; }
[ -n "$munged" ] && { stop_pid munged "$munged" || rc=1; }
[ -n "$slurmd$ctld$munged" ] || log "nothing running under $ROOT"
rm -f "$RUN/slurmd.pid" "$RUN/slurmctld.pid" "$RUN/munged.pid"

if [ "${SLURM_LOCAL_PURGE:-0}" = 1 ] && [ $rc = 0 ] && [ -f "$ROOT/etc/slurm.conf" ] \
   && [ "$(realpath -m "$ROOT")" != / ]; then
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null || true)" = "$ROOT/etc/slurm.conf" ] \
        && rm -f /etc/slurm/slurm.conf
    rm -rf -- "$ROOT"
    log "removed $ROOT"
fi
exit $rc
