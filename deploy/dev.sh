#!/usr/bin/env bash
# One entry point for a newcomer on a fresh Debian machine with Python 3.11+:
#   deploy/dev.sh test [pytest args]   set everything up, then run the test suite (all of it
#                                      without args: tests/tools/suite.py)
#   deploy/dev.sh cluster [demo args]  set everything up, then run a 3-member local cluster
#   deploy/dev.sh setup                only set up (virtualenv, PostgreSQL server binaries)
#   deploy/dev.sh plan                 print what setup would install here; change nothing
# It creates .venv from Debian's /usr/bin/python3 (an interpreter the postgres user can run)
# and, as root, installs what is missing: python3-venv, PostgreSQL's server package, and for
# `test`/`setup` the tools some tests use (haproxy, iptables, etcd-server, chromium). Debian
# packages go in without their recommends, no daemon they ship is started, and no default
# PostgreSQL cluster is created (see "What setup installs" in README.md).
set -euo pipefail

# Where /usr/sbin/policy-rc.d, /etc/postgresql-common and systemd's unit links live: "" (the
# machine itself) unless a test points it at a directory of its own.
sysroot=${HAMGR_SETUP_ROOT:-}
plan_only=
hold_mark="written by hamgr deploy/dev.sh for the length of one apt-get install"
dropin_name=zz-hamgr-dev-setup.conf
# Services that packages installed here enable at boot, and their units: disabled again.
declare -A boot_units=([etcd-server]=etcd.service [haproxy]=haproxy.service)

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

# The apt-get command line that installs packages "$@", one word per line: no prompts, no
# recommends (the `postgresql` server would bring a mail server, cron, sysstat and more),
# configuration files an admin changed kept as they are.
apt_install_command() {
    printf '%s\n' apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# While packages install: /usr/sbin/policy-rc.d answers 101 ("action forbidden"), which
# invoke-rc.d and deb-systemd-invoke honour, so no daemon a package ships gets started; an
# existing policy-rc.d is moved aside and restored by release_daemons. A createcluster.d
# drop-in sets create_main_cluster = false: Debian's postgresql-common (248 in Debian 12)
# reads /etc/postgresql-common/createcluster.conf, whose default version includes that
# directory, so the server package creates no cluster of its own on port 5432. An admin's
# createcluster.conf is never touched; one that does not include the directory gets a note.
hold_daemons() {
    local rc="$sysroot/usr/sbin/policy-rc.d" ccdir="$sysroot/etc/postgresql-common/createcluster.d"
    local ccconf="$sysroot/etc/postgresql-common/createcluster.conf"
    mkdir -p "$(dirname "$rc")"
    if [ -e "$rc" ] && ! grep -qF "$hold_mark" "$rc"; then mv "$rc" "$rc.hamgr-saved"; fi
    printf '#!/bin/sh\n# %s\nexit 101\n' "$hold_mark" > "$rc"
    chmod 755 "$rc"
    if [ ! -d "$ccdir" ]; then mkdir -p "$ccdir"; touch "$ccdir/.hamgr-created"; fi
    printf '# %s\ncreate_main_cluster = false\n' "$hold_mark" > "$ccdir/$dropin_name"
    if [ -e "$ccconf" ] &&
       ! grep -Eq "^[[:space:]]*include_dir[[:space:]=]*'?/etc/postgresql-common/createcluster.d" "$ccconf"; then
        echo "note: $ccconf does not include createcluster.d: a PostgreSQL install may create" \
             "a default cluster (set create_main_cluster = false there to avoid it)" >&2
    fi
}

# Undo hold_daemons; safe to run twice, and after an interrupted run.
release_daemons() {
    local rc="$sysroot/usr/sbin/policy-rc.d" ccdir="$sysroot/etc/postgresql-common/createcluster.d"
    if [ -e "$rc" ] && grep -qF "$hold_mark" "$rc"; then rm -f "$rc"; fi
    if [ -e "$rc.hamgr-saved" ]; then mv "$rc.hamgr-saved" "$rc"; fi
    if [ -e "$ccdir/$dropin_name" ] && grep -qF "$hold_mark" "$ccdir/$dropin_name"; then
        rm -f "$ccdir/$dropin_name"
    fi
    if [ -e "$ccdir/.hamgr-created" ]; then
        rm -f "$ccdir/.hamgr-created"
        rmdir "$ccdir" 2>/dev/null || true
    fi
}

# Packages installed here would start at the next boot (etcd on 127.0.0.1:2379, haproxy):
# nothing needs them running, the tests start their own.
disable_at_boot() {
    local pkg
    command -v systemctl >/dev/null 2>&1 || return 0
    for pkg in "$@"; do
        [ -n "${boot_units[$pkg]:-}" ] || continue
        systemctl ${sysroot:+--root="$sysroot"} disable --quiet "${boot_units[$pkg]}" 2>/dev/null ||
            echo "note: could not disable ${boot_units[$pkg]} at boot (systemctl disable)" >&2
    done
}

# `plan` prints each step instead of taking it.
planned() { echo "$*"; _planned=1; }

apt_update_once() {
    [ -z "${_apt_updated:-}" ] || return 0
    if [ -n "$plan_only" ]; then planned "apt-get update -qq"; else apt-get update -qq; fi
    _apt_updated=1
}

apt_install() {
    local rc=0 cmd
    mapfile -t cmd < <(apt_install_command "$@")
    if [ -n "$plan_only" ]; then
        [ "$(id -u)" = 0 ] || { planned "missing (run as root to install): $*"; return 0; }
        apt_update_once
        planned "DEBIAN_FRONTEND=noninteractive ${cmd[*]}" \
            "(with daemons held and no default PostgreSQL cluster created)"
        return 0
    fi
    [ "$(id -u)" = 0 ] ||
        die "missing $* and not root: install them (apt-get install --no-install-recommends $*) and retry"
    apt_update_once
    trap release_daemons EXIT
    trap 'exit 130' INT TERM HUP
    hold_daemons
    DEBIAN_FRONTEND=noninteractive "${cmd[@]}" >/dev/null || rc=$?
    release_daemons
    trap - EXIT INT TERM HUP
    [ "$rc" = 0 ] || return "$rc"
    disable_at_boot "$@"
}

# Debian's server package of its default major version (postgresql-15 in Debian 12), found
# from the `postgresql` metapackage's dependency; the metapackage itself when apt cannot say.
pg_server_package() {
    local dep
    dep=$(apt-cache depends --important postgresql 2>/dev/null |
          sed -n 's/^ *Depends: \(postgresql-[0-9][0-9]*\)$/\1/p' | head -n 1)
    echo "${dep:-postgresql}"
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
    if [ -n "$plan_only" ]; then planned "$py -m venv $venv && pip install -e '.[dev]'"; return 0; fi
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
        [ -n "$plan_only" ] || echo "installing PostgreSQL server binaries ..." >&2
        [ "$(id -u)" != 0 ] || apt_update_once
        apt_install "$(pg_server_package)"
        [ -n "$plan_only" ] && return 0
        pg_bindir >/dev/null || die "PostgreSQL server binaries still missing after install"
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        if [ -n "$plan_only" ]; then planned "useradd --system postgres"; return 0; fi
        useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
    fi
    HAMGR_PG_BINDIR=$(pg_bindir) || return 0
    export HAMGR_PG_BINDIR
}

# Tools some integration tests use (they skip without them): HAProxy, iptables, etcd, and
# Chromium (the headless browser that loads the status page at GET /ui).
# Installed quietly when any is missing and we are root; otherwise only a note.
ensure_test_tools() {
    local missing=() pkg bin
    for pkg in haproxy:haproxy iptables:iptables etcd-server:etcd chromium:chromium; do
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

main() {
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    venv="$repo/.venv"
    cd "$repo"
    local cmd=${1:-help}
    [ $# -gt 0 ] && shift
    case "$cmd" in
        setup)
            ensure_venv; ensure_postgres; ensure_test_tools
            echo "ready: $venv, PostgreSQL in $HAMGR_PG_BINDIR" ;;
        plan)
            plan_only=1
            ensure_venv; ensure_postgres; ensure_test_tools
            [ -n "${_planned:-}" ] || echo "nothing to do: setup finds everything it needs here" ;;
        test)
            ensure_venv; ensure_postgres; ensure_test_tools
            # No arguments: the whole suite, the pure tests beside the integration ones.
            [ $# -gt 0 ] || exec "$venv/bin/python" tests/tools/suite.py
            exec "$venv/bin/python" -m pytest "$@" ;;
        cluster)
            ensure_venv; ensure_postgres
            exec "$venv/bin/python" -m hamgr.cli.demo "$@" ;;
        *)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
}

# Sourced (by tests), it only defines the functions above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
