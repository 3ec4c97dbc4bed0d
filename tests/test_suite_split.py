"""tests/tools/suite.py: the two halves of a whole run together select every test exactly once.

Pure: reads the command lines the runner would start (no namespace is made).
"""

from __future__ import annotations

from tests.tools import suite


def _pytest_args(cmd: list[str]) -> list[str]:
    return cmd[cmd.index("pytest") + 1 :]


def _marker_expression(cmd: list[str]) -> str:
    args = _pytest_args(cmd)
    return args[args.index("-m") + 1]


def test_the_halves_select_complementary_markers() -> None:
    pure = suite.pure_command("ns", "/tmp/x")
    integration = suite.integration_command()
    assert _marker_expression(integration) == "integration"
    assert _marker_expression(pure) == "not integration"
    assert _pytest_args(pure).count("-m") == _pytest_args(integration).count("-m") == 1
    assert not any(arg.startswith("-k") for arg in pure + integration)


def test_the_pure_half_runs_isolated_and_behind_the_integration_half() -> None:
    pure = suite.pure_command("hamgr-pure-1", "/tmp/base")
    assert pure[:4] == ["ip", "netns", "exec", "hamgr-pure-1"]
    assert pure[4:7] == ["nice", "-n", "10"]
    assert "--basetemp=/tmp/base" in pure and "no:cacheprovider" in pure
    assert "nice" not in suite.integration_command()
