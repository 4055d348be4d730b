"""``rgs rounds``: list and show Keno rounds, recall a ticket, re-enable a disabled table."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail, load_cli_config
from storage.rounds import RoundStore

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("rounds", help="Keno rounds: list, show, recall a ticket, enable a table")
    rounds_sub = parser.add_subparsers(dest="rounds_command", metavar="ACTION", parser_class=type(parser))
    rounds_sub.required = True

    listing = rounds_sub.add_parser("list", help="the newest rounds of every (or one) table")
    listing.add_argument("--table", default=None)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument(
        "--phase", action="append", default=None,
        help="only rounds in this phase (repeatable; default: every phase)",
    )
    listing.set_defaults(handler=_list)

    show = rounds_sub.add_parser("show", help="one round's public record and ticket counts")
    show.add_argument("round_id")
    show.set_defaults(handler=_show)

    recall = rounds_sub.add_parser("recall", help="re-present a ticket: picks, stake, draw, hits, payout, balances, proofs")
    recall.add_argument("ticket_id")
    recall.set_defaults(handler=_recall)

    enable = rounds_sub.add_parser("enable-table", help="re-enable a table that was disabled after a failed round")
    enable.add_argument("table_id")
    enable.set_defaults(handler=_enable)

    for command in (listing, show, recall, enable):
        command.add_argument("--database-url", default=None, help="default: DATABASE_URL or the embedded server")
        add_config_flag(command)
        add_json_flag(command)


_PHASES = ("created", "open", "closed", "drawn", "settled", "published", "revealed", "voided")


def _with_store(args: argparse.Namespace, work: Callable[[RoundStore], Awaitable[Any]]) -> Any:
    from storage.database import resolve_database

    config = load_cli_config(args)
    url, server = resolve_database(args.database_url or config.database_url, config.pg_data_dir)

    async def run() -> Any:
        store = await RoundStore.connect(url, max_size=1)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    finally:
        if server is not None:
            server.stop()


def _list(args: argparse.Namespace) -> int:
    phases = args.phase or list(_PHASES)
    unknown = [p for p in phases if p not in _PHASES]
    if unknown:
        fail(f"rgs rounds list: unknown phase {unknown[0]!r}; one of {', '.join(_PHASES)}")
    if args.limit < 1:
        fail("rgs rounds list: --limit must be at least 1")
    rows = _with_store(args, lambda s: s.published_many(table_id=args.table, phases=phases, limit=args.limit))
    if args.json:
        emit_json({"rounds": rows})
        return 0
    if not rows:
        print("no rounds")
    for row in rows:
        numbers = " ".join(str(n) for n in row["numbers"] or [])
        settlement = row.get("settlement") or {}
        print(
            f"{row['round_id']:<24} {row['phase']:<9} tickets {settlement.get('tickets', '-'):>6}"
            f"  paid {settlement.get('paid', '-'):>10}  {numbers}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    async def work(store: RoundStore) -> dict[str, Any] | None:
        record = await store.published(args.round_id)
        if record is not None:
            record["tickets"] = await store.ticket_counts(args.round_id)
            record["transitions"] = await store.transitions(args.round_id)
        return record

    record = _with_store(args, work)
    if record is None:
        fail(f"rgs rounds show: no round {args.round_id}", exit_code=1)
    if args.json:
        emit_json(record)
    else:
        for key, value in record.items():
            print(f"{key:<14} {value}")
    return 0


def _recall(args: argparse.Namespace) -> int:
    ticket = _with_store(args, lambda s: s.recall(args.ticket_id))
    if ticket is None:
        fail(f"rgs rounds recall: no ticket {args.ticket_id}", exit_code=1)
    if args.json:
        emit_json(ticket)
        return 0
    round_ = ticket.pop("round") or {}
    for key, value in ticket.items():
        print(f"{key:<18} {value}")
    print(f"{'drawn':<18} {round_.get('numbers')}")
    print(f"{'round phase':<18} {round_.get('phase')}")
    print(f"{'commitment':<18} {round_.get('commitment')} (tx {round_.get('commit_tx')})")
    print(f"{'salt':<18} {round_.get('salt')} (block {round_.get('salt_block')})")
    print(f"{'revealed seed':<18} {round_.get('revealed_seed')} (tx {round_.get('reveal_tx')})")
    return 0


def _enable(args: argparse.Namespace) -> int:
    _with_store(args, lambda s: s.set_table_enabled(args.table_id, True, "re-enabled by an operator"))
    print(f"table {args.table_id} enabled; restart its scheduler (rgs up) to resume rounds")
    return 0
