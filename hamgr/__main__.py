"""Entry point of the `hamgr` command."""

from __future__ import annotations

import argparse
import sys

from hamgr import __version__


def _validate_config(args: argparse.Namespace) -> int:
    """Print "ok" (exit 0) or every problem of the file, one per line on stderr (exit 1)."""
    from hamgr.config import validate_config_file

    problems = validate_config_file(args.file)
    if not problems:
        print("ok")
        return 0
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1


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
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
