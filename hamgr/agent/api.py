"""The agent's REST API (aiohttp): health checks for load balancers, cluster state, management.

Paths and status codes follow Patroni's REST API. Health checks (GET, HEAD, OPTIONS; 200 or
503, the body is this member's status as JSON) answer from the agent's memory only, never
from the store::

    /, /primary, /read-write  PostgreSQL primary AND leader key held AND lease deadline ahead
    /leader                   this member holds the leader key (primary or standby leader)
    /standby-leader           this member is the standby leader of a standby cluster (as
                              Patroni: /primary answers 503 there, /leader 200)
    /replica                  running standby, streaming, not tagged noloadbalance;
                              ?lag=16MB fails above that lag, ?tag_<name>=<value> checks a tag
    /read-only                /primary or /replica
    /health                   PostgreSQL is running
    /liveness                 the HA loop ran within ttl
    /readiness                primary serving, or a standby streaming (?lag= as /replica)
    /synchronous, /sync       /replica, and a synchronous standby (synchronous_mode on)
    /quorum                   /replica, and a quorum standby (synchronous_mode quorum)
    /asynchronous, /async     /replica, and not counted in the synchronous set

JSON: ``/patroni`` (alias ``/status``: this member), ``/cluster``, ``/history``, ``/config``
(``/cluster`` and ``/history`` in Patroni's shapes: hamgr/agent/patroniview.py);
``/store`` (the store member's view: Raft leader, members; hamgr/agent/storeview.py) and
``/events?since=N`` (recent events, hamgr/agent/events.py), from the agent's memory. ``/ui`` is the
read-only status page built on them (hamgr/agent/ui).
Unsafe methods need HTTP basic auth (``restapi.authentication``; without it they are refused
with 403): POST ``/switchover``, ``/failover``, ``/restart``, ``/reinitialize``, ``/reload``,
DELETE ``/restart`` and ``/switchover`` (cancel what is scheduled: hamgr/agent/apirestart.py)
and PATCH ``/config`` (a JSON merge patch of the dynamic settings). A bad body is answered 400 with
``{"error": "<field>: <problem>"}`` and changes nothing; a failed action 503. ``/metrics`` serves
what the ``metrics`` hook of :func:`build_app` returns (404 without one).

The embedded store's membership (``hactl members``; 404 on an agent without an embedded store
member, e.g. on etcd): GET ``/store/members`` (voters, learners, the Raft leader, each member's
applied index), POST ``/store/members`` ``{"name", "address", "node_id"?, "client_address"?}``
adds one as a learner, DELETE ``/store/members/<name>`` removes one; a change that is unsafe
or does not fit the membership now is answered 409 with the reason and changes nothing.

The routes live in two modules: the health checks and read-only views in
hamgr/agent/apiread.py, the operator actions in hamgr/agent/apiactions.py (with
hamgr/agent/apirestart.py); this module builds the app from them, with the middleware that
checks access on unsafe methods and answers every failure as ``{"error": ...}``
(hamgr/agent/apierrors.py).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from hamgr.agent.apiaccess import Access
from hamgr.agent.apiactions import ActionRoutes
from hamgr.agent.apierrors import HttpError, error_response
from hamgr.agent.apiread import MetricsHook, ReadRoutes, StoreStatusHook
from hamgr.agent.events import EventLog
from hamgr.agent.storemembers import MembershipRefused
from hamgr.agent.ui import add_ui_routes
from hamgr.apiview import AgentView, RequestFailed, RequestRejected
from hamgr.config.values import split_address
from hamgr.dcs.base import DcsError
from hamgr.dcs.strict import ModelError

if TYPE_CHECKING:
    from hamgr.agent.storeadmin import StoreAdmin

log = logging.getLogger(__name__)

Auth = tuple[str, str]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _guard(access: Access) -> Middleware:
    """The middleware: `Access` on unsafe methods, and every failure as ``{"error": ...}``."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method in _UNSAFE:
            cert = request.transport.get_extra_info("peercert") if request.transport else None
            denied = access.check(request.remote, request.headers.get("Authorization"), bool(cert))
            if denied is not None:
                headers = (
                    {"WWW-Authenticate": 'Basic realm="hamgr"'} if denied.status == 401 else None
                )
                return error_response(denied.status, denied.message, headers)
        try:
            return await handler(request)
        except HttpError as e:
            return error_response(e.status, str(e))
        except (ModelError, RequestRejected) as e:
            return error_response(400, str(e))
        except MembershipRefused as e:
            return error_response(409, f"refused: {e}")
        except RequestFailed as e:
            return error_response(503, str(e))
        except DcsError as e:
            return error_response(503, f"coordination store: {e}")
        except web.HTTPMethodNotAllowed as e:
            allowed = ", ".join(sorted(e.allowed_methods))
            return error_response(
                405, f"{request.method} is not allowed on {request.path} ({allowed})"
            )
        except web.HTTPNotFound:
            return error_response(404, f"no such path: {request.path}")
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("REST API: %s %s failed", request.method, request.path)
            return error_response(500, f"internal error: {type(e).__name__}: {e}")

    return guard


def build_app(
    view: AgentView,
    auth: Auth | None,
    *,
    metrics: MetricsHook | None = None,
    store: StoreAdmin | None = None,
    outcome_timeout: float = 30.0,
    poll_interval: float = 0.25,
    access: Access | None = None,
    events: EventLog | None = None,
    store_status: StoreStatusHook | None = None,
) -> web.Application:
    """The REST API of ``view``'s agent. ``auth`` is (username, password) for unsafe methods
    (None: they are refused); ``access``, when given, replaces it with the full rules
    (certificates, allowlist: `hamgr.agent.apiaccess`). A switchover or failover answers once its
    outcome shows in the cluster (200 or 503), at most ``outcome_timeout`` seconds; a scheduled
    one answers 202. ``events`` and ``store_status`` serve ``GET /events`` and ``GET /store``
    (404 without them)."""
    app = web.Application(middlewares=[_guard(access or Access(auth=auth))])
    ReadRoutes(view, metrics, events, store_status).add_to(app)
    add_ui_routes(app)
    ActionRoutes(view, outcome_timeout, poll_interval, store).add_to(app)
    return app


async def serve(
    view: AgentView,
    listen: str,
    auth: Auth | None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    metrics: MetricsHook | None = None,
    access: Access | None = None,
    store: StoreAdmin | None = None,
    events: EventLog | None = None,
    store_status: StoreStatusHook | None = None,
) -> web.AppRunner:
    """Serve the API on ``listen`` (``restapi.listen``), over TLS with ``ssl_context``;
    ``runner.cleanup()`` stops it. ``runner.addresses`` tells the bound address (useful with
    port 0)."""
    app = build_app(
        view,
        auth,
        metrics=metrics,
        access=access,
        store=store,
        events=events,
        store_status=store_status,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_address(listen, any_port=True)
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
