"""``rgs ledger verify``: check every money invariant on the live database."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, load_cli_config
from storage.database import connection, resolve_database
from storage.ledger_check import Violation, verify_ledger

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("ledger", help="the double-entry ledger")
    ledger_sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", parser_class=type(parser))
    ledger_sub.required = True
    verify = ledger_sub.add_parser(
        "verify", help="check every invariant; exit 0 when all hold, 1 with the violations otherwise"
    )
    verify.add_argument("--database-url", default=None, help="default: DATABASE_URL or the embedded server")
    add_config_flag(verify)
    add_json_flag(verify)
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    url, server = resolve_database(args.database_url or config.database_url, config.pg_data_dir)
    try:
        started = time.perf_counter()
        violations, counts = asyncio.run(_run(url))
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    if args.json:
        emit_json(
            {
                "ok": not violations,
                "violations": [{"check": v.check, "detail": v.detail} for v in violations],
                **counts,
                "seconds": round(elapsed, 3),
            }
        )
    else:
        print(
            f"checked {counts['accounts']} accounts, {counts['transactions']} transactions, "
            f"{counts['lines']} lines in {elapsed:.2f} s"
        )
        if violations:
            print(f"{len(violations)} violation(s):")
            for violation in violations:
                print(f"  {violation}")
        else:
            print("ledger OK: balanced, cached balances match, no negative balance, hash chains intact, keys unique")
    return 1 if violations else 0


async def _run(url: str) -> tuple[list[Violation], dict[str, int]]:
    async with connection(url) as conn:
        violations = await verify_ledger(conn)
        counts = {
            "accounts": int(await conn.fetchval("SELECT count(*) FROM accounts")),
            "transactions": int(await conn.fetchval("SELECT count(*) FROM ledger_transactions")),
            "lines": int(await conn.fetchval("SELECT count(*) FROM ledger_lines")),
        }
    return violations, counts
