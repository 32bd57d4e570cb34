#!/usr/bin/env bash
# Run every test of the project: the README's test command, and what .ci/run calls.
#
# 1. builds the WebAssembly guests (scripts/build-guests.sh)
# 2. when run as root, brings up the real backends the plugin tests use:
#    a one-node Slurm cluster (scripts/slurm-start.sh), the container engine
#    with a local image (scripts/engine-setup.sh) and containerd with local
#    images (scripts/containerd-setup.sh; each test starts its own instance);
#    they install what is missing. Slurm is stopped again on exit (by pid, in
#    scripts/slurm-stop.sh). With INTERLINK_SKIP_BACKENDS=1 the Slurm, Docker
#    and containerd tests skip instead.
# 3. builds every binary, then runs `cargo test --workspace`.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p interlink`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

if [ -x scripts/build-guests.sh ]; then
    log "building WebAssembly guests"
    scripts/build-guests.sh
fi

started_slurm=0
cleanup() {
    if [ "$started_slurm" = 1 ] && [ -x scripts/slurm-stop.sh ]; then
        log "stopping Slurm"
        scripts/slurm-stop.sh || true
    fi
}
trap cleanup EXIT

if [ "${INTERLINK_SKIP_BACKENDS:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
    require=1
    if [ -x scripts/slurm-start.sh ]; then
        # stop it on exit only if this run started it (a developer's cluster stays up)
        was_up=0; pgrep -x slurmctld >/dev/null && was_up=1
        log "starting Slurm"
        if scripts/slurm-start.sh; then
            [ "$was_up" = 1 ] || started_slurm=1
        else
            require=0; log "Slurm did not start"
        fi
    fi
    if [ -x scripts/engine-setup.sh ]; then
        log "preparing the container engine"
        scripts/engine-setup.sh || { require=0; log "container engine setup failed"; }
    fi
    if [ -x scripts/containerd-setup.sh ]; then
        # packages and images only: each containerd test starts its own instance
        log "preparing containerd"
        scripts/containerd-setup.sh || { require=0; log "containerd setup failed"; }
    fi
    # backends we brought up must be used: their tests fail instead of skipping
    export INTERLINK_REQUIRE_BACKENDS=$require
    [ -f /tmp/slurm-local/cluster/env.sh ] && . /tmp/slurm-local/cluster/env.sh
fi

log "building binaries"
cargo build --workspace --bins
log "running tests"
cargo test --workspace "$@"
