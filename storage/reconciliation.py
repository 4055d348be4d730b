"""Reconciliation of one provider's callbacks against the ledger.

The ledger and the idempotency records say what the wallet did; ``provider_callbacks``
says what the provider asked and what we answered, with the wallet keys its intents ran
under. A dialect namespaces its keys with its name (``"hub88:{transaction_uuid}"``), which
picks out the provider's side of the ledger; the keys tie the two together.

A callback's row holds either the dialect's answer (``result_code`` ``RS_OK``, ``200``, ...;
written by the adapter) or, for a one-intent call the shard journaled, the wallet's own
(``ok``, ``insufficient_funds``, ...; written with the command, migration 0012).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["Reconciliation", "reconcile"]


@dataclass
class Reconciliation:
    provider_id: str
    since: datetime | None
    until: datetime | None
    callbacks: int = 0
    bets: int = 0
    resolved_bets: int = 0  # won or rolled back
    won_bets: int = 0
    rolled_back_bets: int = 0
    open_bets: list[dict[str, Any]] = field(default_factory=list)
    rollbacks_of_unknown: int = 0
    # per currency, minor units: bets, wins, refunds, ggr = bets - wins - refunds
    money: dict[str, dict[str, int]] = field(default_factory=dict)
    divergences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider_id": self.provider_id,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "callbacks": self.callbacks,
            "bets": self.bets,
            "resolved_bets": self.resolved_bets,
            "won_bets": self.won_bets,
            "rolled_back_bets": self.rolled_back_bets,
            "open_bets": self.open_bets,
            "rollbacks_of_unknown_bets": self.rollbacks_of_unknown,
            "money": {cur: {k: str(v) for k, v in figures.items()} for cur, figures in self.money.items()},
            "divergences": self.divergences,
        }


async def reconcile(
    conn: asyncpg.Connection, provider_id: str, since: datetime | None = None, until: datetime | None = None
) -> Reconciliation:
    report = Reconciliation(provider_id, since, until)
    dialect = await conn.fetchval("SELECT dialect FROM providers WHERE provider_id = $1", provider_id)
    prefix = f"{dialect or provider_id}:"
    window = "($2::timestamptz IS NULL OR {col} >= $2) AND ($3::timestamptz IS NULL OR {col} < $3)"
    report.callbacks = int(
        await conn.fetchval(
            "SELECT count(DISTINCT (received_at, body_sha256)) FROM provider_callbacks WHERE provider_id = $1 AND "
            + window.format(col="received_at"),
            provider_id,
            since,
            until,
        )
    )
    for row in await conn.fetch(
        "SELECT b.state, count(*) AS n FROM wallet_bets b WHERE b.bet_key LIKE $1 || '%' AND "
        + window.format(col="b.updated_at")
        + " GROUP BY b.state",
        prefix,
        since,
        until,
    ):
        n = int(row["n"])
        state = row["state"]
        if state == "tombstone":
            report.rollbacks_of_unknown += n
            continue
        report.bets += n
        if state == "won":
            report.won_bets += n
        elif state == "rolled_back":
            report.rolled_back_bets += n
    report.resolved_bets = report.won_bets + report.rolled_back_bets
    report.open_bets = [
        {"player_id": r["player_id"], "bet": r["bet_key"][len(prefix):], "amount_minor": str(r["amount"]),
         "round": r["round_ref"], "since": r["updated_at"].isoformat()}
        for r in await conn.fetch(
            "SELECT a.player_id, b.bet_key, b.amount, b.round_ref, b.updated_at FROM wallet_bets b"
            " JOIN accounts a ON a.account_id = b.account_id"
            " WHERE b.state = 'open' AND b.bet_key LIKE $1 || '%' AND "
            + window.format(col="b.updated_at")
            + " ORDER BY b.updated_at LIMIT 1000",
            prefix,
            since,
            until,
        )
    ]
    for row in await conn.fetch(
        "SELECT l.asset, t.kind, sum(l.amount) AS total FROM ledger_transactions t"
        " JOIN ledger_lines l ON l.tx_id = t.tx_id AND l.account_id = t.account_id"
        " WHERE t.idempotency_key LIKE $1 || '%' AND "
        + window.format(col="t.created_at")
        + " GROUP BY l.asset, t.kind",
        prefix,
        since,
        until,
    ):
        figures = report.money.setdefault(row["asset"], {"bets": 0, "wins": 0, "refunds": 0, "ggr": 0})
        total = int(row["total"])
        if row["kind"] == "bet":
            figures["bets"] += -total
        elif row["kind"] == "win":
            figures["wins"] += total
        elif row["kind"] == "rollback":
            figures["refunds"] += total
    for figures in report.money.values():
        figures["ggr"] = figures["bets"] - figures["wins"] - figures["refunds"]

    # Money moved under this provider's key with no callback recorded for it.
    for row in await conn.fetch(
        "SELECT t.tx_id, t.kind, t.idempotency_key FROM ledger_transactions t"
        " WHERE t.idempotency_key LIKE $1 || '%' AND t.idempotency_key NOT LIKE '%:undo' AND "
        + window.format(col="t.created_at")
        + " AND NOT EXISTS (SELECT 1 FROM provider_callbacks c WHERE c.provider_id = $4"
        "   AND c.transaction_id = t.idempotency_key) ORDER BY t.tx_id LIMIT 100",
        prefix,
        since,
        until,
        provider_id,
    ):
        report.divergences.append(
            f"ledger transaction {row['tx_id']} ({row['kind']} {row['idempotency_key']}) has no recorded callback"
        )
    # A callback we answered for a transaction the wallet has no record of.
    for row in await conn.fetch(
        "SELECT DISTINCT c.transaction_id, c.endpoint, c.result_code FROM provider_callbacks c"
        " WHERE c.provider_id = $4 AND c.transaction_id IS NOT NULL AND "
        + window.format(col="c.received_at")
        # the dialects' success codes, and the wallet's own where a shard wrote the record (0012)
        + " AND c.result_code IN ('RS_OK', '200', 'ok')"
        " AND c.transaction_id LIKE $1 || '%'"
        " AND NOT EXISTS (SELECT 1 FROM idempotency_records r WHERE r.idempotency_key = c.transaction_id)"
        " ORDER BY 1 LIMIT 100",
        prefix,
        since,
        until,
        provider_id,
    ):
        report.divergences.append(
            f"callback {row['endpoint']} for transaction {row['transaction_id']} answered {row['result_code']} "
            "but the wallet has no record of it"
        )
    return report
