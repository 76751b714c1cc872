#!/usr/bin/env bash
# Install what building the image without Docker needs (tests/image,
# docs/deploy.md "Building the image without Docker"): Debian's podman (builds
# and runs OCI images, daemonless), runc (its runtime here: crun refuses hosts
# with hybrid cgroup v1) and mmdebstrap (a Debian root filesystem from
# Debian's own packages, for a base image when no registry is reachable).
#
# Idempotent and silent when both are installed; installs with apt-get
# otherwise (Debian; needs root or sudo).
#
# Usage: bash scripts/ensure-image-tools.sh
set -euo pipefail

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v runc >/dev/null 2>&1 || missing+=(runc)
((${#missing[@]} == 0)) && exit 0

echo "ensure-image-tools: installing ${missing[*]} ..." >&2
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo -n)
    else
        echo "ensure-image-tools: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! {
    "${sudo_cmd[@]}" apt-get update -qq &&
        "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            uidmap fuse-overlayfs
} >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-image-tools: install failed" >&2
    exit 1
fi
for tool in podman mmdebstrap runc; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "ensure-image-tools: $tool still not found after install" >&2
        exit 1
    }
done
echo "ensure-image-tools: done" >&2
