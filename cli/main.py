"""Entry point of the ``rgs`` console script."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from cli.base import CliError, Parser
from core.errors import RgsError

__all__ = ["build_parser", "main"]

# Each module exposes ``register(subparsers)``; imported lazily by name so that
# ``rgs fairness ...`` does not pay for importing Ray.
COMMAND_MODULES = (
    "cli.fairness",
    "cli.keno",
    "cli.db",
    "cli.ledger",
    "cli.reconcile",
    "cli.up",
    "cli.bench",
    "cli.sim",
    "cli.verify",
    "cli.rounds",
    "cli.chain",
    "cli.cluster",
    "cli.status",
    "cli.shards",
)


def build_parser() -> Parser:
    parser = Parser(prog="rgs", description="ray-rgs: remote gaming server on Ray.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except RgsError as exc:
        print(f"rgs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rgs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
