#!/usr/bin/env bash
# slurm-start.sh - install (if missing), configure and start a single-node Slurm
# cluster on localhost (munged + slurmctld + slurmd, no systemd, no cgroups),
# for the Slurm plugin's tests and benchmarks (scripts/test.sh calls it).
#
# The one partition (debug) lets jobs share the node's cores (OverSubscribe=FORCE),
# so the plugin's tests can run many short jobs at once on a 2-core machine.
# Clients need SLURM_CONF: source $SLURM_LOCAL_ROOT/env.sh.
#
# Idempotent: if the daemons started by a previous run are still alive and the
# generated configuration is unchanged, it only re-checks that the node is idle.
# On success it prints the line to source for clients and exits 0; on failure
# it prints the reason plus log tails, stops whatever THIS run started, exits 1.
#
# Tunables (environment):
#   SLURM_LOCAL_ROOT      runtime dir               (default /tmp/slurm-local/cluster)
#   SLURM_LOCAL_NODENAME  NodeName                  (default localnode)
#   SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT (default 6817 / 6818)
#   SLURM_LOCAL_WAIT      max seconds to wait for readiness (default 60)
#   SLURM_LOCAL_MIN_JOB_AGE  seconds finished jobs stay in slurmctld (default 3600)
#   SLURM_LOCAL_OVERSUBSCRIBE  jobs that may share one core (default 16)
#   SLURM_LOCAL_LINK_ETC=1   also symlink /etc/slurm/slurm.conf -> generated conf
#                            (only if /etc/slurm/slurm.conf does not exist yet)
#   SLURM_LOCAL_KEEP_ON_FAILURE=1  do not stop daemons on failure (debugging)
set -euo pipefail

ROOT=${SLURM_LOCAL_ROOT:-/tmp/slurm-local/cluster}
NODE=${SLURM_LOCAL_NODENAME:-localnode}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
WAIT=${SLURM_LOCAL_WAIT:-60}
MIN_JOB_AGE=${SLURM_LOCAL_MIN_JOB_AGE:-3600}
OVERSUB=${SLURM_LOCAL_OVERSUBSCRIBE:-16}

ETC=$ROOT/etc; RUN=$ROOT/run; LOG=$ROOT/log; MUNGE=$ROOT/munge
STATE=$ROOT/state; SPOOL=$ROOT/spool
CONF=$ETC/slurm.conf
SOCK=$MUNGE/munge.socket.2

log() { printf '[slurm-local %s] %s\n' "$(date +%T)" "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T_START=$(now_ms)
elapsed() { local t; t=$(( $(now_ms) - T_START )); printf '%d.%03ds' $((t / 1000)) $((t % 1000)); }

STARTED_PIDS=()   # pids started by this invocation (for cleanup on failure)

dump_logs() {
    local f
    for f in "$LOG/munged.log" "$LOG/slurmctld.log" "$LOG/slurmd.log"; do
        [ -f "$f" ] || continue
        echo "----- last 25 lines of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

die() {
    log "ERROR: $*"
    dump_logs
    if [ "${SLURM_LOCAL_KEEP_ON_FAILURE:-0}" != 1 ] && [ ${#STARTED_PIDS[@]} -gt 0 ]; then
        log "stopping processes started by this run: ${STARTED_PIDS[*]}"
        kill "${STARTED_PIDS[@]}" 2>/dev/null || true
    fi
    exit 1
}

# running PID: process exists and is not a zombie (an un-reaped daemon stays
# in /proc as state Z when PID 1 does not reap promptly, e.g. in containers)
running() { local st; st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }

# fail fast if a daemon logged 'fatal:' since OFFSET (e.g. port already in use)
log_size() { if [ -f "$1" ]; then stat -c %s "$1"; else echo 0; fi; }
check_fatal() {   # check_fatal NAME LOGFILE OFFSET
    [ -f "$2" ] || return 0
    local l; l=$(tail -c +"$(( $3 + 1 ))" "$2" 2>/dev/null | grep -m1 'fatal:' || true)
    [ -z "$l" ] || die "$1 failed: $l"
}

# pid_alive PIDFILE COMM -> prints pid and returns 0 if the pidfile names a live
# process whose comm is COMM and whose command line mentions $ROOT.
pid_alive() {
    local pf=$1 comm=$2 pid
    [ -s "$pf" ] || return 1
    pid=$(tr -dc '0-9' < "$pf")
    [ -n "$pid" ] && running "$pid" || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    local cmd; cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $cmd == *"$ROOT"* ]] || return 1
    echo "$pid"
}

# ---------------------------------------------------------------- 1. install
need=()
for p in munge slurmctld slurmd slurm-client; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "packages missing (${need[*]}) and not root"
    mkdir -p "$ROOT/log"; APTLOG=$ROOT/log/apt-install.log
    log "installing: ${need[*]} (log: $APTLOG)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$APTLOG" 2>&1 \
        || { tail -n 20 "$APTLOG" >&2; die "apt-get update failed"; }
    # Postinst scripts try to start the services via invoke-rc.d; without
    # systemd (and with a policy-rc.d that returns 101) that is just skipped.
    apt-get install -y -q --no-install-recommends "${need[@]}" >>"$APTLOG" 2>&1 \
        || { tail -n 20 "$APTLOG" >&2; die "apt-get install ${need[*]} failed"; }
    log "installed in $(elapsed)"
fi
for b in munged munge unmunge slurmctld slurmd sbatch scontrol sinfo squeue; do
    command -v "$b" >/dev/null || die "binary $b not found after install"
done

# ---------------------------------------------------------------- 2. config
mkdir -p "$ETC" "$RUN" "$LOG" "$MUNGE" "$STATE" "$SPOOL"
# munged refuses a socket directory that is not world-executable, and a key
# that is group/other-readable.
chmod 0755 "$ROOT" "$ETC" "$RUN" "$LOG" "$MUNGE" "$SPOOL"   # SPOOL: non-root jobs exec their script from it
chmod 0700 "$STATE"

# Hardware as slurmd sees it (first line of `slurmd -C`), so the node is not
# drained for "Low socket*core count"/"Low RealMemory".  RealMemory is
# declared at 90% of what slurmd reports, to keep a safety margin.
hw=$(env -u SLURM_CONF slurmd -C 2>/dev/null | head -n 1 || true)
[[ $hw == NodeName=* ]] || die "could not read hardware with 'slurmd -C' (got: $hw)"
hw=${hw#NodeName=* }            # drop 'NodeName=<host> '
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[ -n "$mem" ] || die "no RealMemory in slurmd -C output: $hw"
mem90=$(( mem * 9 / 10 )); [ "$mem90" -ge 1 ] || mem90=1
hw=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem90/" <<<"$hw")

new_conf=$(cat <<EOF
# Generated by slurm-start.sh - single-node Slurm on localhost, no systemd/cgroups.
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
KillWait=5
NodeName=$NODE NodeHostname=localhost NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:$OVERSUB
EOF
)

ctld_pid=$(pid_alive "$RUN/slurmctld.pid" slurmctld || true)
slurmd_pid=$(pid_alive "$RUN/slurmd.pid" slurmd || true)
munged_pid=$(pid_alive "$RUN/munged.pid" munged || true)

if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new_conf" ]; then
    :   # unchanged
elif [ -n "$ctld_pid$slurmd_pid" ]; then
    die "configuration changed while daemons are running; run scripts/slurm-stop.sh first"
else
    printf '%s\n' "$new_conf" > "$CONF"
fi
printf 'export SLURM_CONF=%s\n' "$CONF" > "$ROOT/env.sh"
export SLURM_CONF=$CONF

if [ "${SLURM_LOCAL_LINK_ETC:-0}" = 1 ]; then
    if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm && ln -s "$CONF" /etc/slurm/slurm.conf
        log "linked /etc/slurm/slurm.conf -> $CONF"
    elif [ "$(readlink /etc/slurm/slurm.conf || true)" != "$CONF" ]; then
        log "WARNING: /etc/slurm/slurm.conf exists and is not ours; left alone"
    fi
fi

# ---------------------------------------------------------------- 3. munged
if [ -z "$munged_pid" ]; then
    if [ ! -s "$MUNGE/munge.key" ]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE/munge.key"
        else
            dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chmod 0600 "$MUNGE/munge.key"
    rm -f "$RUN/munged.pid"
    munged --key-file="$MUNGE/munge.key" --socket="$SOCK" \
           --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" \
           --seed-file="$MUNGE/munged.seed" </dev/null >>"$LOG/munged.out" 2>&1 \
        || die "munged failed to start"
    # munged daemonizes; its pidfile is written by the daemon.
    for _ in $(seq 1 $((WAIT * 10))); do
        munged_pid=$(pid_alive "$RUN/munged.pid" munged || true)
        [ -n "$munged_pid" ] && break; sleep 0.1
    done
    [ -n "$munged_pid" ] || die "munged did not write a pidfile"
    STARTED_PIDS+=("$munged_pid")
    log "munged started (pid $munged_pid) at $(elapsed)"
fi
munge -S "$SOCK" -n </dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 \
    || die "munge credential round trip failed on $SOCK"

# ---------------------------------------------------------------- 4. slurmctld
if [ -z "$ctld_pid" ]; then
    rm -f "$RUN/slurmctld.pid"
    ctld_off=$(log_size "$LOG/slurmctld.log")
    slurmctld -f "$CONF" </dev/null >>"$LOG/slurmctld.out" 2>&1 || die "slurmctld failed to start"
    for _ in $(seq 1 $((WAIT * 10))); do
        ctld_pid=$(pid_alive "$RUN/slurmctld.pid" slurmctld || true)
        [ -n "$ctld_pid" ] && break
        check_fatal slurmctld "$LOG/slurmctld.log" "$ctld_off"; sleep 0.1
    done
    [ -n "$ctld_pid" ] || die "slurmctld did not write a pidfile (crashed at startup?)"
    STARTED_PIDS+=("$ctld_pid")
    log "slurmctld started (pid $ctld_pid) at $(elapsed)"
fi
deadline=$(( $(date +%s) + WAIT ))
# (no 'cmd | grep -q' under pipefail: an early grep exit can SIGPIPE cmd)
while :; do
    ping_out=$(scontrol ping 2>/dev/null || true)
    [[ $ping_out == *"is UP"* ]] && break
    running "$ctld_pid" || die "slurmctld (pid $ctld_pid) died"
    check_fatal slurmctld "$LOG/slurmctld.log" "${ctld_off:-0}"
    [ "$(date +%s)" -lt "$deadline" ] || die "slurmctld not answering 'scontrol ping' after ${WAIT}s"
    sleep 0.1
done

# ---------------------------------------------------------------- 5. slurmd
slurmd_started_at=0
if [ -z "$slurmd_pid" ]; then
    rm -f "$RUN/slurmd.pid"
    slurmd_off=$(log_size "$LOG/slurmd.log")
    slurmd_started_at=$(date +%s)
    slurmd -f "$CONF" -N "$NODE" </dev/null >>"$LOG/slurmd.out" 2>&1 || die "slurmd failed to start"
    for _ in $(seq 1 $((WAIT * 10))); do
        slurmd_pid=$(pid_alive "$RUN/slurmd.pid" slurmd || true)
        [ -n "$slurmd_pid" ] && break
        check_fatal slurmd "$LOG/slurmd.log" "$slurmd_off"; sleep 0.1
    done
    [ -n "$slurmd_pid" ] || die "slurmd did not write a pidfile (crashed at startup?)"
    STARTED_PIDS+=("$slurmd_pid")
    log "slurmd started (pid $slurmd_pid) at $(elapsed)"
fi

# ---------------------------------------------------------------- 6. wait idle
# Ready = node IDLE (or MIXED/ALLOCATED when start.sh is re-run while jobs are
# running) without DRAIN/NOT_RESPONDING/... flags and, if we just started
# slurmd, registered by that slurmd (SlurmdStartTime >= its start second).
state=""; reason=""
while :; do
    info=$(scontrol -o show node "$NODE" 2>/dev/null || true)
    state=$(sed -n 's/.* State=\([^ ]*\).*/\1/p' <<<"$info")
    reason=$(sed -n 's/.* Reason=\(.*\)$/\1/p' <<<"$info")
    sst=$(sed -n 's/.* SlurmdStartTime=\([^ ]*\).*/\1/p' <<<"$info")
    sst_epoch=$(date -d "$sst" +%s 2>/dev/null || echo 0)
    base=${state%%+*}; flags=${state#"$base"}
    if [ "$base" = IDLE ] || { [ "$slurmd_started_at" = 0 ] && [[ $base =~ ^(MIXED|ALLOCATED)$ ]]; }; then
        if [[ ! $flags =~ (DRAIN|NOT_RESPONDING|FAIL|INVALID|MAINT|REBOOT|POWER) ]] \
           && [ "$sst_epoch" -ge "$slurmd_started_at" ]; then
            break
        fi
    fi
    running "$slurmd_pid" || die "slurmd (pid $slurmd_pid) died; node state=$state"
    running "$ctld_pid" || die "slurmctld (pid $ctld_pid) died"
    [ "$(date +%s)" -lt "$deadline" ] \
        || die "node $NODE not IDLE after ${WAIT}s (state=${state:-?} reason=${reason:-none})"
    sleep 0.1
done

log "node $NODE is $state after $(elapsed) (slurmctld $ctld_pid, slurmd $slurmd_pid, munged $munged_pid)"
echo "export SLURM_CONF=$CONF"
