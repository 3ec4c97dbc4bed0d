"""``hactl edit-config``: change the cluster's dynamic configuration, as patronictl edits it.

``--set KEY=VALUE`` alone sends the merge patch it makes (values read as YAML) after a confirmation;
``--pg NAME=VALUE`` is short for ``--set parameters.NAME=VALUE`` (a PostgreSQL parameter for every
member), and a parameter's name keeps its dots (``parameters.pg_stat_statements.track``), as in
patronictl.
Where the new configuration comes from otherwise, in patronictl's order: ``--replace FILE`` (the
whole configuration), then ``--apply FILE`` (merged on top: a key set to null returns to its
default), then ``--set KEY=VALUE``; with none of them, ``$EDITOR`` (else ``editor``, else ``vi``)
opens the configuration as YAML. ``-`` reads the file from stdin. hactl then shows a unified
diff of the change (``-q/--quiet``: not), asks for confirmation on a terminal (``--force``:
not; changes read from stdin need ``--force``), and applies it with PATCH /config, the merge
patch from the configuration it showed to the new one, which the agent writes with a
compare-and-set as for ``--set``. If the configuration changed in the store meanwhile,
nothing is applied. An editor that exits non-zero, or a configuration left as it was,
changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import yaml

from hamgr.apiview import merge_patch
from hamgr.cli.ctl_client import Client, CtlError, confirm


def settings_patch(assignments: Sequence[str], pg: Sequence[str] = ()) -> dict[str, Any]:
    """``["ttl=10", "parameters.work_mem=64MB"]`` (``--set``) and ``["work_mem=64MB"]``
    (``--pg``) as one merge patch (values read as YAML). Under ``parameters`` the rest of a key
    is one parameter name, dots and all (``pg_stat_statements.track``)."""
    patch: dict[str, Any] = {}
    items = [("--set", item) for item in assignments]
    items += [("--pg", f"parameters.{item}") for item in pg]
    for option, item in items:
        key, sep, text = item.partition("=")
        path = key.split(".")
        if path[0] == "parameters" and len(path) > 2:
            path = [path[0], ".".join(path[1:])]
        if not sep or not key or any(not part for part in path):
            shown = item.removeprefix("parameters.") if option == "--pg" else item
            example = "work_mem=64MB" if option == "--pg" else "ttl=10"
            raise CtlError(f"{option}: expected key=value (e.g. {example}), got {shown!r}")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        *parents, last = path
        node = patch
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CtlError(f"{option}: {key} conflicts with another --set or --pg")
        node[last] = value
    return patch


async def cmd_edit_config(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """edit-config: ``--set``/``--pg`` alone patch at once; anything else goes through
    :func:`edit_whole`."""
    if not (a.set or a.pg) or a.apply or a.replace:
        await edit_whole(client, url, cluster, a)
        return
    patch = settings_patch(a.set or (), a.pg or ())
    confirm(f"Apply {json.dumps(patch)} to cluster {cluster['scope']}?", a.force)
    settings = await client.call("PATCH", url, "/config", patch)
    print("Configuration changed:")
    print(yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip())


def dump(settings: dict[str, Any]) -> str:
    """The configuration as it is shown and edited: YAML, keys sorted."""
    return yaml.safe_dump(settings, sort_keys=True, default_flow_style=False)


def diff_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7396) that turns ``before`` into ``after``: changed and new
    keys with their new values, removed keys as null, objects patched key by key."""
    patch: dict[str, Any] = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        old = before.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            inner = diff_patch(old, value)
            if inner:
                patch[key] = inner
        elif key not in before or old != value:
            patch[key] = value
    return patch


def show_diff(before: str, after: str, scope: str) -> str:
    """A unified diff of two YAML texts."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{scope} (in the store)",
        tofile=f"{scope} (new)",
    )
    return "".join(lines).rstrip("\n")


def parse_config(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping of settings, or CtlError naming ``where`` and the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CtlError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        raise CtlError(f"{where}: empty: nothing changed")
    if not isinstance(data, dict):
        raise CtlError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    return data


def read_file(path: str, option: str) -> dict[str, Any]:
    """The settings in ``path`` (``-``: stdin)."""
    if path == "-":
        return parse_config(sys.stdin.read(), f"{option} - (stdin)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CtlError(f"{option}: cannot read {path}: {e}") from None
    return parse_config(text, f"{option} {path}")


def editor_command() -> list[str]:
    """``$EDITOR`` split as a shell would (it may carry options), else ``editor``, else ``vi``."""
    chosen = os.environ.get("EDITOR", "").strip()
    if chosen:
        return shlex.split(chosen)
    for name in ("editor", "vi"):
        found = shutil.which(name)
        if found:
            return [found]
    raise CtlError("no editor: set $EDITOR (editor and vi are not installed)")


async def edit_in_editor(text: str, scope: str) -> dict[str, Any]:
    """Open ``text`` in the editor; the settings it saved (CtlError when it failed)."""
    argv = editor_command()
    fd, path = tempfile.mkstemp(prefix=f"{scope}-config-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            proc = await asyncio.create_subprocess_exec(*argv, path)
        except OSError as e:
            raise CtlError(f"cannot run the editor {shlex.join(argv)}: {e}") from None
        code = await proc.wait()
        if code != 0:
            raise CtlError(
                f"the editor {shlex.join(argv)} exited with status {code}: nothing changed"
            )
        with open(path, encoding="utf-8") as f:
            edited = f.read()
    finally:
        os.unlink(path)
    return parse_config(edited, "the edited configuration")


async def edit_whole(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    """edit-config with --replace, --apply or the editor (and maybe --set/--pg on top)."""
    scope = cluster["scope"]
    before = await client.call("GET", url, "/config")
    after: dict[str, Any] = before
    if a.replace:
        after = read_file(a.replace, "--replace")
    if a.apply:
        after = merge_patch(after, read_file(a.apply, "--apply"))
    if a.set or a.pg:
        after = merge_patch(after, settings_patch(a.set or (), a.pg or ()))
    if not (a.replace or a.apply or a.set or a.pg):
        after = await edit_in_editor(dump(before), scope)
    patch = diff_patch(before, after)
    if not patch:
        if not a.quiet:
            print("Not changed")
        return
    if not a.quiet:
        print(show_diff(dump(before), dump(after), scope))
    if "-" in (a.apply, a.replace) and not a.force:
        raise CtlError("the changes came from stdin, so they cannot be confirmed: add --force")
    confirm(f"Apply these changes to cluster {scope}?", a.force)
    if await client.call("GET", url, "/config") != before:
        raise CtlError(
            f"the configuration of cluster {scope} changed while this edit was prepared: "
            "nothing applied (run hactl edit-config again)"
        )
    await client.call("PATCH", url, "/config", patch)
    print("Configuration changed")


def register(command: Any) -> None:
    """Add ``edit-config`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command("edit-config", cmd_edit_config, "change the cluster's dynamic settings")
    p.add_argument(
        "-s", "--set", action="append", metavar="KEY=VALUE", help="e.g. ttl=10, pause=true"
    )
    p.add_argument(
        "-p",
        "--pg",
        action="append",
        metavar="NAME=VALUE",
        help="a PostgreSQL parameter for every member (short for --set parameters.NAME=VALUE)",
    )
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    # Without --apply, --replace, --set or --pg: $EDITOR.
    p.add_argument("--apply", metavar="FILE", help="merge the settings in FILE (- for stdin)")
    p.add_argument(
        "--replace", metavar="FILE", help="replace the whole configuration by FILE (- for stdin)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not show the changes")
