"""Carrying out ApplyParameters: hamgr.conf rewritten, PostgreSQL reloaded, and its verdict read.

PostgreSQL checks a reloaded file on its own: a misspelt name or a value it cannot parse is
logged there and left out ("setting could not be applied"), and a bad restart-only value would
only show at the next start. So after the reload the agent asks PostgreSQL
(pg_file_settings) what it refused in hamgr.conf; if anything, the previous file is put back
and reloaded, and the change is reported as refused instead of taken as applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hamgr import postgres
from hamgr.postgres import PgSettings
from hamgr.postgres.render import MANAGED_CONF
from hamgr.postgres.settings import ParamValue


class ParametersRefused(Exception):
    """hamgr or PostgreSQL refuses these parameters; the ones in force stay. ``problems``
    maps each refused name to why."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__(", ".join(f"{name}: {why}" for name, why in problems.items()))
        self.problems = dict(problems)


async def apply_parameters(pg: PgSettings, parameters: Mapping[str, ParamValue]) -> PgSettings:
    """``pg`` with ``parameters``, written to hamgr.conf and reloaded when PostgreSQL runs.

    Raises ParametersRefused (nothing changed: the previous file is back) when hamgr refuses
    one (e.g. a reserved name written to the store by hand) or the running PostgreSQL does;
    PostgresError when the reload itself failed (the next cycle tries again).
    """
    try:
        new = dataclasses.replace(pg, parameters=dict(parameters))
    except postgres.ConfigError as exc:
        raise ParametersRefused({"parameters": str(exc)}) from None
    postgres.write_managed_conf(new)
    if not postgres.is_running(new):
        return new
    await postgres.reload(new)
    refused = await postgres.refused_settings(new, MANAGED_CONF)
    if refused:
        postgres.write_managed_conf(pg)
        await postgres.reload(pg)
        raise ParametersRefused(refused)
    return new
