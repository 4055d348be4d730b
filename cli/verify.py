"""``rgs verify``: check rounds from public data only (published record + chain).

The record comes from the ``published_rounds`` view (never the private columns), or from
a JSON file an operator or player saved (``--record``); the chain from
``chain_rpc_url`` or the embedded dev chain of ``rgs up``. Exit 0 when every check of
every round passes, 1 when any fails (the failed check is named), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail, load_cli_config
from core.config import Config
from core.verification import Check, verify_round

__all__ = ["ChainReader", "chain_url", "register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "verify", help="check that rounds were fair, from public data only (exit 1 on any mismatch)"
    )
    parser.add_argument("round_id", nargs="?", help="the round to check (e.g. keno-1-179532101)")
    parser.add_argument("--all", action="store_true", help="check every revealed round (newest first)")
    parser.add_argument("--table", default=None, help="with --all: only this table")
    parser.add_argument("--limit", type=int, default=1000, help="with --all: at most this many rounds")
    parser.add_argument("--record", type=Path, default=None, help="a saved public round record (JSON) instead of the database")
    parser.add_argument("--rpc-url", default=None, help="chain JSON-RPC URL (default: chain_rpc_url or the embedded chain)")
    parser.add_argument(
        "--notary", default=None, metavar="ADDRESS",
        help="the notary address the operator publishes; default: the one the record names",
    )
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or the embedded server")
    add_config_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_verify)


class ChainReader:
    """``core.verification.ChainView`` over the chain client, with a small block cache."""

    def __init__(self, rpc_url: str) -> None:
        from storage.chain import ChainClient

        self._client = ChainClient(rpc_url)
        self._blocks: dict[int, tuple[str, int, int | None]] = {}

    def batch_root(self, tx_hash: str) -> tuple[int, bytes, int, str]:
        from storage.chain import decode_payload

        tx = self._client.transaction(tx_hash)
        kind, root = decode_payload(tx.payload)
        return int(kind), root, int(tx.block), tx.sender

    def block_times(self, number: int) -> tuple[str, int, int | None]:
        if number not in self._blocks:
            info = self._client.block(number)
            self._blocks[number] = (info.hash, int(info.timestamp), info.parent_timestamp)
        return self._blocks[number]


def chain_url(config: Config, override: str | None = None) -> str:
    if override:
        return override
    if config.chain_rpc_url:
        return config.chain_rpc_url
    state = config.state_dir / "chain" / "chain.json"
    try:
        return str(json.loads(state.read_text(encoding="utf-8"))["url"])
    except (OSError, ValueError, KeyError):
        fail(
            "rgs verify: no chain to read: set chain_rpc_url (RGS_CHAIN_RPC_URL) or --rpc-url, "
            f"or run it where 'rgs up' keeps its embedded chain ({state} not found)"
        )


def _verify(args: argparse.Namespace) -> int:
    if not args.all and not args.round_id and args.record is None:
        fail("rgs verify: name a ROUND_ID, or pass --all or --record FILE")
    if args.limit < 1:
        fail("rgs verify: --limit must be at least 1")
    config = load_cli_config(args)
    records = _records(args, config)
    if not records:
        fail("rgs verify: no such round" if args.round_id else "rgs verify: no revealed rounds to check", exit_code=1)
    reader = ChainReader(chain_url(config, args.rpc_url))
    results: list[tuple[dict[str, Any], list[Check]]] = [
        (r, verify_round(r, reader, expected_notary=args.notary)) for r in records
    ]
    failed = [(r, checks) for r, checks in results if not all(c.ok for c in checks)]
    if args.json:
        emit_json(
            {
                "ok": not failed,
                "rounds": len(results),
                "failed": len(failed),
                "results": [
                    {"round_id": r.get("round_id"), "ok": all(c.ok for c in checks), "checks": [c.to_dict() for c in checks]}
                    for r, checks in results
                ],
            }
        )
    else:
        for record, checks in results:
            ok = all(c.ok for c in checks)
            if len(results) == 1 or not ok:
                print(f"round {record.get('round_id')}: {'OK' if ok else 'FAILED'}")
                for check in checks:
                    print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        print(f"{len(results) - len(failed)} of {len(results)} round(s) verified" + (f"; {len(failed)} FAILED" if failed else ""))
    return 1 if failed else 0


def _records(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    if args.record is not None:
        try:
            loaded = json.loads(args.record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"rgs verify: cannot read {args.record}: {exc}")
        items = loaded if isinstance(loaded, list) else [loaded]
        if not all(isinstance(i, dict) for i in items):
            fail(f"rgs verify: {args.record} must hold a round record object or a list of them")
        return [i for i in items if args.round_id in (None, i.get("round_id"))]
    from storage.database import resolve_database

    url, server = resolve_database(args.database_url or config.database_url, config.pg_data_dir)
    try:
        return asyncio.run(_load(url, args))
    finally:
        if server is not None:
            server.stop()


async def _load(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from storage.rounds import RoundStore

    store = await RoundStore.connect(url, max_size=1)
    try:
        if args.all:
            return await store.published_many(table_id=args.table, limit=args.limit)
        return await store.published_many(round_ids=[args.round_id])
    finally:
        await store.close()
