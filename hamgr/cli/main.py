"""Entry point of the `hamgr` command."""

from __future__ import annotations

import argparse
import sys

from hamgr import __version__


def _validate_config(args: argparse.Namespace) -> int:
    """Print "ok" (exit 0) or every problem of the file, one per line on stderr (exit 1).

    The checks are the agent's own at start (`hamgr.agent.setup.load_agent_setup`).
    """
    from hamgr.agent.setup import WITNESS_MEANING, WitnessSetup, load_setup
    from hamgr.config import ConfigError

    try:
        setup = load_setup(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if isinstance(setup, WitnessSetup):
        print(f"ok: {WITNESS_MEANING}, store member {setup.store.node_id}")
    else:
        print("ok")
    return 0


def _store(args: argparse.Namespace) -> int:
    """Run one member of the Raft store until SIGTERM/SIGINT."""
    from hamgr.agent.storemember import main as store_main

    return store_main(args)


def _agent(args: argparse.Namespace) -> int:
    """Run this host's HA agent until SIGTERM/SIGINT."""
    from hamgr.agent.process import main as agent_main

    return agent_main(args)


def _store_ctl(args: argparse.Namespace) -> int:
    """One store-ctl command against a running store."""
    from hamgr.cli.storectl import main as ctl_main

    return ctl_main(args)


def _certs(args: argparse.Namespace) -> int:
    """Make or renew the cluster's TLS certificates."""
    from hamgr.cli.certs import main as certs_main

    return certs_main(args)


def _healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when this host's agent answers 200 on a health path."""
    from hamgr.cli.healthcheck import main as health_main

    return health_main(args)


def _add_process_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (required) and ``--log-format``: the options of the commands that run
    a long-lived process from a configuration file (``agent``, ``store``)."""
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument(
        "--log-format", choices=("text", "json"), help="override log.format (json for shippers)"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen sub-command."""
    parser = argparse.ArgumentParser(prog="hamgr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hamgr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    validate = commands.add_parser(
        "validate-config",
        help="check a configuration file (with HAMGR_* overrides); print ok or every problem",
        description="Check a configuration file as the agent would read it at start, "
        "HAMGR_* environment overrides included. Exit 0 if it is valid, 1 if not.",
    )
    validate.add_argument("file", help="the YAML configuration file")
    validate.set_defaults(run=_validate_config)
    agent = commands.add_parser(
        "agent",
        help="run this host's HA agent (store member, HA loop, fencer, REST API)",
        description="Run the HA agent: the embedded store member, the HA loop managing the "
        "local PostgreSQL, the fencer and the REST API. Prints one line when serving; SIGTERM "
        "hands a primary over to a healthy replica and stops; SIGHUP reloads the file.",
    )
    _add_process_options(agent)
    agent.set_defaults(run=_agent)
    store = commands.add_parser(
        "store",
        help="run this member of the Raft store as its own process",
        description="Run one member of the embedded Raft store: Raft on store.raft.listen, "
        "clients on store.raft.client_listen. Prints one line when ready; SIGTERM or SIGINT "
        "stops it cleanly.",
    )
    _add_process_options(store)
    store.set_defaults(run=_store)
    store_ctl = commands.add_parser(
        "store-ctl",
        help="put, get, delete keys and show member status in a running store",
        description="Talk to a running store as a client, for debugging.",
    )
    from hamgr.cli.storectl import add_arguments

    add_arguments(store_ctl)
    store_ctl.set_defaults(run=_store_ctl)
    certs = commands.add_parser(
        "certs",
        help="make a cluster CA and member certificates (init), or renew them",
        description="TLS certificates for the REST API and the store: `init` makes a CA and "
        "a certificate per member, `renew` issues new member certificates from the same CA.",
    )
    from hamgr.cli.certs import add_arguments as certs_arguments

    certs_arguments(certs)
    certs.set_defaults(run=_certs)
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 when this host's agent answers 200 (for container health checks)",
        description="GET a health path (default /liveness) of this host's agent, over https "
        "with the configuration's certificates when restapi.certfile is set.",
    )
    from hamgr.cli.healthcheck import add_arguments as health_arguments

    health_arguments(health)
    health.set_defaults(run=_healthcheck)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result
