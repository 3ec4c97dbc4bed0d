#!/usr/bin/env bash
# One entry point for a newcomer on a fresh Debian machine with Python 3.11+:
#   deploy/dev.sh test [pytest args]   set everything up, then run the test suite
#   deploy/dev.sh cluster              set everything up, then run a 3-member local cluster
#   deploy/dev.sh setup                only set up (virtualenv, PostgreSQL server binaries)
# It creates .venv from Debian's /usr/bin/python3 (an interpreter the postgres user can run)
# and installs PostgreSQL's server package when it is missing and we are root, and so the
# tools some tests use (haproxy, iptables, etcd-server).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
cd "$repo"

die() { echo "deploy/dev.sh: $*" >&2; exit 1; }

pick_python() {
    local cand
    for cand in /usr/bin/python3 python3.13 python3.12 python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
           "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    return 1
}

apt_install() {
    [ "$(id -u)" = 0 ] || die "missing $* and not root: install them (apt-get install $*) and retry"
    if [ -z "${_apt_updated:-}" ]; then apt-get update -qq; _apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
    local py stamp want
    py=$(pick_python) || die "no Python >= 3.11 found"
    if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    want=$(cat pyproject.toml | sha256sum | cut -c1-16)
    stamp="$venv/.hamgr-stamp"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "setting up $venv with $py ..." >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    if ! { "$venv/bin/pip" install --upgrade pip &&
           "$venv/bin/pip" install -e ".[dev]"; } >"$venv/install.log" 2>&1; then
        tail -n 30 "$venv/install.log" >&2
        die "installing into $venv failed (full log: $venv/install.log)"
    fi
    echo "$want" > "$stamp"
}

pg_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        [ -x "$d/postgres" ] && { echo "$d"; return 0; }
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/postgres" ] && { echo "$d"; return 0; }
    done
    return 1
}

ensure_postgres() {
    if ! pg_bindir >/dev/null; then
        echo "installing PostgreSQL server binaries ..." >&2
        apt_install postgresql
        pg_bindir >/dev/null || die "PostgreSQL server binaries still missing after install"
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
    fi
    HAMGR_PG_BINDIR=$(pg_bindir)
    export HAMGR_PG_BINDIR
}

# Tools some integration tests use (they skip without them): HAProxy, iptables, etcd.
# Installed quietly when any is missing and we are root; otherwise only a note.
ensure_test_tools() {
    local missing=() pkg bin
    for pkg in haproxy:haproxy iptables:iptables etcd-server:etcd; do
        bin=${pkg#*:}
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${pkg%%:*}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ]; then
        apt_install "${missing[@]}" ||
            echo "note: could not install ${missing[*]}: the tests that need them are skipped" >&2
    else
        echo "note: ${missing[*]} missing (not root): the tests that need them are skipped" >&2
    fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup)
        ensure_venv; ensure_postgres; ensure_test_tools
        echo "ready: $venv, PostgreSQL in $HAMGR_PG_BINDIR" ;;
    test)
        ensure_venv; ensure_postgres; ensure_test_tools
        exec "$venv/bin/python" -m pytest "$@" ;;
    cluster)
        ensure_venv; ensure_postgres
        exec "$venv/bin/python" -m hamgr.demo "$@" ;;
    *)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
