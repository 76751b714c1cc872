#!/usr/bin/env bash
# Make sure the system binaries the test-suite starts for real are present:
#   * redis-server
#   * PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/<ver>/bin
#   * Debian's chromium at /usr/bin/chromium (tests/clients drive it with Playwright)
#   * curl (tests/docs runs the README's curl commands)
#   * promtool, from Debian's prometheus package (tests/observability checks the
#     alert rules with `promtool check rules`)
#
# Idempotent and silent when everything is already installed. When something is
# missing it installs it with apt-get (Debian; needs root or sudo).
#
# We only need the binaries: the tests start their own throw-away servers on
# free ports, so the Debian-managed system services are neither needed nor touched.
#
# Usage: bash scripts/ensure-system-deps.sh [--print-pg-bindir]
#   --print-pg-bindir   additionally print the PostgreSQL bin dir on stdout
set -euo pipefail

print_bindir=0
for arg in "$@"; do
    case "$arg" in
        --print-pg-bindir) print_bindir=1 ;;
        -h | --help)
            sed -n '2,17p' "$0"
            exit 0
            ;;
        *)
            echo "ensure-system-deps: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

# Highest-version PostgreSQL bin dir that has the server binaries, or nothing.
find_pg_bindir() {
    local dir
    # `sort -V` orders 9.6 < 10 < 15 < 16 correctly.
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 0
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[[ -n "$(find_pg_bindir)" ]] || missing+=(postgresql)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if ((${#missing[@]} > 0)); then
    echo "ensure-system-deps: installing ${missing[*]} ..." >&2
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo_cmd=(sudo -n)
        else
            echo "ensure-system-deps: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq >&2
    # Keep apt's progress chatter out of CI logs but show errors.
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

    if ! command -v redis-server >/dev/null 2>&1; then
        echo "ensure-system-deps: redis-server still not found after install" >&2
        exit 1
    fi
    if [[ -z "$(find_pg_bindir)" ]]; then
        echo "ensure-system-deps: PostgreSQL server binaries still not found after install" >&2
        exit 1
    fi
    if ! command -v curl >/dev/null 2>&1; then
        echo "ensure-system-deps: curl still not found after install" >&2
        exit 1
    fi
    if [[ ! -x /usr/bin/chromium ]]; then
        echo "ensure-system-deps: /usr/bin/chromium still not found after install" >&2
        exit 1
    fi
    if ! command -v promtool >/dev/null 2>&1; then
        echo "ensure-system-deps: promtool still not found after install" >&2
        exit 1
    fi
    echo "ensure-system-deps: done" >&2
fi

# The test harness runs PostgreSQL as the `postgres` system user when we are
# root (initdb refuses to run as root); the Debian package creates it.
if [[ "$(id -u)" -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "ensure-system-deps: system user 'postgres' is missing (needed to run PostgreSQL as root)" >&2
    exit 1
fi

if ((print_bindir)); then
    find_pg_bindir
fi
