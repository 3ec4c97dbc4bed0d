"""Files and directories that PostgreSQL's OS user must own.

The agent may be root while PostgreSQL runs as an unprivileged user: every directory and file
hamgr creates for PostgreSQL is chowned to that user, written atomically (temp file, fsync,
rename) so a crash never leaves half a config file behind.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hamgr.postgres.errors import ConfigError, StateError
from hamgr.postgres.process import RunAs


def _user_groups(run_as: RunAs) -> set[int]:
    try:
        return set(os.getgrouplist(run_as.user, run_as.gid))
    except (KeyError, OSError):
        return {run_as.gid}


def check_reachable(path: Path, run_as: RunAs) -> None:
    """Raise ConfigError when the OS user cannot traverse every existing ancestor of `path`.

    Catches the classic mistake of a data dir under /root, which PostgreSQL would only
    report as a bare 'Permission denied' in its log.
    """
    if run_as.uid == 0:
        return
    groups = _user_groups(run_as)
    for ancestor in reversed(path.parents):
        try:
            st = ancestor.stat()
        except FileNotFoundError:
            return
        if st.st_uid == run_as.uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            try:
                owner = grp.getgrgid(st.st_gid).gr_name
            except KeyError:
                owner = str(st.st_gid)
            raise ConfigError(
                f"OS user {run_as.user!r} cannot reach {path}: {ancestor} is mode "
                f"{stat.S_IMODE(st.st_mode):04o} (uid {st.st_uid}, group {owner}); "
                "choose a path that user can traverse"
            )


def _chown(path: Path, run_as: RunAs) -> None:
    if run_as.switch:
        os.chown(path, run_as.uid, run_as.gid)


def ensure_dir(path: Path, run_as: RunAs, mode: int = 0o700) -> None:
    """Make `path` a directory owned by the OS user with `mode`; missing parents are created
    (mode 0755) and chowned to that user too. Existing parents are left as they are."""
    check_reachable(path, run_as)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o755)
        _chown(directory, run_as)
        os.chmod(directory, 0o755)
    if not path.is_dir():
        raise ConfigError(f"{path} exists and is not a directory")
    _chown(path, run_as)
    os.chmod(path, mode)


def is_empty_dir(path: Path) -> bool:
    """True when `path` does not exist or is an empty directory."""
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def prepare_empty_data_dir(path: Path, run_as: RunAs, action: str) -> None:
    """Create `path` for `action` (initdb, a clone), refusing one that holds anything:
    hamgr never deletes data, so the operator moves it away."""
    if not is_empty_dir(path):
        raise StateError(
            f"{action} needs an empty or missing data directory, but {path} is not empty "
            "(hamgr never deletes data: move its content away first)"
        )
    ensure_dir(path, run_as)


def remove_contents(path: Path) -> None:
    """Delete every entry of directory `path` (subdirectories whole, symlinks themselves),
    keeping the directory itself (it may be a mount point). A missing `path` is empty."""
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_file(path: Path, content: str, run_as: RunAs, mode: int = 0o600) -> None:
    """Atomically replace `path` with `content`, owned by the OS user with `mode`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if run_as.switch:
                os.fchown(handle.fileno(), run_as.uid, run_as.gid)
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def remove_file(path: Path) -> bool:
    """Remove `path` if present (durably); returns whether it existed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
