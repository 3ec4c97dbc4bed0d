"""POST and DELETE ``/restart``, DELETE ``/switchover``: Patroni's status codes and messages.

POST /restart (body optional; hamgr/ha/restartplan.py reads it): without ``schedule`` the HA
loop restarts PostgreSQL in its next cycle and the answer waits for it: 200 ``restarted
successfully``, 503 with the reason (conditions not satisfied, refused by fencing, failed,
timed out). With ``schedule``: 202 ``Restart scheduled``, 409 when one is already scheduled.
Bad input: 400 (422 for an unparsable or past schedule), 409 for a schedule while paused.

DELETE /restart: 200 ``scheduled restart deleted``, 404 ``no restarts are scheduled``.
DELETE /switchover: 200 ``scheduled switchover deleted``, 404 ``no switchover is scheduled``
(an unscheduled request in progress is not withdrawn), 409 when the stored request changed
meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hamgr.apiview import AgentView
from hamgr.ha.restartplan import RestartInputError, parse_request


def _answer(status: int, message: str) -> web.Response:
    key = "message" if status < 400 else "error"
    return web.json_response({key: message}, status=status)


async def post_restart(view: AgentView, body: Mapping[str, Any]) -> web.Response:
    """POST /restart with the (optional) JSON body ``body``."""
    paused = (await view.cluster()).settings.pause if "schedule" in body else False
    try:
        req = parse_request(body, time.time(), paused)
    except RestartInputError as e:
        return _answer(e.status, str(e))
    if req.at is not None:
        if view.schedule_restart(req):
            return _answer(202, "Restart scheduled")
        return _answer(409, "Another restart is already scheduled (hactl flush ... restart)")
    done, message = await view.restart_postgres(req)
    return _answer(200 if done else 503, message)


async def delete_restart(view: AgentView) -> web.Response:
    """DELETE /restart: cancel this member's scheduled restart."""
    if view.cancel_restart():
        return _answer(200, "scheduled restart deleted")
    return _answer(404, "no restarts are scheduled")


async def delete_switchover(view: AgentView) -> web.Response:
    """DELETE /switchover: cancel the cluster's scheduled switchover."""
    deleted = await view.cancel_switchover()
    if deleted is None:
        return _answer(409, "the switchover request changed meanwhile; look again (hactl list)")
    if deleted:
        return _answer(200, "scheduled switchover deleted")
    return _answer(404, "no switchover is scheduled")
