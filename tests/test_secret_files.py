"""Secrets from files: every ``password_file`` key (and ``store.raft.secret_file``) is read into
its secret, a file others can read is refused naming the key and the mode, and a key set both
ways is refused. No error message shows a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hamgr.agent.setup import agent_setup
from hamgr.agent.storemember import read_secret
from hamgr.config import ConfigError, load_config
from hamgr.config.secretfiles import read_secret_file
from tests.test_config import minimal, put

PASSWORD_KEYS = [
    "restapi.authentication",
    "postgresql.authentication.superuser",
    "postgresql.authentication.replication",
    "postgresql.authentication.rewind",
]


def _attr(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _secret(tmp_path: Path, text: str, mode: int = 0o600, name: str = "pw") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _config_file(tmp_path: Path, section: str, values: dict[str, Any]) -> Path:
    data = minimal()
    put(data, section, {"username": "someone", **values})
    path = tmp_path / "hamgr.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("section", PASSWORD_KEYS)
def test_a_password_file_is_read_into_the_password(tmp_path: Path, section: str) -> None:
    pw = _secret(tmp_path, "pw-from-a-file-" + section)
    config = load_config(
        _config_file(tmp_path, section, {"password_file": str(pw)}), {}, resolve=False
    )
    assert _attr(config, section).password == "pw-from-a-file-" + section
    assert _attr(config, section).password_file == str(pw)


def test_the_agent_uses_the_passwords_from_files(tmp_path: Path) -> None:
    data = minimal()
    for i, section in enumerate(PASSWORD_KEYS):
        pw = _secret(tmp_path, f"file-pw-{i}", name=f"pw{i}")
        put(data, section, {"username": f"user{i}", "password_file": str(pw)})
    put(data, "postgresql.bin_dir", "/usr/lib/postgresql/15/bin")
    path = tmp_path / "hamgr.yaml"
    path.write_text(yaml.safe_dump(data))
    setup = agent_setup(load_config(path, {}))
    pg = setup.pg
    assert (pg.superuser_password, pg.replication_password, pg.rewind_password) == (
        "file-pw-1",
        "file-pw-2",
        "file-pw-3",
    )
    assert setup.config.restapi.authentication is not None
    assert setup.config.restapi.authentication.credentials() == ("user0", "file-pw-0")


@pytest.mark.parametrize("section", PASSWORD_KEYS)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o700 | 0o007])
def test_a_file_others_can_access_is_refused(tmp_path: Path, section: str, mode: int) -> None:
    pw = _secret(tmp_path, "do-not-show-me", mode)
    with pytest.raises(ConfigError) as info:
        load_config(_config_file(tmp_path, section, {"password_file": str(pw)}), {}, resolve=False)
    assert info.value.problems == [
        f"{section}.password_file: {pw} is accessible by group or others (mode {mode:04o}); "
        f"a secret file must be private: chmod 600 {pw}"
    ]
    assert "do-not-show-me" not in str(info.value)


@pytest.mark.parametrize("section", PASSWORD_KEYS)
def test_password_and_password_file_are_exclusive(tmp_path: Path, section: str) -> None:
    pw = _secret(tmp_path, "pw-in-a-file")
    path = _config_file(tmp_path, section, {"password": "inline-pw", "password_file": str(pw)})
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, resolve=False)
    assert info.value.problems == [
        f"{section}.password_file: set either {section}.password or {section}.password_file, "
        "not both"
    ]
    assert "inline-pw" not in str(info.value) and "pw-in-a-file" not in str(info.value)


def test_unusable_password_files_name_the_key(tmp_path: Path) -> None:
    empty = _secret(tmp_path, "", name="empty")
    section = "restapi.authentication"
    for path, problem in (
        (tmp_path / "missing", f"cannot read {tmp_path / 'missing'}: No such file or directory"),
        (empty, f"{empty} is empty"),
        (tmp_path, f"{tmp_path} is not a regular file"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(
                _config_file(tmp_path, section, {"password_file": str(path)}), {}, resolve=False
            )
        assert info.value.problems == [f"{section}.password_file: {problem}"]


def test_the_store_secret_file_is_refused_when_others_can_read_it(tmp_path: Path) -> None:
    secret = _secret(tmp_path, "a-store-secret-0123456789", 0o644)
    data = minimal()
    del data["store"]["raft"]["secret"]
    put(data, "store.raft.secret_file", str(secret))
    put(data, "postgresql.bin_dir", "/usr/lib/postgresql/15/bin")
    path = tmp_path / "hamgr.yaml"
    path.write_text(yaml.safe_dump(data))
    expected = (
        f"store.raft.secret_file: {secret} is accessible by group or others (mode 0644); "
        f"a secret file must be private: chmod 600 {secret}"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == [expected]
    raft = load_config(path, {}, resolve=False).store.raft
    assert raft is not None
    with pytest.raises(ConfigError) as info:
        read_secret(raft)  # what the store process does
    assert info.value.problems == [expected]
    secret.chmod(0o400)
    assert read_secret_file(str(secret), "k") == "a-store-secret-0123456789"
