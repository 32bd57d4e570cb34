# packages.sh - sourced by the setup scripts (which define log and fail):
# `ensure_packages PKG...` installs the Debian packages among PKG that are missing.
# Bounded: apt-get update is tried 3 times, each step has a timeout. While it
# installs, a policy-rc.d keeps the packages' scripts from starting services
# (containerd's would start a system daemon on hosts with an init script).
ensure_packages() {
    local missing=() p st ok=0 i rc=0 own_prc=0
    local prc=/usr/sbin/policy-rc.d
    for p in "$@"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [ "$st" = "install ok installed" ] || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages present: $*"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for i in 1 2 3; do
        if timeout 900 apt-get -o DPkg::Lock::Timeout=600 update -qq; then ok=1; break; fi
        log "apt-get update failed (attempt $i), retrying in 5 s"; sleep 5
    done
    [ $ok = 1 ] || fail "apt-get update failed 3 times"
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' > $prc; chmod 755 $prc; own_prc=1; fi
    timeout 1200 apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || rc=$?
    [ $own_prc = 1 ] && rm -f $prc
    [ $rc = 0 ] || fail "apt-get install ${missing[*]} failed (exit $rc)"
}
