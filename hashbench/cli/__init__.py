"""The ``hashbench`` command line.

Each module of this package adds the sub-commands of one area with ``add_commands(subparsers)``,
each parser's ``func`` a handler taking the parsed arguments:

- ``methods``: list, evaluate, check;
- ``run``: run, tune, rescore;
- ``report``: report, plot, reproduce;
- ``datasets``: datasets describe, datasets backbone;
- ``prepare``: prepare (the real datasets and the standard protocols).

Shared flags come from ``options``. Errors a user can cause are printed as one line, never as a
traceback.
"""

from __future__ import annotations

import argparse
import sys

from hashbench.cli import datasets, methods, prepare, report, run
from hashbench.errors import HashbenchError
from hashbench.methods._torch import flush_subnormals_in_process

COMMAND_MODULES = (methods, run, report, datasets, prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashbench",
        description="Benchmark unsupervised learning-to-hash methods for image retrieval.",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="load a Python file that defines extra methods (repeatable)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(subparsers)
    return parser


def main(argv=None) -> int:
    flush_subnormals_in_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from hashbench.registry import load_plugin

        for plugin in args.plugin:
            load_plugin(plugin)
        status = args.func(args)
        return status if isinstance(status, int) else 0
    except HashbenchError as error:
        print(f"hashbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hashbench: interrupted", file=sys.stderr)
        return 130
