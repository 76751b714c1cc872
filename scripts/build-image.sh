#!/usr/bin/env bash
# Build the image with podman, without Docker and without a registry for base
# images (docs/deploy.md, "Building the image without Docker"):
#
#   1. a base image from Debian's own packages: mmdebstrap (bookworm, with its
#      updates and security suites) -> `podman import`, tagged $BASE_TAG; made
#      once, again with --rebuild-base;
#   2. `podman build --build-arg BASE=$BASE_TAG` of the Dockerfile, tagged $TAG.
#
# Podman runs with runc (crun refuses hybrid cgroup v1 hosts) and explicit
# ulimits (its defaults raise RLIMIT_NPROC, which needs CAP_SYS_RESOURCE).
# The build's RUN steps see this machine's CA bundle and a pip.conf that points
# pip at it (a TLS-intercepting proxy in front of PyPI); both are mounted for
# the build only, never stored in a layer.
#
# Usage: bash scripts/build-image.sh [--rebuild-base]
#   TAG      (default localhost/notify-push:dev)
#   BASE_TAG (default localhost/notify-push-base:bookworm)
#   MIRROR   (default http://deb.debian.org)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${TAG:-localhost/notify-push:dev}"
base_tag="${BASE_TAG:-localhost/notify-push-base:bookworm}"
mirror="${MIRROR:-http://deb.debian.org}"

rebuild_base=0
for arg in "$@"; do
    case "$arg" in
        --rebuild-base) rebuild_base=1 ;;
        -h | --help)
            sed -n '2,21p' "$0"
            exit 0
            ;;
        *)
            echo "build-image: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

bash "$repo/scripts/ensure-image-tools.sh"

# The limits podman asks for must not exceed this process's own.
nofile="$(ulimit -n)"
nproc=4096
podman=(podman --runtime runc)
ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Two builds at once (parallel test runs) must not both make the base.
exec 9>"${TMPDIR:-/tmp}/notify-push-build-base.lock"
flock 9
if ((rebuild_base)) || ! "${podman[@]}" image exists "$base_tag"; then
    echo "build-image: making $base_tag from Debian packages ..." >&2
    # python3.11 and venv (the Dockerfile's `python -m venv`), `python`, CA
    # certificates; docs and man pages left out.
    mmdebstrap --variant=minbase --quiet \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        bookworm "$work/base.tar" \
        "deb $mirror/debian bookworm main" \
        "deb $mirror/debian bookworm-updates main" \
        "deb $mirror/debian-security bookworm-security main"
    "${podman[@]}" import --quiet --change 'CMD ["python"]' "$work/base.tar" "$base_tag" >/dev/null
    rm -f "$work/base.tar"
fi
flock -u 9

printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$work/pip.conf"
"${podman[@]}" build --quiet --format docker --network host "${ulimits[@]}" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -v "$work/pip.conf:/etc/pip.conf:ro" \
    --build-arg "BASE=$base_tag" -t "$tag" "$repo" >&2
echo "$tag"
