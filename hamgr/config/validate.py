"""Type-driven checking: raw data (with HAMGR_* overrides) in, a Config or every problem out.

msgspec converts and checks each single value (its type and ``Meta`` bounds); :class:`Loader`
walks the sections (msgspec Structs) of :mod:`hamgr.config.schema` by their type hints for what
msgspec's one-error-and-stop cannot do: collect every problem with the path of its key, unknown
keys with a suggestion, the HAMGR_* variable a value came from, timing-profile defaults, hints on
a mistaken choice, the :class:`~hamgr.config.values.Rule` checks; then it runs the cross-key
rules of :mod:`hamgr.config.checks` on the result. :func:`parse_config` is the entry point. All
of it is pure: no file, no environment but the mapping it is given.
"""

from __future__ import annotations

import contextlib
import difflib
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast, get_args, get_origin

import msgspec

from hamgr.config.checks import CHECKS
from hamgr.config.env import EnvSection, EnvValue, merge_env, wants_text
from hamgr.config.msgspecwords import ValueProblem, convert, field_types, shape
from hamgr.config.problems import BAD, ConfigError, KeyPath, Skip, fmt_path, show
from hamgr.config.schema import TIMING_PROFILES, Config, ParameterValue
from hamgr.config.strict_yaml import parse_yaml
from hamgr.config.values import (
    REQUIRED,
    SECRET,
    Custom,
    Rule,
    is_section,
    section_defaults,
    section_names,
)

_YAML_BOOL_WORDS = frozenset({"on", "off", "yes", "no", "y", "n", "true", "false"})


class Loader:
    """Turns raw YAML data into the schema's sections, reporting every problem it meets."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.bad: set[KeyPath] = set()
        self.profile: Mapping[KeyPath, float] = {}
        self.checking = False

    def report(self, path: KeyPath, message: str, env: str | None = None) -> None:
        where = fmt_path(path) + (f" (from {env})" if env else "")
        problem = f"{where}: {message}"
        if problem not in self.problems:
            self.problems.append(problem)
        if not self.checking:  # a cross-key problem leaves each value usable for other checks
            self.bad.add(path)

    def ok(self, path: KeyPath, *, below: bool = True) -> bool:
        """No problem was reported at ``path`` or above it (nor below it, unless below=False)."""
        n = len(path)
        return not any(bad == path[: len(bad)] or (below and bad[:n] == path) for bad in self.bad)

    def need(
        self, root: object, *path: str | int, below: bool = True, none_ok: bool = False
    ) -> Any:
        """The value at ``path`` under ``root`` for a cross-key check; raises Skip when it is
        already reported as wrong, sits in an absent section, or is None (unless none_ok)."""
        if not self.ok(path, below=below):
            raise Skip
        value: Any = root
        for part in path:
            if value is None:
                raise Skip
            value = value[part] if isinstance(part, int) else getattr(value, part)
        if value is None and not none_ok:
            raise Skip
        return value

    # -- the top level

    def load(self, data: object, env: Mapping[str, str]) -> Config | None:
        if not isinstance(data, Mapping):
            self.report((), f"expected a mapping of keys, got {show(data)}")
            return None
        data = merge_env(data, env, self.problems)
        profile = data.get("timing_profile")
        if isinstance(profile, EnvValue):
            profile = profile.text
        table = TIMING_PROFILES.get(profile) if isinstance(profile, str) else None
        self.profile = {tuple(k.split(".")): v for k, v in (table or {}).items()}
        config = self.section(Config, data, (), None)
        if not isinstance(config, Config):
            return None
        self.checking = True
        for check in CHECKS:
            with contextlib.suppress(Skip):
                check(config, self)
        return config

    def section(self, cls: type, raw: Any, path: KeyPath, env: str | None) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.report(path, f"expected a section (a mapping of keys), got {show(raw)}", env)
            return BAD
        names = section_names(cls)
        for key, value in raw.items():
            if not isinstance(key, str):
                self.report(path, f"keys must be strings, got {show(key)}", env)
            elif key not in names:
                self.unknown((*path, key), value, names, env)
        hints = field_types(cls)
        values: dict[str, Any] = {}
        for name, default in section_defaults(cls).items():
            sub = (*path, name)
            if name in raw:
                value = self.value(hints[name], raw[name], sub, env)
            else:
                value = self.absent(default, hints[name], sub)
            values[name] = None if value is BAD else value
        try:
            return cls(**values)
        except (TypeError, ValueError, AttributeError):  # only with values already reported bad
            self.bad.add(path)
            return BAD

    def unknown(self, path: KeyPath, value: Any, names: list[str], env: str | None) -> None:
        if isinstance(value, EnvValue):
            env = value.name
        elif isinstance(value, EnvSection):
            env = ", ".join(value.names)
        message = f"unknown key {fmt_path(path)}"
        if env:
            message += f" (from {env})"
        close = difflib.get_close_matches(str(path[-1]), names, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
        self.problems.append(message)
        self.bad.add(path)

    def absent(self, default: Any, tp: Any, path: KeyPath) -> Any:
        base, optional, _ = shape(tp)
        if path in self.profile:
            return self.profile[path]
        if is_section(base) and not optional:
            # an absent section: its own defaults, the profile's, and its required keys
            return self.section(cast(type, base), {}, path, None)
        if default is not REQUIRED:
            return default
        self.report(path, "required")
        return BAD

    def value(self, tp: Any, raw: Any, path: KeyPath, env: str | None) -> Any:
        base, optional, marks = shape(tp)
        if isinstance(raw, EnvValue):
            env = raw.name
            raw = raw.text if wants_text(base) else self.parse_env(raw, path)
            if raw is BAD:
                return BAD
        if raw is None and optional:
            return None
        custom = next((m for m in marks if isinstance(m, Custom)), None)
        if custom is not None:
            value = custom.load(self, raw, path, env)
        elif is_section(base):
            value = self.section(cast(type, base), raw, path, env)
        elif get_origin(base) is tuple:
            value = self.items(tp, raw, path, env)
        elif get_origin(base) is dict:
            item_tp = get_args(base)[1]
            if is_section(shape(item_tp)[0]):
                value = self.named_sections(get_args(base)[0], item_tp, raw, path, env)
            else:
                value = self.parameters(raw, path, env)
        else:
            value = self.convert(tp, raw, path, env)
        if value is BAD:
            return BAD
        for mark in marks:
            problem = mark.check(value) if isinstance(mark, Rule) else None
            if problem:
                self.report(path, problem, env)
                return BAD
        return value

    def convert(self, tp: Any, raw: Any, path: KeyPath, env: str | None) -> Any:
        """A single value, converted and checked by msgspec (type, Meta bounds); a mistaken
        choice gets a hint."""
        base, _, marks = shape(tp)
        try:
            return convert(raw, tp, secret=SECRET in marks)
        except ValueProblem as exc:
            self.report((*path, *exc.path), exc.problem + _hint(base, raw), env)
            return BAD

    def items(self, tp: Any, raw: Any, path: KeyPath, env: str | None) -> Any:
        """A list: each item checked on its own (so that every bad item is reported), then the
        list's own bounds."""
        if not isinstance(raw, list | tuple):
            self.report(path, f"expected a list, got {show(raw)}", env)
            return BAD
        base, _, marks = shape(tp)
        item_tp = get_args(base)[0]
        items = [self.value(item_tp, item, (*path, i), env) for i, item in enumerate(raw)]
        if any(item is BAD for item in items):
            return BAD
        bounds = [m for m in marks if isinstance(m, msgspec.Meta)]
        if bounds and self.convert(Annotated[(list[Any], *bounds)], raw, path, env) is BAD:
            return BAD
        return tuple(items)

    def named_sections(
        self, key_tp: Any, item_tp: Any, raw: Any, path: KeyPath, env: str | None
    ) -> Any:
        """A {name: section} mapping (e.g. replica methods by name)."""
        if not isinstance(raw, Mapping):
            self.report(path, f"expected a mapping of names to sections, got {show(raw)}", env)
            return BAD
        out = {}
        for key, value in raw.items():
            name = self.value(key_tp, key, (*path, str(key)), env)
            item = self.value(item_tp, value, (*path, str(key)), env)
            if name is not BAD and item is not BAD:
                out[name] = item
        return out if len(out) == len(raw) else BAD

    def parameters(self, raw: Any, path: KeyPath, env: str | None) -> Any:
        """A {name: scalar} mapping of PostgreSQL parameters."""
        if not isinstance(raw, Mapping):
            self.report(path, f"expected a mapping of names to values, got {show(raw)}", env)
            return BAD
        out: dict[str, ParameterValue] = {}
        for key, value in raw.items():
            sub = (*path, str(key))
            where = env
            if isinstance(value, EnvValue):
                where = value.name
                value = self.parse_env(value, sub)
                if value is BAD:
                    continue
            if not isinstance(key, str) or not key:
                self.report(path, f"parameter names must be non-empty strings, got {show(key)}")
                continue
            value = self.convert(ParameterValue, value, sub, where)
            if value is not BAD:
                out[key] = value
        return out if len(out) == len(raw) else BAD

    def parse_env(self, raw: EnvValue, path: KeyPath) -> Any:
        data, problems = parse_yaml(raw.text, raw.name)
        for problem in problems:
            self.report(path, f"not valid YAML: {problem}", raw.name)
        return BAD if problems else data


def _hint(base: Any, raw: Any) -> str:
    """For a mistaken choice: the choice it looks like, or why YAML read it as a boolean."""
    if get_origin(base) is not Literal:
        return ""
    choices = get_args(base)
    if isinstance(raw, str):
        folded = {c.casefold(): c for c in choices}
        close = difflib.get_close_matches(raw.casefold(), list(folded), n=1)
        return f" (did you mean {folded[close[0]]}?)" if close else ""
    if isinstance(raw, bool) and any(c in _YAML_BOOL_WORDS for c in choices):
        return " (YAML reads a bare on/off/yes/no as a boolean: put it in quotes)"
    return ""


_NO_ENV: Mapping[str, str] = types.MappingProxyType({})


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] = _NO_ENV) -> Config:
    """Check ``data`` (a parsed YAML document) with the HAMGR_* variables of ``env`` laid over it.

    Pure: touches no file. Raises ConfigError listing every problem. Variables that do not start
    with HAMGR_ are ignored, so ``os.environ`` can be passed as it is.
    """
    loader = Loader()
    try:
        config = loader.load(data, env)
    except RecursionError:  # a YAML alias loop nested past Python's stack
        loader.problems.append("(top level): nested too deeply")
        config = None
    if loader.problems or config is None:
        raise ConfigError(loader.problems or ["(top level): not a valid configuration"])
    return config
