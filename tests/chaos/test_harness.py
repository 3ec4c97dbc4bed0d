"""The chaos harness's own parts: the fsync stall, the relay's control file, and (as root) the
network of namespaces with the relay between members, removed on exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import netns
from tests.chaos.relay import LinkRule, parse_control
from tests.chaos.slowfsync import Stall

REPO = Path(__file__).resolve().parents[2]


def test_the_stall_applies_only_under_the_store_dir_and_follows_its_file(tmp_path: Path) -> None:
    store, other, control = tmp_path / "store", tmp_path / "other", tmp_path / "stall"
    store.mkdir()
    other.mkdir()
    stall = Stall(control, store)
    assert stall.seconds() == 0.0  # no file: no stall
    with open(store / "seg", "wb") as inside, open(other / "x", "wb") as outside:
        assert stall.applies_to(inside.fileno())
        assert not stall.applies_to(outside.fileno())
    dir_fd = os.open(store, os.O_RDONLY)
    try:
        assert stall.applies_to(dir_fd)  # the directory's own fsync too
    finally:
        os.close(dir_fd)
    control.write_text("0.25")
    assert Stall(control, store).seconds() == 0.25
    control.write_text("junk")
    assert Stall(control, store).seconds() == 0.0


def test_the_control_file_names_what_is_wrong() -> None:
    version, links, default = parse_control(
        '{"version": 2, "default": {"delay": 0.05, "jitter": 0.03},'
        ' "links": {"a>b": {"cut": "blackhole"}}}'
    )
    assert version == 2 and default == LinkRule(delay=0.05, jitter=0.03)
    assert links[("a", "b")] == LinkRule(delay=0.05, jitter=0.03, cut="blackhole")
    for text, message in [
        ('{"links": {"ab": {}}}', "is not 'FROM>TO'"),
        ('{"links": {"a>b": {"cut": "drop"}}}', r"cut: 'drop' is not one of"),
        ('{"default": {"delay": -1}}', "delay must be"),
        ('{"default": {"lag": 1}}', r"unknown keys \['lag'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_control(text)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[netns.Network, Path]]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    control = tmp_path / "relay.json"
    control.write_text('{"version": 1}')
    with netns.Network(2) as net:
        relay = subprocess.Popen(
            [
                *(*net.hub_prefix(), sys.executable, "-m", "tests.chaos.relay"),
                *("--listen", f"{netns.HUB_IP}:{netns.RELAY_PORT}", "--control", str(control)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert relay.stdout is not None and relay.stdout.readline().strip() == "relay ready"
            yield net, control
        finally:
            relay.kill()
            relay.wait(timeout=10)


def _echo_server(net: netns.Network) -> subprocess.Popen[str]:
    code = (
        "import socket\n"
        f"s=socket.socket(); s.bind(({netns.member_ip(2)!r}, 5999)); s.listen()\n"
        "print('up', flush=True)\n"
        "for _ in range(20):\n"
        "    c, a = s.accept(); c.sendall(a[0].encode()); c.close()\n"
    )
    server = subprocess.Popen([*net.exec_prefix(2), "python3", "-c", code], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert server.stdout is not None and server.stdout.readline().strip() == "up"
    return server


def _echo(ns: str, host: str) -> str:
    """What the echo server on `host` answers a connection from namespace `ns` ('' if none)."""
    code = (
        "import socket\n"
        "try:\n"
        f"    s = socket.create_connection(({host!r}, 5999), timeout=3)\n"
        "    print(s.recv(100).decode())\n"
        "except OSError:\n"
        "    print()\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True, text=True, timeout=20, check=True
    )  # fmt: skip
    return done.stdout.strip()


def _wait_applied(control: Path, version: int) -> None:
    applied = control.with_name(control.name + ".applied")
    for _ in range(200):
        if applied.exists() and int(applied.read_text() or 0) >= version:
            return
        subprocess.run(["sleep", "0.02"], check=True)
    raise AssertionError(f"relay did not apply version {version}")


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_members_reach_each_other_only_through_the_relay(
    network: tuple[netns.Network, Path],
) -> None:
    net, control = network
    server = _echo_server(net)
    try:
        m1, m2 = netns.member_ns(1), netns.member_ns(2)
        # m2 sees the connection come from the hub: it crossed the relay
        assert _echo(m1, netns.member_ip(2)) == netns.HUB_IP
        link = f"{netns.member_ip(1)}>{netns.member_ip(2)}"
        control.write_text(json.dumps({"version": 2, "links": {link: {"cut": "refuse"}}}))
        _wait_applied(control, 2)
        assert _echo(m1, netns.member_ip(2)) == ""  # reset by the relay
        control.write_text('{"version": 3}')
        _wait_applied(control, 3)
        assert _echo(m1, netns.member_ip(2)) == netns.HUB_IP
        # the address exists only in m2's namespace: not on the hub, not in m1
        assert netns.member_ip(2) not in netns.run("ip", "-o", "addr", ns=m1)
        assert netns.member_ip(2) not in netns.run("ip", "-o", "addr", ns=netns.HUB)
        assert netns.member_ip(2) in netns.run("ip", "-o", "addr", ns=m2)
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_network_is_removed_on_exit_even_after_a_failure() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    with pytest.raises(RuntimeError, match="boom"), netns.Network(2):
        assert len(netns.our_namespaces()) == 3
        raise RuntimeError("boom")
    assert netns.our_namespaces() == []
    assert not Path(f"/sys/class/net/{netns.UPLINK_ROOT}").exists()
