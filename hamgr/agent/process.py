"""`hamgr agent --config FILE`: one database host's HA agent, as one process.

It runs the embedded store member (Raft node and client listener) and the HA loop over it
(RaftDcs) or, with ``store.backend: etcd``, the HA loop over an existing etcd (EtcdDcs); the
fencer process for the primary's lease deadline; and the REST API (with ``/store/members``,
`hamgr.agent.storeadmin`). A member added at run time (``store.raft.join``) holds the HA loop back
until its store member votes, so PostgreSQL is cloned only then. A file without a
``postgresql`` section is a witness's: only the store member runs (`hamgr.agent.storemember`).
SIGTERM stops cleanly: a primary hands over to a healthy replica when one exists (switchover),
otherwise stops PostgreSQL (at once, without store calls, when no majority of the store members is
left, as at the end of a whole-cluster stop that took the replicas first); SIGHUP reloads the
configuration file (tags and PostgreSQL parameters). An embedded store member that fails (e.g.
its disk full) stops the agent the same way, with exit status 1, for systemd to restart it.
PostgreSQL itself always runs as the unprivileged `postgresql.os_user`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
import sys
import time
from collections.abc import Collection
from pathlib import Path

import aiohttp

from hamgr import postgres, tls
from hamgr.agent import api
from hamgr.agent.apiaccess import Access
from hamgr.agent.apiread import StoreStatusHook
from hamgr.agent.gcpolicy import tune_gc
from hamgr.agent.hooksetup import (
    callback_runner,
    member_methods,
    member_parameters,
    refresh_callbacks,
)
from hamgr.agent.setup import AgentSetup, WitnessSetup, database, load_agent_setup, load_setup
from hamgr.agent.storeadmin import StoreAdmin, register_until_done
from hamgr.agent.storemember import (
    MemberStartError,
    StoreSettings,
    member_client,
    own_record,
    running_member,
    serve_witness,
    setup_logging,
    store_ssl_contexts,
)
from hamgr.agent.storeview import etcd_json, names_by_store_id, store_json
from hamgr.agent.telemetry import AgentTelemetry
from hamgr.config import Config, ConfigError, split_address
from hamgr.dcs.base import DcsError
from hamgr.dcs.etcd import EtcdDcs
from hamgr.dcs.model import ClusterView, SwitchoverRequest
from hamgr.dcs.raft import RaftDcs
from hamgr.dcs.session import KvSession
from hamgr.fencer.client import FencerClient, FencerError
from hamgr.fencer.watchdog import Watchdog, WatchdogError
from hamgr.ha.agentview import LoopView
from hamgr.ha.execute import ActionRunner
from hamgr.ha.leasefile import LeaseFile
from hamgr.ha.loop import HaLoop
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.net.handshake import source_host_for
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.rpcserver import StoreRpcServer

log = logging.getLogger("hamgr.agent")


def http_connector(
    config: Config, ssl_context: ssl.SSLContext | None = None
) -> aiohttp.TCPConnector:
    """The connector of the agent's HTTP calls to its peers: from the REST API's address,
    over TLS with `ssl_context` (`hamgr.tls.rest_client_context`) for https peers.

    With every outbound connection (store, Raft, HTTP) leaving from the member's own address,
    a host cut off on that address is cut off for good, not half-connected through another.
    """
    source = source_host_for(split_address(config.restapi.listen)[0])
    return aiohttp.TCPConnector(
        local_addr=(source, 0) if source else None,
        ssl=ssl_context if ssl_context is not None else True,
    )


def has_majority(reach: tuple[int, int] | None) -> bool:
    """Whether (reached, voters) from `RaftNode.reachable_voters` is a majority of the store
    (None: no embedded member to ask, as on etcd; the store calls themselves then tell)."""
    if reach is None:
        return True
    reached, voters = reach
    return reached > voters // 2


def store_transfer_target(view: ClusterView, name: str, connected: Collection[int]) -> int | None:
    """The store member to hand the store's leadership to for member `name` (the primary moves
    it off its own host), or None: `name` has no store member, or it is not connected to this
    one. A host lost a moment ago still has a member key that says it runs (until its lease
    ends); leadership handed to it would stop the store's writes for an election timeout."""
    member = view.member(name)
    if member is None or not member.store_id or member.store_id not in connected:
        return None
    return member.store_id


def _fmt(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reach(node: RaftNode | None) -> tuple[int, int] | None:
    """What `has_majority` judges by: the embedded member's reach, or None when there is none
    to ask (etcd) or it failed (it reaches nobody, but the store client still reaches the
    other members' client ports: a primary can still hand over through them)."""
    if node is None or node.state == "failed":
        return None
    return node.reachable_voters()


class Agent:
    """The parts of one agent, wired together; `run()` serves until stopped."""

    def __init__(self, setup: AgentSetup, config_path: Path | None = None) -> None:
        self.config = setup.config
        self.config_path = config_path
        self.store: StoreSettings | None = setup.store
        self.pg = setup.pg
        self.me = setup.me
        self.settings = setup.settings
        self.stop = asyncio.Event()
        self.loop: HaLoop | None = None
        self.telemetry = AgentTelemetry(
            stale_after=max(self.settings.ttl, 10.0), name=setup.config.name
        )
        self.watchdog = Watchdog(setup.config.watchdog)
        rest = setup.config.restapi
        self.rest_server_ssl = tls.rest_server_context(rest)
        self.rest_client_ssl = tls.rest_client_context(rest)
        self.store_ssl: tuple[ssl.SSLContext, ssl.SSLContext] | None = None
        """The embedded member's (server, client) contexts, reloaded with the REST ones."""
        self.member_failure: str | None = None
        """Why the embedded store member failed (the agent then stops and exits 1)."""

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `stop`); 0 on a clean stop, 1 on failure."""
        s = self.settings
        try:
            self.watchdog.check_at_start(s.ttl, s.safety_margin, s.loop_wait)
        except WatchdogError as exc:
            log.critical("not starting: %s", exc)
            print(f"hamgr agent: not starting: {exc}", file=sys.stderr, flush=True)
            return 1
        if self.store is None:
            return await self._serve(None, self._etcd_dcs())
        store = self.store
        try:
            self.store_ssl = store_ssl_contexts(store)
            async with running_member(store, self.store_ssl) as (node, server):
                if not await self._wait_until_voter(node):
                    return 1 if self.member_failure is not None else 0
                source = source_host_for(store.listen[0])
                async with member_client(store, source) as client:
                    admin = StoreAdmin(self.config.scope, node, client, store.client_addresses)
                    registered = asyncio.create_task(
                        register_until_done(client, store.scope, own_record(store), self.stop)
                    )
                    try:
                        return await self._serve(node, self._raft_dcs(store, node, server), admin)
                    finally:
                        registered.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await registered
        except MemberStartError as exc:
            log.critical("store member %d: %s", store.node_id, exc)
            return 1

    async def _wait_until_voter(self, node: RaftNode) -> bool:
        """Hold the HA loop (and PostgreSQL) back until this host's store member votes: a host
        added with ``hactl members add`` first catches up as a learner; only then does its
        agent clone PostgreSQL. False when stopped while waiting."""
        said = 0.0
        while not self.stop.is_set():
            st = node.status()
            if node.id in st.get("voters", ()):
                return True
            if node.state == "failed":
                self._member_failed(node)
                return False
            if time.monotonic() - said >= 10.0:
                said = time.monotonic()
                if node.id in st.get("learners", ()):
                    why = "is a learner catching up; it becomes a voter by itself once caught up"
                else:
                    me = _fmt(node.transport.advertised_address)
                    why = (
                        "is not a member of the store yet: add it with "
                        f"hactl members add {self.config.name} {me}"
                    )
                log.info("store member %d %s; PostgreSQL waits until it votes", node.id, why)
                self.telemetry.waiting(f"store member {node.id} {why}", 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), node.tick_interval * 2)
        return False

    def _member_failed(self, node: RaftNode) -> None:
        """Record and log that the embedded store member failed, and ask the agent to stop.

        A failed member (e.g. "No space left on device": its storage refuses all further
        use) never serves again in this process; an agent living on beside it would leave the
        store a member short for good. So the agent stops as on SIGTERM and exits 1: systemd
        (Restart=on-failure) starts it again, and the new member recovers from its log.
        """
        if self.member_failure is None:
            self.member_failure = f"{type(node.failure).__name__}: {node.failure}"
            log.critical(
                "store member %d failed (%s): the agent stops and exits 1 to be restarted",
                node.id,
                self.member_failure,
            )
        self.stop.set()

    async def _watch_member(self, node: RaftNode) -> None:
        """Notice at once that the embedded store member failed (`_member_failed`): woken by
        the failure itself, not by polling (an idle agent has no timer to run for it)."""
        failed = asyncio.ensure_future(node.wait_failed())
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (failed, stopped):
                waiter.cancel()
        if node.state == "failed":
            self._member_failed(node)

    def _raft_dcs(self, store: StoreSettings, node: RaftNode, server: StoreRpcServer) -> KvSession:
        endpoints = [server.client_address, *store.client_addresses.values()]
        # Every connection leaves from this member's own address (see `http_connector`);
        # with store.raft.tls, over mutual TLS with this member's certificate, as a peer's.
        client = StoreClient(
            list(dict.fromkeys(endpoints)),
            store.cluster_id,
            store.secret,
            source_host=source_host_for(store.listen[0]),
            ssl_context=self.store_ssl[1] if self.store_ssl is not None else None,
        )
        return RaftDcs(
            self.config.scope,
            self.config.name,
            client,
            local_node=node,
            ttl=self.settings.ttl,
            retry_timeout=self.settings.retry_timeout,
        )

    def _etcd_dcs(self) -> KvSession:
        etcd = self.config.store.etcd
        assert etcd is not None, "agent_setup requires store.etcd with store.backend etcd"
        return EtcdDcs.from_config(
            etcd,
            self.config.scope,
            self.config.name,
            ttl=self.settings.ttl,
            retry_timeout=self.settings.retry_timeout,
        )

    def _store_description(self) -> str:
        if self.store is not None:
            return f"store member {self.store.node_id}"
        etcd = self.config.store.etcd
        return f"etcd at {', '.join(etcd.hosts) if etcd else '?'}"

    async def _serve(
        self, node: RaftNode | None, dcs: KvSession, admin: StoreAdmin | None = None
    ) -> int:
        """Run the HA loop over ``dcs``; ``node`` is the embedded store member (None on etcd:
        no store leadership to move, no store metrics)."""
        run_dir = self.pg.runtime_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        lease_file = LeaseFile(run_dir, self.config.scope, self.config.name)
        dcs.before_grant = lease_file.save
        fencer = FencerClient(run_dir / "hamgr-fencer.sock")
        try:
            await fencer.ensure_running(sys.executable, self.pg.data_dir, run_dir)
        except FencerError as exc:
            log.critical("cannot start the fencer: %s", exc)
            return 1

        async def transfer(name: str) -> None:
            view = self.loop.last_view if self.loop else None
            if node is None or view is None:
                return
            target = store_transfer_target(view, name, node.transport.connected_peers())
            if target is not None:
                log.info("moving store leadership to %s (member %d)", name, target)
                await node.transfer_leadership(target, timeout=self.settings.ttl)

        tele = self.telemetry
        if node is not None:
            node.on_save = tele.metrics.observe_fsync
            node.on_commit = tele.metrics.observe_commit
        runner = ActionRunner(
            self.config.name,
            dcs,
            self.pg,
            fencer=fencer,
            store_transfer=transfer if node is not None else None,
            bootstrap_settings=self.settings,
            remove_data_on_rewind_failure=self.me.reclone_on_rewind_failure,
            watchdog=self.watchdog,
            methods=member_methods(self.config),
            callbacks=callback_runner(self.config, self.pg),
        )
        runner.on_rewind = tele.metrics.observe_rewind
        if tele.watchdog is not None:
            runner.long_step = tele.watchdog.allow
        connector = http_connector(self.config, self.rest_client_ssl)
        async with aiohttp.ClientSession(connector=connector) as http:
            loop = HaLoop(
                self.me,
                dcs,
                self.pg,
                runner,
                http,
                settings=self.settings,
                store_leader_here=(lambda: node.is_leader) if node is not None else None,
                on_cycle=tele.on_cycle,
                on_keepalive=tele.on_keepalive,
                on_store_error=tele.on_store_error,
                on_view_read=tele.metrics.observe_view_read,
                resume_lease=lease_file.load(),
                local_parameters=member_parameters(database(self.config)),
            )
            self.loop = loop
            view = LoopView(loop, self.config.scope, reload=self.reload)
            rest = self.config.restapi

            def refresh_metrics() -> None:
                local = view.local()
                tele.metrics.set_fence_deadline(local.fence_at if local.holds_leader_key else None)
                if node is not None:
                    tele.metrics.set_store_status(node.status())

            scrape = tele.metrics.api_hook(refresh_metrics)
            web = await api.serve(
                view,
                rest.listen,
                None,
                ssl_context=self.rest_server_ssl,
                metrics=scrape,
                access=Access.from_config(rest),
                store=admin,
                events=tele.events,
                store_status=self._store_status(node, loop),
            )
            watchdog = tele.start_watchdog(self.stop)
            watch = asyncio.create_task(self._watch_member(node)) if node is not None else None
            try:
                store = self._store_description()
                scheme = "https" if self.rest_server_ssl is not None else "http"
                print(
                    f"hamgr agent: {self.config.name} serving REST on {scheme}://{rest.listen}, "
                    f"{store}, PostgreSQL {self.me.conn_url}",
                    flush=True,
                )
                tele.ready(f"serving; {store}")
                await loop.run(self.stop)
                tele.stopping()
                await self._shutdown(loop, runner, _reach(node))
                return 1 if self.member_failure is not None else 0
            finally:
                if watch is not None:
                    watch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watch
                if watchdog is not None:
                    watchdog.cancel()
                await web.cleanup()
                if has_majority(_reach(node)):
                    try:
                        await dcs.close()
                        lease_file.remove()
                    except DcsError as exc:
                        log.info("closing the store session: %s (its lease expires by itself)", exc)
                else:
                    await dcs.abandon()

    def _store_status(self, node: RaftNode | None, loop: HaLoop) -> StoreStatusHook:
        """What ``GET /store`` answers: the embedded member's view of the store (names from
        the members' published store ids), or the etcd endpoints."""
        if node is None:
            etcd = self.config.store.etcd
            endpoints = list(etcd.hosts) if etcd else []
            return lambda: etcd_json(endpoints)
        store = self.store
        assert store is not None
        addresses = {store.node_id: store.advertise, **store.peers}
        return lambda: store_json(node.status(), names_by_store_id(loop.last_view), addresses)

    async def _shutdown(
        self, loop: HaLoop, runner: ActionRunner, reach: tuple[int, int] | None
    ) -> None:
        """A primary hands over to a healthy replica when it can; then PostgreSQL stops.

        Judged on a fresh read of the cluster: the last cycle's view may predate the replicas'
        latest publications (or a member key that expired for a moment under load). Without
        a majority of the store members reachable (`reach`: reached, voters; the others have
        stopped, as in a whole-cluster stop that takes the replicas first) no handover can
        happen and no store call can succeed, so none is made (no handover, no shutdown
        position recorded, no key released): PostgreSQL stops at once and the lease expires
        by itself. While the cluster is paused (as last read, without a majority) PostgreSQL
        is left running, whatever its role, and no switchover is asked for (pause ignores
        it): hands off, as in Patroni. Nothing on the way out starts PostgreSQL
        (ActionRunner.stop_requested), and none is left running unless paused.
        """
        store_ok = has_majority(reach)
        view = loop.last_view if store_ok else None
        if not store_ok and reach is not None:
            log.info(
                "stopping: %d of %d store members reachable, no majority: "
                "no handover; the lease expires by itself",
                *reach,
            )
        else:
            try:
                view = await loop.dcs.get_cluster()
            except DcsError as exc:
                log.warning("stopping: cannot read the cluster (%s); using the last view", exc)
        if view.settings.pause if view is not None else runner.paused:
            log.warning("stopping while the cluster is paused: PostgreSQL is left running")
            await runner.disarm_fencer()
            await self._stop_fencer(runner)
            return
        key = view.leader if view else None
        if view is not None and key is not None and key.revision == runner.lease.leader_revision:
            healthy = [
                m
                for m in view.members
                if m.name != self.me.name
                and m.role == "replica"
                and m.state == "running"
                and not m.tags.nofailover
            ]
            if healthy:
                log.info("stopping: handing the primary over (switchover)")
                await self._hand_over(loop, key.name)
        for mode in ("fast", "immediate"):
            try:
                await postgres.stop(self.pg, mode)
            except postgres.PostgresError as exc:
                log.error("stopping PostgreSQL (%s) failed: %s", mode, exc)
            if not postgres.is_running(self.pg):
                break
        if runner.callbacks is not None:
            runner.callbacks.stopped()
            await runner.callbacks.close()
        if store_ok:
            await loop.record_shutdown_position()
        await runner.disarm_fencer()
        if store_ok and runner.lease.key is not None:
            with contextlib.suppress(Exception):
                await loop.dcs.release_leader(runner.lease.key)
        await self._stop_fencer(runner)

    @staticmethod
    async def _stop_fencer(runner: ActionRunner) -> None:
        if runner.fencer is not None:
            try:
                await runner.fencer.shutdown()
            except FencerError as exc:
                log.warning("the fencer did not stop: %s", exc)

    async def _hand_over(self, loop: HaLoop, leader: str) -> None:
        """Request a switchover and keep cycling until the key has moved (bounded by 2 ttl)."""
        try:
            await loop.dcs.set_switchover(
                SwitchoverRequest("switchover", leader, requested_by="shutdown")
            )
        except Exception as exc:
            log.warning("could not request the switchover: %s", exc)
            return
        deadline = time.monotonic() + 2 * self.settings.ttl
        while time.monotonic() < deadline:
            await loop.cycle()
            view = loop.last_view
            if view is None or view.leader is None or view.leader.name != self.me.name:
                return
            await asyncio.sleep(0.2)
        log.warning("switchover did not finish in time; stopping PostgreSQL anyway")

    async def reload(self) -> None:
        """Re-read the configuration file: tags and PostgreSQL parameters take effect.

        The parameters in force stay until the HA loop's next cycle merges the member's new
        ones with the cluster's (hamgr/ha/pgparams.py) and applies the result."""
        if self.config_path is None or self.loop is None:
            return
        try:
            setup = load_agent_setup(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)
            return
        if (setup.config.restapi.certfile is None) != (self.rest_server_ssl is None) or (
            setup.store is not None and (setup.store.tls is None) != (self.store_ssl is None)
        ):
            log.error(
                "reload refused, keeping the running configuration: turning TLS on or off "
                "needs a restart of the agent (a reload only loads renewed certificates)"
            )
            return
        try:
            self._reload_tls(setup)
        except (OSError, ssl.SSLError) as exc:
            log.error("reload refused: cannot load the TLS files: %s", exc)
            return
        self.config = setup.config
        self.pg = dataclasses.replace(setup.pg, parameters=self.loop.runner.pg.parameters)
        self.loop.local_parameters = member_parameters(database(setup.config))
        self.loop.pg = self.pg
        self.loop.runner.pg = self.pg
        self.loop.me = setup.me
        postgres.write_config(self.pg)
        self.loop.runner.methods = member_methods(setup.config)
        self.loop.runner.callbacks = refresh_callbacks(
            self.loop.runner.callbacks, setup.config, self.pg
        )
        if postgres.is_running(self.pg):
            await postgres.reload(self.pg)
            self.loop.runner.reloaded()
        log.info("configuration reloaded from %s", self.config_path)

    def _reload_tls(self, setup: AgentSetup) -> None:
        """Load the certificates, keys and CAs again into the running contexts (a renewed
        certificate is presented from the next handshake on). Turning TLS on or off, or moving
        the files, needs a restart: the listeners keep the contexts they were started with."""
        rest = tls.rest_files(setup.config.restapi)
        tls.reload(self.rest_server_ssl, rest)
        tls.reload(self.rest_client_ssl, rest)
        if self.store_ssl is not None and setup.store is not None and setup.store.tls:
            files = tls.TlsFiles(*setup.store.tls)
            for ctx in self.store_ssl:
                tls.reload(ctx, files)


async def _run(setup: AgentSetup, path: Path) -> int:
    agent = Agent(setup, path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(agent.reload()))
    return await agent.run()


def main(args: argparse.Namespace) -> int:
    """Entry point of `hamgr agent`."""
    try:
        setup = load_setup(args.config)
    except ConfigError as exc:
        print(f"hamgr agent: {args.config}:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(setup.config.log, getattr(args, "log_format", None))
    tune_gc()
    if isinstance(setup, WitnessSetup):
        log.info("no postgresql section: this host is a witness, a store member only")
        return serve_witness(setup.store)
    return asyncio.run(_run(setup, Path(args.config)))
