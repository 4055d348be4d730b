"""``rgs fairness``: recompute a round's draw or raw floats from its seeds, to verify it.

Only the pure ``core.fairness`` is imported, so verifying a round needs no database,
chain or Ray.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.base import Parser, add_json_flag, emit_json
from core.fairness import DEFAULT_DERIVATION, Derivation, commitment, draw, floats

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "fairness",
        help="recompute a draw from its seeds (provably fair verification)",
        description="Recompute a round's numbers from its server seed, client seed and nonce.",
    )
    commands = parser.add_subparsers(
        dest="fairness_command", metavar="COMMAND", parser_class=Parser
    )
    commands.required = True

    draw_parser = commands.add_parser("draw", help="the numbers of a Keno draw, in draw order")
    _add_seed_arguments(draw_parser)
    draw_parser.add_argument("--pool", type=int, default=80, help="numbers 1..POOL (default 80)")
    draw_parser.add_argument("--count", type=int, default=20, help="numbers drawn (default 20)")
    draw_parser.add_argument(
        "--derivation",
        default=DEFAULT_DERIVATION.value,
        choices=[d.value for d in Derivation],
        help=f"the round's stored derivation (default {DEFAULT_DERIVATION.value})",
    )
    add_json_flag(draw_parser)
    draw_parser.set_defaults(handler=_draw)

    floats_parser = commands.add_parser("floats", help="the raw floats in [0, 1) of the stream")
    _add_seed_arguments(floats_parser)
    floats_parser.add_argument("--count", type=int, required=True, help="how many floats")
    add_json_flag(floats_parser)
    floats_parser.set_defaults(handler=_floats)


def _add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-seed", required=True, help="the revealed server seed")
    parser.add_argument("--client-seed", required=True, help="the round's public client seed")
    parser.add_argument("--nonce", type=int, required=True, help="the round's nonce (>= 0)")


def _draw(args: argparse.Namespace) -> int:
    numbers = draw(
        args.server_seed,
        args.client_seed,
        args.nonce,
        pool=args.pool,
        count=args.count,
        derivation=args.derivation,
    )
    seed_hash = commitment(args.server_seed)
    if args.json:
        emit_json(
            {
                "numbers": list(numbers),
                "derivation": args.derivation,
                "server_seed_hash": seed_hash,
                "client_seed": args.client_seed,
                "nonce": args.nonce,
                "pool": args.pool,
                "count": args.count,
            }
        )
    else:
        print(
            f"draw {args.count} of {args.pool}  derivation {args.derivation}  "
            f"nonce {args.nonce}  server seed sha256 {seed_hash}"
        )
        print(" ".join(str(n) for n in numbers))
    return 0


def _floats(args: argparse.Namespace) -> int:
    values = floats(args.server_seed, args.client_seed, args.nonce, args.count)
    seed_hash = commitment(args.server_seed)
    if args.json:
        emit_json(
            {
                "floats": values,
                "server_seed_hash": seed_hash,
                "client_seed": args.client_seed,
                "nonce": args.nonce,
                "count": args.count,
            }
        )
    else:
        print(f"{args.count} floats  nonce {args.nonce}  server seed sha256 {seed_hash}")
        for value in values:
            print(repr(value))
    return 0
