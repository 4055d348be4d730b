"""``rgs reconcile --provider ID``: a provider's callbacks against the ledger."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail, load_cli_config
from core.money import format_amount
from storage.database import connection, resolve_database
from storage.reconciliation import Reconciliation, reconcile

__all__ = ["register"]


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. {text}Z or {text}+00:00)")
    return moment


def register(sub: Any) -> None:
    parser = sub.add_parser("reconcile", help="reconcile a provider's callbacks with the ledger")
    parser.add_argument("--provider", required=True, help="provider id (e.g. hub88)")
    parser.add_argument("--from", dest="since", type=_moment, default=None, help="ISO 8601 start (inclusive)")
    parser.add_argument("--to", dest="until", type=_moment, default=None, help="ISO 8601 end (exclusive)")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or the embedded server")
    add_config_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.since and args.until and args.since >= args.until:
        fail("rgs reconcile: --from must be before --to")
    config = load_cli_config(args)
    url, server = resolve_database(args.database_url or config.database_url, config.pg_data_dir)
    try:
        report, known = asyncio.run(_reconcile(url, args.provider, args.since, args.until))
    finally:
        if server is not None:
            server.stop()
    if not known:
        fail(f"rgs reconcile: unknown provider {args.provider!r}")
    if args.json:
        emit_json(report.as_dict())
    else:
        print(_human(report))
    return 1 if report.divergences else 0


async def _reconcile(url: str, provider: str, since: datetime | None, until: datetime | None) -> tuple[Reconciliation, bool]:
    async with connection(url) as conn:
        known = bool(await conn.fetchval("SELECT 1 FROM providers WHERE provider_id = $1", provider))
        return await reconcile(conn, provider, since, until), known


def _human(report: Reconciliation) -> str:
    lines = [
        f"provider {report.provider_id}: {report.callbacks} callbacks",
        f"  bets {report.bets}: resolved {report.resolved_bets} (won {report.won_bets}, "
        f"rolled back {report.rolled_back_bets}), open {len(report.open_bets)}",
        f"  rollbacks of unknown bets (remembered): {report.rollbacks_of_unknown}",
    ]
    for cur, figures in sorted(report.money.items()):
        lines.append(
            f"  {cur}: bets {format_amount(figures['bets'], cur)}, wins {format_amount(figures['wins'], cur)}, "
            f"refunds {format_amount(figures['refunds'], cur)}, GGR {format_amount(figures['ggr'], cur)}"
        )
    for bet in report.open_bets[:20]:
        lines.append(f"  open: {bet['player_id']} bet {bet['bet']} round {bet['round']} since {bet['since']}")
    if report.divergences:
        lines.append(f"  {len(report.divergences)} divergence(s):")
        lines += [f"    {d}" for d in report.divergences]
    else:
        lines.append("  no divergences between callbacks and the ledger")
    return "\n".join(lines)
