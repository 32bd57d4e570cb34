#!/usr/bin/env bash
# Install the Debian packages the tests use (idempotent). Slurm, munge, podman
# and runc are installed by scripts/slurm-start.sh and scripts/engine-setup.sh.
set -euo pipefail
pkgs=(jq curl ca-certificates procps)
missing=()
for p in "${pkgs[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then echo "missing packages ${missing[*]} and not root" >&2; exit 1; fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi
