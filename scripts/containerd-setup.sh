#!/usr/bin/env bash
# containerd-setup.sh - prepare a real containerd (Debian 12's 1.6.20, with runc and
# containernetworking-plugins) for the tests that put interlink-cri in front of it,
# and two images made without any registry: a busybox image and a pause (sandbox)
# image, written as OCI image-layout archives that `ctr images import` accepts.
# Idempotent and bounded: every wait has a deadline, every failure says what failed;
# a second run with nothing changed only checks the packages. Needs root (it installs
# packages). It starts no containerd: each test starts its own, on private
# directories, with tests/src/containerd.rs.
#
# Result, under $CONTAINERD_DIR (default /tmp/containerd-test):
#   env.sh           `. env.sh` -> CONTAINERD_BIN, CONTAINERD_CTR, CONTAINERD_RUNC,
#                    CONTAINERD_CNI_BIN, CONTAINERD_BUSYBOX_ARCHIVE,
#                    CONTAINERD_BUSYBOX_IMAGES, CONTAINERD_PAUSE_ARCHIVE,
#                    CONTAINERD_PAUSE_IMAGE (what the tests read)
#   busybox.oci.tar  busybox-static, a hard link per applet; every name of
#                    CONTAINERD_BUSYBOX_IMAGES is in its index (import creates them all)
#   pause.oci.tar    a static pause process (or, without a C compiler, busybox `sleep`)
#   stamp            what the archives were built from (skip the build when unchanged)
#
# Host facts the tests' containerd config works around (Debian 12 VM, see
# tests/src/containerd.rs): root lacks CAP_SYS_RESOURCE (restrict_oom_score_adj),
# cgroups in hybrid mode (runc, cgroupfs, no systemd), no hugetlb controller, no
# registry (the sandbox image is the local pause image, never pulled).
set -euo pipefail

CONTAINERD_DIR=${CONTAINERD_DIR:-/tmp/containerd-test}
BUSYBOX_IMAGES=${CONTAINERD_BUSYBOX_IMAGES:-"docker.io/library/busybox:latest registry.k8s.io/e2e-test-images/busybox:1.29-2 localhost/busybox:latest"}
PAUSE_IMAGE=${CONTAINERD_PAUSE_IMAGE:-localhost/interlink-pause:3.9}
PKGS=(containerd runc containernetworking-plugins busybox-static)

log()  { printf '[containerd-setup %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[containerd-setup] FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages)"

# ---------------------------------------------------------------- 1. packages
. "$(dirname "$0")/packages.sh"
ensure_packages "${PKGS[@]}"
CTRD=$(command -v containerd) || fail "containerd not on PATH after install"
CTR=$(command -v ctr) || fail "ctr not on PATH after install"
RUNC=$(command -v runc) || fail "runc not on PATH after install"
CNI_BIN=/usr/lib/cni
for plug in bridge host-local loopback; do
    [ -x $CNI_BIN/$plug ] || fail "CNI plugin $CNI_BIN/$plug missing (package containernetworking-plugins)"
done
[ -x /bin/busybox ] || fail "/bin/busybox missing (package busybox-static)"
log "versions: $("$CTRD" --version | awk '{print $1, $3}') | $("$RUNC" --version | head -1)"

# ---------------------------------------------------------------- 2. images
mkdir -p "$CONTAINERD_DIR"
arch=$(dpkg --print-architecture)   # Debian's names are the OCI ones for amd64/arm64
# the C compiler for the pause binary; CONTAINERD_PAUSE_CC="" forces the busybox fallback
CC=${CONTAINERD_PAUSE_CC-$(command -v cc || command -v gcc || true)}
# everything the archives are made from; the same stamp means the same archives
stamp=$( { sha256sum "$0" /bin/busybox | cut -d' ' -f1
           echo "$arch|$BUSYBOX_IMAGES|$PAUSE_IMAGE|cc=${CC:+$("$CC" --version | head -1)}"; } \
         | sha256sum | cut -d' ' -f1)
if [ -f "$CONTAINERD_DIR/stamp" ] && [ "$(cat "$CONTAINERD_DIR/stamp")" = "$stamp" ] \
   && [ -s "$CONTAINERD_DIR/busybox.oci.tar" ] && [ -s "$CONTAINERD_DIR/pause.oci.tar" ]; then
    log "images unchanged (stamp ${stamp:0:12})"
else
    B=$(mktemp -d "$CONTAINERD_DIR/.build.XXXXXX")
    trap 'rm -rf "$B"' EXIT
    tarc() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .; }
    blob() {   # blob FILE MEDIATYPE -> descriptor JSON; moves FILE into the layout
        local d s; d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
        mv "$1" "$L/blobs/sha256/$d"
        printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
    }
    # oci_archive OUT ROOTFS_DIR CONFIG_JSON_FRAGMENT NAME... : one layer, one manifest,
    # one index entry per NAME (annotation io.containerd.image.name, read by ctr import)
    oci_archive() {
        local out=$1 rootfs=$2 cfg=$3; shift 3
        L=$B/layout; rm -rf "$L"; mkdir -p "$L/blobs/sha256"
        tarc "$rootfs" "$B/layer.tar"
        local diff; diff=sha256:$(sha256sum "$B/layer.tar" | cut -d' ' -f1)
        local layer; layer=$(blob "$B/layer.tar" application/vnd.oci.image.layer.v1.tar)
        printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
            "$arch" "$cfg" "$diff" > "$B/config.json"
        local config; config=$(blob "$B/config.json" application/vnd.oci.image.config.v1+json)
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
            "$config" "$layer" > "$B/manifest.json"
        local man; man=$(blob "$B/manifest.json" application/vnd.oci.image.manifest.v1+json)
        local entries="" n
        for n in "$@"; do
            entries+="${entries:+,}${man%\}},\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\"annotations\":{\"io.containerd.image.name\":\"$n\",\"org.opencontainers.image.ref.name\":\"${n##*:}\"}}"
        done
        printf '{"schemaVersion":2,"manifests":[%s]}' "$entries" > "$L/index.json"
        printf '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
        tarc "$L" "$out"
    }

    # busybox: busybox-static, every applet a hard link at its usual path
    r=$B/busybox
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,etc,proc,sys,tmp,root,home,run,var/tmp}
    chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 700 "$r/root"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list-full); do
        [ -e "$r/$a" ] || ln "$r/bin/busybox" "$r/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$r/etc/passwd"
    printf 'root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:\nnogroup:x:65534:\n' > "$r/etc/group"
    oci_archive "$B/busybox.oci.tar" "$r" \
        '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}' \
        $BUSYBOX_IMAGES

    # pause: a static binary that sleeps until SIGTERM/SIGINT (exit 0) and reaps
    # children; without a C compiler, busybox `sleep` (pause images are only ever
    # SIGKILLed by containerd's StopPodSandbox, so it stops as fast)
    p=$B/pause; mkdir -p "$p"
    cat > "$B/pause.c" <<'C'
/* the pod sandbox process: wait for signals; TERM/INT end it, CHLD reaps */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction q = {.sa_handler = quit}, c = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGTERM, &q, 0) || sigaction(SIGINT, &q, 0) || sigaction(SIGCHLD, &c, 0)) return 1;
    for (;;) pause();
}
C
    if [ -n "$CC" ] && timeout 120 "$CC" -static -Os -s -o "$p/pause" "$B/pause.c" 2>"$B/cc.log"; then
        pause_cfg='{"Entrypoint":["/pause"],"User":"65535:65535"}'
        log "pause: static binary ($(stat -c %s "$p/pause") bytes)"
    else
        [ -n "$CC" ] && log "cc -static failed ($(tail -1 "$B/cc.log")); pause falls back to busybox sleep"
        [ -n "$CC" ] || log "no C compiler; pause falls back to busybox sleep"
        mkdir -p "$p/bin"; cp /bin/busybox "$p/bin/sleep"
        pause_cfg='{"Entrypoint":["/bin/sleep","2147483647"],"User":"65535:65535"}'
    fi
    oci_archive "$B/pause.oci.tar" "$p" "$pause_cfg" "$PAUSE_IMAGE"

    mv "$B/busybox.oci.tar" "$CONTAINERD_DIR/busybox.oci.tar"
    mv "$B/pause.oci.tar" "$CONTAINERD_DIR/pause.oci.tar"
    echo "$stamp" > "$CONTAINERD_DIR/stamp"
    log "images built (stamp ${stamp:0:12}): busybox $(stat -c %s "$CONTAINERD_DIR/busybox.oci.tar") B, pause $(stat -c %s "$CONTAINERD_DIR/pause.oci.tar") B"
fi

# ---------------------------------------------------------------- 3. env.sh
cat > "$CONTAINERD_DIR/env.sh.new" <<ENV
# generated by scripts/containerd-setup.sh; source me:  . $CONTAINERD_DIR/env.sh
export CONTAINERD_DIR="$CONTAINERD_DIR"
export CONTAINERD_BIN="$CTRD"
export CONTAINERD_CTR="$CTR"
export CONTAINERD_RUNC="$RUNC"
export CONTAINERD_CNI_BIN="$CNI_BIN"
export CONTAINERD_BUSYBOX_ARCHIVE="$CONTAINERD_DIR/busybox.oci.tar"
export CONTAINERD_BUSYBOX_IMAGES="$BUSYBOX_IMAGES"
export CONTAINERD_PAUSE_ARCHIVE="$CONTAINERD_DIR/pause.oci.tar"
export CONTAINERD_PAUSE_IMAGE="$PAUSE_IMAGE"
ENV
mv "$CONTAINERD_DIR/env.sh.new" "$CONTAINERD_DIR/env.sh"
log "ready. Tests read $CONTAINERD_DIR/env.sh (no containerd is left running)"
