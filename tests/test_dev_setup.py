"""deploy/dev.sh's package choices, where a test can see them without installing anything.

The script's functions run from a sourced copy of the script, against a directory of the
test's own standing in for / (HAMGR_SETUP_ROOT) and with a fake `apt-get` first on PATH that
records its command line and what the install would have met: policy-rc.d forbidding every
service start, the createcluster.d drop-in turning Debian's default cluster off. One test asks
Debian's own pg_conftool (the call postgresql-common's maintainer script makes) whether that
drop-in is honoured. Nothing here touches the machine's packages, services or /etc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_SH = REPO / "deploy" / "dev.sh"
DEBIAN_TEMPLATE = Path("/usr/share/postgresql-common/createcluster.conf")
ADMIN_POLICY = "#!/bin/sh\n# the admin's own policy\nexit 0\n"

FAKE_APT_GET = r"""#!/bin/bash
# Records each call; for `install`, also what a package's maintainer scripts would meet.
echo "$*" >> "$FAKE_LOG/calls"
if [ "$1" = install ]; then
    printf '%s\n' "$@" > "$FAKE_LOG/install-argv"
    "$HAMGR_SETUP_ROOT/usr/sbin/policy-rc.d" etcd start
    echo $? > "$FAKE_LOG/policy-rc-status"
    cat "$HAMGR_SETUP_ROOT"/etc/postgresql-common/createcluster.d/*.conf > "$FAKE_LOG/dropins"
    exit "${FAKE_APT_STATUS:-0}"
fi
"""


def run_sourced(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash after sourcing deploy/dev.sh (which then only defines functions)."""
    return subprocess.run(
        ["bash", "-c", f'. "$1"; {script}', "test-shell", str(DEV_SH)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_the_apt_command_line_installs_without_recommends_or_prompts() -> None:
    out = run_sourced("apt_install_command postgresql-15 etcd-server")
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[:2] == ["apt-get", "install"]
    assert {"-y", "--no-install-recommends"} <= set(words)
    assert "Dpkg::Options::=--force-confold" in words  # an admin's changed conffiles kept
    assert words[-2:] == ["postgresql-15", "etcd-server"]


def test_the_server_package_is_debians_default_major_version() -> None:
    out = run_sourced("pg_server_package")
    assert out.returncode == 0, out.stderr
    # postgresql-15 on Debian 12; the metapackage only when apt's lists cannot say.
    assert out.stdout.strip() == "postgresql" or out.stdout.strip().startswith("postgresql-")
    assert out.stdout.strip() != "postgresql-contrib"


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    """A stand-in for /: Debian's createcluster.conf (it includes createcluster.d) and an
    enabled etcd.service, as the etcd-server package leaves them."""
    if os.geteuid() != 0:
        pytest.skip("apt_install refuses to run without root")
    root = tmp_path / "root"
    conf = root / "etc/postgresql-common/createcluster.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("ssl = on\ninclude_dir '/etc/postgresql-common/createcluster.d'\n")
    unit = root / "lib/systemd/system/etcd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "etcd.service").symlink_to("/lib/systemd/system/etcd.service")
    return root


def fake_env(tmp_path: Path, root: Path, status: int = 0) -> dict[str, str]:
    """PATH with the fake apt-get first (its install exits `status`); where it records; the
    stand-in root."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir(exist_ok=True)
    log.mkdir(exist_ok=True)
    fake = bin_dir / "apt-get"
    fake.write_text(FAKE_APT_GET)
    fake.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_APT_STATUS": str(status),
        "HAMGR_SETUP_ROOT": str(root),
    }


@pytest.mark.parametrize("admin_policy", [False, True], ids=["no-policy-rc.d", "admin-policy"])
def test_an_install_holds_daemons_and_the_default_cluster_only_while_apt_runs(
    tmp_path: Path, sysroot: Path, admin_policy: bool
) -> None:
    policy = sysroot / "usr/sbin/policy-rc.d"
    if admin_policy:
        policy.parent.mkdir(parents=True)
        policy.write_text(ADMIN_POLICY)
    conf = sysroot / "etc/postgresql-common/createcluster.conf"
    conf_before = conf.read_text()
    env = fake_env(tmp_path, sysroot)

    out = run_sourced("apt_install etcd-server", env)

    assert out.returncode == 0, out.stderr
    log = tmp_path / "log"
    assert (log / "calls").read_text().splitlines()[0] == "update -qq"
    argv = (log / "install-argv").read_text().split()
    assert "--no-install-recommends" in argv and argv[-1] == "etcd-server"
    # During the install: every service start forbidden, no default PostgreSQL cluster.
    assert (log / "policy-rc-status").read_text().strip() == "101"
    assert "create_main_cluster = false" in (log / "dropins").read_text()
    # Afterwards: the admin's policy back (or none), the drop-in and its directory gone,
    # createcluster.conf untouched, etcd no longer started at boot.
    if admin_policy:
        assert policy.read_text() == ADMIN_POLICY
    else:
        assert not policy.exists()
    assert not (sysroot / "etc/postgresql-common/createcluster.d").exists()
    assert conf.read_text() == conf_before
    if shutil.which("systemctl"):
        assert not (sysroot / "etc/systemd/system/multi-user.target.wants/etcd.service").exists()


def test_a_failed_install_still_releases_the_hold(tmp_path: Path, sysroot: Path) -> None:
    policy = sysroot / "usr/sbin/policy-rc.d"
    policy.parent.mkdir(parents=True)
    policy.write_text(ADMIN_POLICY)
    env = fake_env(tmp_path, sysroot, status=100)

    out = run_sourced("apt_install etcd-server", env)

    assert out.returncode == 100
    assert (tmp_path / "log" / "policy-rc-status").read_text().strip() == "101"
    assert policy.read_text() == ADMIN_POLICY
    assert not (sysroot / "etc/postgresql-common/createcluster.d").exists()
    assert not list(policy.parent.glob("*.hamgr-saved"))
    # Nothing got installed, so nothing is disabled either.
    assert (sysroot / "etc/systemd/system/multi-user.target.wants/etcd.service").is_symlink()


def test_an_existing_createcluster_d_keeps_its_files(tmp_path: Path, sysroot: Path) -> None:
    ccdir = sysroot / "etc/postgresql-common/createcluster.d"
    ccdir.mkdir()
    (ccdir / "admin.conf").write_text("data_directory = '/srv/pg/%v/%c'\n")

    out = run_sourced("hold_daemons && release_daemons", fake_env(tmp_path, sysroot))

    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in ccdir.iterdir()) == ["admin.conf"]


@pytest.mark.skipif(
    shutil.which("pg_conftool") is None or not DEBIAN_TEMPLATE.exists(),
    reason="Debian's postgresql-common is not installed",
)
def test_debians_postgresql_common_reads_the_drop_in(tmp_path: Path) -> None:
    """The check postgresql-NN's postinst makes before creating the default cluster
    (`pg_conftool createcluster.conf show -bs create_main_cluster`), on Debian's own
    template: "off" while the hold is on, unset (the default, on) afterwards."""
    root = tmp_path / "root"
    conf = root / "etc/postgresql-common/createcluster.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        DEBIAN_TEMPLATE.read_text().replace(
            "'/etc/postgresql-common/createcluster.d'",
            f"'{root}/etc/postgresql-common/createcluster.d'",
        )
    )
    show = f"pg_conftool {conf} show -bs create_main_cluster"
    env = {"HAMGR_SETUP_ROOT": str(root)}

    held = run_sourced(f"hold_daemons && {show}", env)
    released = run_sourced(f"release_daemons && {show}", env)

    assert held.stdout.strip() == "off", held.stderr
    assert released.returncode != 0 and released.stdout.strip() == ""


def test_plan_changes_nothing_and_says_what_it_would_install() -> None:
    out = subprocess.run([str(DEV_SH), "plan"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    installs = [line for line in out.stdout.splitlines() if "apt-get install" in line]
    assert all("--no-install-recommends" in line for line in installs), out.stdout
