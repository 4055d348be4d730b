"""``rgs ledger verify``: every money invariant of DESIGN.md, checked on the live database.

Each check is one query (or one streamed pass for the hash chains) and yields violations
as plain sentences; an empty list means the ledger is sound. Checks:

1. the lines of each transaction sum to zero per asset;
2. every account's cached balances equal the sums of its lines;
3. each line's ``balance_after`` is the running sum of its account's bucket, in sequence;
4. no player balance is negative, cached or at any line;
5. every account's hash chain is intact, its sequence has no gap and its head matches;
6. idempotency keys are unique, and every reference (line → transaction → account,
   record → account, bet → account) resolves;
7. each bet has at most one resolution (one win or one rollback).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from core.ledger import GENESIS_HASH, Line, line_hash

__all__ = ["Violation", "verify_ledger"]

_LIMIT = 20  # violations reported per check; one is enough to fail, twenty to diagnose


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


_QUERIES: list[tuple[str, str, str]] = [
    (
        "balanced",
        "SELECT tx_id, asset, sum(amount) AS total FROM ledger_lines GROUP BY tx_id, asset"
        " HAVING sum(amount) <> 0 ORDER BY tx_id LIMIT $1",
        "transaction {tx_id} does not balance in {asset}: lines sum to {total}",
    ),
    (
        "cached balance",
        "SELECT a.account_id, a.withdrawable, coalesce(s.w, 0) AS lines_w, a.bonus, coalesce(s.b, 0) AS lines_b"
        " FROM accounts a LEFT JOIN (SELECT account_id,"
        "   sum(amount) FILTER (WHERE bucket = 'withdrawable') AS w,"
        "   sum(amount) FILTER (WHERE bucket = 'bonus') AS b FROM ledger_lines GROUP BY account_id) s"
        "   ON s.account_id = a.account_id"
        " WHERE a.withdrawable <> coalesce(s.w, 0) OR a.bonus <> coalesce(s.b, 0)"
        " ORDER BY a.account_id LIMIT $1",
        "account {account_id}: cached withdrawable {withdrawable} / bonus {bonus}, "
        "but its lines sum to {lines_w} / {lines_b}",
    ),
    (
        "running balance",
        "SELECT account_id, account_seq, balance_after, running FROM ("
        "  SELECT account_id, account_seq, balance_after,"
        "   sum(amount) OVER (PARTITION BY account_id, bucket ORDER BY account_seq) AS running"
        "  FROM ledger_lines) l WHERE balance_after <> running ORDER BY account_id, account_seq LIMIT $1",
        "account {account_id} line {account_seq}: balance_after {balance_after} but the running sum is {running}",
    ),
    (
        "negative balance",
        "SELECT a.account_id, a.withdrawable, a.bonus FROM accounts a"
        " WHERE a.kind = 'player' AND (a.withdrawable < 0 OR a.bonus < 0) ORDER BY 1 LIMIT $1",
        "player account {account_id} is negative: withdrawable {withdrawable}, bonus {bonus}",
    ),
    (
        "negative balance",
        "SELECT l.account_id, l.account_seq, l.balance_after FROM ledger_lines l JOIN accounts a"
        " ON a.account_id = l.account_id WHERE a.kind = 'player' AND l.balance_after < 0"
        " ORDER BY 1, 2 LIMIT $1",
        "player account {account_id} went negative at line {account_seq}: {balance_after}",
    ),
    (
        "idempotency",
        "SELECT account_id, idempotency_key, count(*) AS n FROM idempotency_records"
        " GROUP BY 1, 2 HAVING count(*) > 1 LIMIT $1",
        "key {idempotency_key!r} of account {account_id} is recorded {n} times",
    ),
    (
        "idempotency",
        "SELECT account_id, idempotency_key, count(*) AS n FROM ledger_transactions"
        " GROUP BY 1, 2 HAVING count(*) > 1 LIMIT $1",
        "key {idempotency_key!r} of account {account_id} moved money {n} times",
    ),
    (
        "idempotency",
        "SELECT t.tx_id, t.idempotency_key FROM ledger_transactions t LEFT JOIN idempotency_records r"
        " ON r.account_id = t.account_id AND r.idempotency_key = t.idempotency_key"
        " WHERE r.tx_id IS DISTINCT FROM t.tx_id ORDER BY 1 LIMIT $1",
        "transaction {tx_id} ({idempotency_key!r}) has no matching idempotency record",
    ),
    (
        "references",
        "SELECT l.tx_id, l.line_no FROM ledger_lines l LEFT JOIN ledger_transactions t ON t.tx_id = l.tx_id"
        " LEFT JOIN accounts a ON a.account_id = l.account_id"
        " WHERE t.tx_id IS NULL OR a.account_id IS NULL ORDER BY 1 LIMIT $1",
        "line {tx_id}/{line_no} references a missing transaction or account",
    ),
    (
        "references",
        "SELECT t.tx_id FROM ledger_transactions t LEFT JOIN accounts a ON a.account_id = t.account_id"
        " WHERE a.account_id IS NULL"
        " UNION ALL SELECT t.tx_id FROM ledger_transactions t"
        " WHERE NOT EXISTS (SELECT 1 FROM ledger_lines l WHERE l.tx_id = t.tx_id) LIMIT $1",
        "transaction {tx_id} has no account or no lines",
    ),
    (
        "references",
        "SELECT 'record' AS what, r.account_id FROM idempotency_records r"
        " WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = r.account_id)"
        " UNION ALL SELECT 'bet', b.account_id FROM wallet_bets b"
        " WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = b.account_id) LIMIT $1",
        "a {what} references missing account {account_id}",
    ),
    (
        "one resolution",
        "SELECT account_id, reference, count(*) AS n FROM ledger_transactions"
        " WHERE kind IN ('win', 'rollback') GROUP BY 1, 2 HAVING count(*) > 1 LIMIT $1",
        "bet {reference!r} of account {account_id} was resolved {n} times",
    ),
]


async def _chain_violations(conn: asyncpg.Connection) -> AsyncIterator[Violation]:
    heads = {
        int(r["account_id"]): (int(r["version"]), bytes(r["last_hash"]))
        for r in await conn.fetch("SELECT account_id, version, last_hash FROM accounts")
    }
    current: int | None = None
    seq, prev = 0, GENESIS_HASH
    found = 0

    def close(account_id: int) -> Violation | None:
        version, head = heads.pop(account_id, (None, None))
        if version is None:
            return Violation("hash chain", f"lines for unknown account {account_id}")
        if (version, head) != (seq, prev):
            return Violation(
                "hash chain",
                f"account {account_id}: head is version {version} but its lines end at {seq}"
                + ("" if version != seq else " with a different hash"),
            )
        return None

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            "SELECT tx_id, line_no, account_id, asset, bucket, amount, balance_after, account_seq,"
            " prev_hash, hash FROM ledger_lines ORDER BY account_id, account_seq",
            prefetch=5000,
        )
        async for row in cursor:
            account_id = int(row["account_id"])
            if account_id != current:
                if current is not None and (violation := close(current)) is not None:
                    yield violation
                    found += 1
                current, seq, prev = account_id, 0, GENESIS_HASH
            line = Line(
                int(row["tx_id"]),
                int(row["line_no"]),
                account_id,
                row["asset"],
                row["bucket"],
                int(row["amount"]),
                int(row["balance_after"]),
                int(row["account_seq"]),
            )
            expected = line_hash(prev, line)
            if line.account_seq != seq + 1 or bytes(row["prev_hash"]) != prev or bytes(row["hash"]) != expected:
                yield Violation(
                    "hash chain",
                    f"account {account_id} line {line.account_seq} (tx {line.tx_id}) breaks the chain"
                    + ("" if line.account_seq == seq + 1 else f" (expected sequence {seq + 1})"),
                )
                found += 1
                if found >= _LIMIT:
                    return
            seq, prev = line.account_seq, bytes(row["hash"])
        if current is not None and (violation := close(current)) is not None:
            yield violation
    for account_id, (version, _) in sorted(heads.items()):
        if version != 0:
            yield Violation("hash chain", f"account {account_id} is at version {version} but has no lines")


async def verify_ledger(conn: asyncpg.Connection) -> list[Violation]:
    """All violations found (empty when every invariant holds)."""
    violations: list[Violation] = []
    for check, query, template in _QUERIES:
        for row in await conn.fetch(query, _LIMIT):
            violations.append(Violation(check, template.format(**dict(row))))
    async for violation in _chain_violations(conn):
        violations.append(violation)
    return violations
