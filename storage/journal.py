"""The journal: what an account shard reads from and writes to PostgreSQL.

A shard evaluates a batch of commands in memory, then :meth:`Journal.commit` writes the
whole batch (new accounts, ledger transactions and lines, idempotency records, bet
states, account balances) in one transaction. Inside it the partitions' fencing epochs
are re-read ``FOR SHARE`` and every account update is conditional on the version the shard
last saw, so a stale owner cannot write. Only after COMMIT returns may the shard answer.

The shard layout (which named shard owns which partition, migration 0008) is read and
written here too: it is what a starting shard claims and what routers route by, and it
changes only in a live rebalance (``actors.rebalance``) or when a stack starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core.ledger import GENESIS_HASH, Line, line_hash
from storage.database import CONNECTION_ERRORS
from storage.errors import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    JournalRejectedError,
    StaleWriterError,
    StorageError,
)

__all__ = [
    "AccountRow",
    "BetDraft",
    "CallbackDraft",
    "CommitReceipt",
    "Conflicts",
    "Journal",
    "JournalBatch",
    "PreparedCommit",
    "RecordDraft",
    "ResolutionDraft",
    "ShardLayout",
    "TxDraft",
]


@dataclass(slots=True)
class AccountRow:
    """An account as last committed (``account_id`` is None until first written)."""

    kind: str
    operator_id: str
    player_id: str
    currency: str
    partition_id: int
    status: str = "active"
    withdrawable: int = 0
    bonus: int = 0
    version: int = 0
    last_hash: bytes = GENESIS_HASH
    account_id: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.operator_id, self.player_id)


@dataclass(slots=True)
class TxDraft:
    kind: str
    account: AccountRow  # the player the event is about
    idempotency_key: str
    reference: str | None
    round_ref: str | None
    game_ref: str | None
    partition_id: int
    # (account, bucket, amount, balance_after), in order
    lines: list[tuple[AccountRow, str, int, int]]


@dataclass(slots=True)
class RecordDraft:
    account: AccountRow
    idempotency_key: str
    command_kind: str
    request_hash: bytes
    response: dict[str, Any]
    tx_index: int | None  # index into JournalBatch.transactions; its id fills response["tx_id"]


@dataclass(slots=True)
class CallbackDraft:
    """A provider callback's record, written with the command it ran (migration 0012).

    It holds the wallet's own answer (the command's stored response and its code), not the
    rendered wire body: the dialect renders that body from the request and this answer, so
    it can be rebuilt for recall, and one row serves every dialect.
    """

    record: RecordDraft  # the command's idempotency record: its key, response and tx
    provider_id: str
    endpoint: str
    request_id: str | None
    reference_id: str | None
    player_id: str
    round_ref: str | None
    body_sha256: bytes


@dataclass(slots=True)
class BetDraft:
    """A bet row the shard believes does not exist yet (a bet, a tombstone), in its state
    after the batch: inserted, after checking that the database agrees it is new."""

    account: AccountRow
    bet_key: str
    state: str
    amount: int
    round_ref: str | None
    game_ref: str | None
    resolution_key: str | None
    payout: int | None = None  # what a won bet paid (born and won in the same batch)


@dataclass(slots=True)
class ResolutionDraft:
    """Existing open bets of one account closed by one command (a win, a rollback, a settle).

    One draft per command rather than one object per bet: a settle closes up to thousands
    of bets, and per-bet objects were a measurable share of settling a round.
    """

    account: AccountRow
    state: str  # won / rolled_back
    resolution_key: str  # the idempotency key of the resolving command
    keys: list[str]
    payouts: list[int | None]  # per key: what it paid (won), None (rolled back)


@dataclass(slots=True)
class JournalBatch:
    partitions: set[int] = field(default_factory=set)
    new_accounts: list[AccountRow] = field(default_factory=list)
    transactions: list[TxDraft] = field(default_factory=list)
    records: list[RecordDraft] = field(default_factory=list)
    bets: dict[tuple[int, str], BetDraft] = field(default_factory=dict)  # new bets by (id(account), key)
    resolutions: list[ResolutionDraft] = field(default_factory=list)
    # account -> (withdrawable, bonus, status) after the batch
    balances: dict[int, tuple[AccountRow, int, int, str]] = field(default_factory=dict)
    callbacks: list[CallbackDraft] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.new_accounts)
            + len(self.transactions)
            + len(self.records)
            + len(self.bets)
            + len(self.resolutions)
            + len(self.balances)
            + len(self.callbacks)
        )


@dataclass(slots=True)
class CommitReceipt:
    tx_ids: list[int]
    # id(AccountRow) -> (account_id, version, last_hash) after the batch
    heads: dict[int, tuple[int, int, bytes]]


@dataclass(slots=True)
class PreparedCommit:
    """A batch ready to be written (see :meth:`Journal.prepare`)."""

    batch: JournalBatch
    tx_ids: list[int]
    args: list[Any]
    heads: dict[int, tuple[int, int, bytes]]


@dataclass(slots=True)
class Conflicts:
    """Keys a batch assumed were new but the database already holds: nothing was written."""

    records: set[tuple[int, str]]
    bets: set[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """Which named shard owns each partition of one shard set (version 0: never stored)."""

    shard_set: str
    version: int
    owners: tuple[str, ...]  # owners[partition] is a shard's name

    def owned_by(self, shard: str) -> frozenset[int]:
        return frozenset(p for p, owner in enumerate(self.owners) if owner == shard)

    @property
    def shards(self) -> list[str]:
        """Shard names, in the order of their index suffix (``x-2`` before ``x-10``)."""
        return sorted(set(self.owners), key=lambda n: (len(n), n))


def _account_row(record: asyncpg.Record) -> AccountRow:
    return AccountRow(
        kind=record["kind"],
        operator_id=record["operator_id"],
        player_id=record["player_id"],
        currency=record["currency"],
        partition_id=record["partition_id"],
        status=record["status"],
        withdrawable=int(record["withdrawable"]),
        bonus=int(record["bonus"]),
        version=int(record["version"]),
        last_hash=bytes(record["last_hash"]),
        account_id=int(record["account_id"]),
    )


class Journal:
    """One shard's connection to PostgreSQL. Not shared: the shard calls it sequentially."""

    def __init__(self, url: str, owner: str) -> None:
        self._url = url
        self.owner = owner
        self._conn: asyncpg.Connection | None = None
        self._tx_ids: list[int] = []
        self._account_ids: list[int] = []

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await asyncpg.connect(self._url, timeout=5)
            except CONNECTION_ERRORS as exc:
                self._conn = None
                raise DatabaseUnavailableError(f"cannot reach PostgreSQL: {exc}") from exc
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=2)
            except Exception:
                conn.terminate()

    def _lost(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self._connection()
        try:
            return list(await conn.fetch(query, *args))
        except CONNECTION_ERRORS as exc:
            self._lost()
            raise DatabaseUnavailableError(f"lost PostgreSQL: {exc}") from exc

    # -- ownership ----------------------------------------------------------------------

    async def setup(self, partitions: int) -> None:
        """Record the partition count on first start; refuse a different one later."""
        conn = await self._connection()
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO ledger_settings (partitions) VALUES ($1) ON CONFLICT DO NOTHING",
                    partitions,
                )
                stored = await conn.fetchval("SELECT partitions FROM ledger_settings")
                if stored != partitions:
                    raise StorageError(
                        f"this database was created with {stored} partitions; the configuration "
                        f"says {partitions}. The partition count cannot change (accounts are "
                        "placed by it); set partitions to the stored value"
                    )
                await conn.execute(
                    "INSERT INTO partitions (partition_id) SELECT generate_series(0, $1 - 1)"
                    " ON CONFLICT DO NOTHING",
                    partitions,
                )
        except CONNECTION_ERRORS as exc:
            self._lost()
            raise DatabaseUnavailableError(f"lost PostgreSQL: {exc}") from exc

    async def claim(self, partitions: Sequence[int]) -> dict[int, int]:
        """Take ownership: bump each partition's epoch, fencing out any previous owner."""
        rows = await self._fetch(
            "SELECT partition_id, epoch FROM rgs_claim_partitions($1::int[], $2)",
            sorted(partitions),
            self.owner,
        )
        return {int(r["partition_id"]): int(r["epoch"]) for r in rows}

    def sibling(self) -> Journal:
        """Another connection for the same owner: ownership changes and layout reads run
        on it, beside the flusher's writes (an asyncpg connection runs one query at a time)."""
        return Journal(self._url, self.owner)

    # -- the shard layout (see migration 0008) ------------------------------------------

    async def load_layout(self, shard_set: str, partitions: int) -> ShardLayout | None:
        """The stored layout, None if there is none or it does not cover every partition
        (then the caller falls back to the layout it was started with)."""
        rows = await self._fetch(
            "SELECT l.version, a.partition_id, a.shard FROM shard_layouts l"
            " JOIN shard_assignments a USING (shard_set) WHERE l.shard_set = $1",
            shard_set,
        )
        owners = {int(r["partition_id"]): str(r["shard"]) for r in rows}
        if not rows or sorted(owners) != list(range(partitions)):
            return None
        return ShardLayout(shard_set, int(rows[0]["version"]), tuple(owners[p] for p in range(partitions)))

    async def save_layout(self, shard_set: str, owners: Sequence[str], *, expected_version: int | None) -> ShardLayout:
        """Store a new layout under the next version. With ``expected_version`` the write
        only happens if the stored version is still that one (0: none stored yet), so two
        coordinators cannot silently overwrite each other; None overwrites whatever is there
        (a stack starting up declares its layout)."""
        conn = await self._connection()
        try:
            async with conn.transaction():
                current = await conn.fetchval(
                    "SELECT version FROM shard_layouts WHERE shard_set = $1 FOR UPDATE", shard_set
                )
                if expected_version is not None and (current or 0) != expected_version:
                    raise StorageError(
                        f"the layout of {shard_set!r} moved on to version {current} while this change "
                        f"was prepared against version {expected_version}; retry"
                    )
                version = (current or 0) + 1
                await conn.execute(
                    "INSERT INTO shard_layouts (shard_set, version) VALUES ($1, $2) ON CONFLICT (shard_set)"
                    " DO UPDATE SET version = excluded.version, updated_at = now()",
                    shard_set,
                    version,
                )
                await conn.execute("DELETE FROM shard_assignments WHERE shard_set = $1", shard_set)
                await conn.execute(
                    "INSERT INTO shard_assignments (shard_set, partition_id, shard)"
                    " SELECT $1, p - 1, s FROM unnest($2::text[]) WITH ORDINALITY AS t(s, p)",
                    shard_set,
                    list(owners),
                )
        except CONNECTION_ERRORS as exc:
            self._lost()
            raise DatabaseUnavailableError(f"lost PostgreSQL: {exc}") from exc
        return ShardLayout(shard_set, version, tuple(owners))

    async def try_lock_layout(self, shard_set: str) -> bool:
        """Take the session lock that makes one rebalance of a shard set run at a time
        (released when this journal's connection closes)."""
        rows = await self._fetch("SELECT pg_try_advisory_lock(21352, hashtext($1)) AS taken", shard_set)
        return bool(rows[0]["taken"])

    # -- reads ----------------------------------------------------------------------------

    async def load_accounts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AccountRow]:
        if not keys:
            return {}
        rows = await self._fetch(
            "SELECT a.* FROM accounts a JOIN unnest($1::text[], $2::text[]) AS k(op, player)"
            " ON a.operator_id = k.op AND a.player_id = k.player",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["operator_id"], r["player_id"]): _account_row(r) for r in rows}

    async def load_records(
        self, pairs: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], tuple[bytes, dict[str, Any]]]:
        if not pairs:
            return {}
        rows = await self._fetch(
            "SELECT r.account_id, r.idempotency_key, r.request_hash, r.response::text AS response"
            " FROM idempotency_records r JOIN unnest($1::bigint[], $2::text[]) AS k(id, key)"
            " ON r.account_id = k.id AND r.idempotency_key = k.key",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        return {
            (int(r["account_id"]), r["idempotency_key"]): (bytes(r["request_hash"]), json.loads(r["response"]))
            for r in rows
        }

    async def load_bets(self, pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, int]]:
        if not pairs:
            return {}
        # One primary-key probe per pair (LATERAL ... LIMIT 1 is not flattened into a join,
        # which the planner would hash against a whole mid-sized table); amounts as text,
        # cheaper to decode than numeric and exact.
        rows = await self._fetch(
            "SELECT k.id AS account_id, k.key AS bet_key, b.state, b.amount"
            " FROM unnest($1::bigint[], $2::text[]) AS k(id, key)"
            " CROSS JOIN LATERAL (SELECT w.state, w.amount::text AS amount FROM wallet_bets w"
            "   WHERE w.account_id = k.id AND w.bet_key = k.key LIMIT 1) b",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        return {(r["account_id"], r["bet_key"]): (r["state"], int(r["amount"])) for r in rows}

    # -- the write ------------------------------------------------------------------------

    async def _reserve(self, sequence: str, block: int, needed: int, pool: list[int]) -> None:
        """Top up an id pool from a sequence that hands out blocks of ``block`` ids."""
        while len(pool) < needed:
            starts = await self._fetch(
                f"SELECT nextval('{sequence}') FROM generate_series(1, $1)",
                max(1, (needed - len(pool) + block - 1) // block),
            )
            for row in starts:
                pool.extend(range(int(row[0]), int(row[0]) + block))

    async def commit(self, batch: JournalBatch, epochs: dict[int, int]) -> CommitReceipt | Conflicts:
        """Write the batch atomically, or return the keys it wrongly assumed were new."""
        return await self.send(await self.prepare(batch, epochs))

    async def prepare(self, batch: JournalBatch, epochs: dict[int, int]) -> PreparedCommit:
        """Reserve ids and compute the write (hash chains included) from the accounts'
        committed heads as they are now. Split from :meth:`send` so a shard can put the
        write on the wire and evaluate its next batch while PostgreSQL works."""
        await self._reserve("ledger_tx_id_seq", _TX_BLOCK, len(batch.transactions), self._tx_ids)
        await self._reserve("accounts_account_id_seq", _ACCOUNT_BLOCK, len(batch.new_accounts), self._account_ids)
        # Ids are used up whatever happens next: a commit whose outcome is unknown may have
        # written them, so they must never be handed out again (gaps are harmless).
        tx_ids = self._tx_ids[: len(batch.transactions)]
        del self._tx_ids[: len(tx_ids)]
        account_ids = self._account_ids[: len(batch.new_accounts)]
        del self._account_ids[: len(account_ids)]
        new_ids = {id(a): aid for a, aid in zip(batch.new_accounts, account_ids, strict=True)}
        args, heads = _arguments(batch, epochs, tx_ids, new_ids)
        return PreparedCommit(batch, tx_ids, args, heads)

    async def send(self, prepared: PreparedCommit) -> CommitReceipt | Conflicts:
        """Run the prepared write: one statement, its own transaction."""
        batch, tx_ids, args, heads = prepared.batch, prepared.tx_ids, prepared.args, prepared.heads
        conn = await self._connection()
        try:
            conflicts = await conn.fetchval(_JOURNAL_CALL, *args)
        except CONNECTION_ERRORS as exc:
            self._lost()
            # The statement is its own transaction: it may have committed just before the
            # connection died. Callers resolve this by retrying under the same keys.
            raise CommitOutcomeUnknownError(f"lost PostgreSQL during a commit: {exc}") from exc
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) == "RG001":
                raise StaleWriterError(str(exc)) from exc
            # RG002 (a bet to resolve was not open) lands here too: the shard drops what
            # it believed about the batch's accounts and reloads them.
            raise JournalRejectedError(f"the database refused the batch: {exc}") from exc
        if conflicts:
            return Conflicts(
                records={(int(a), k) for kind, a, k in (c.split(":", 2) for c in conflicts) if kind == "record"},
                bets={(int(a), k) for kind, a, k in (c.split(":", 2) for c in conflicts) if kind == "bet"},
            )
        for response, tx_index in ((r.response, r.tx_index) for r in batch.records):
            if tx_index is not None:
                response["tx_id"] = tx_ids[tx_index]
        return CommitReceipt(tx_ids, heads)


_TX_BLOCK = 1024  # must equal the INCREMENT of ledger_tx_id_seq (migration 0003)
_ACCOUNT_BLOCK = 64  # must equal the INCREMENT of accounts_account_id_seq
_JOURNAL_ARGS = 54
_JOURNAL_CALL = "SELECT rgs_journal_batch_v3(" + ", ".join(f"${i}" for i in range(1, _JOURNAL_ARGS + 1)) + ")"


def _text_amounts(amounts: Sequence[int | None]) -> list[str | None]:
    """Amounts as decimal text: the function casts them to numeric (migration 0005 says why)."""
    return [None if a is None else str(a) for a in amounts]


def _arguments(
    batch: JournalBatch, epochs: dict[int, int], tx_ids: list[int], new_ids: dict[int, int]
) -> tuple[list[Any], dict[int, tuple[int, int, bytes]]]:
    """The arguments of rgs_journal_batch_v3 (v2's arrays and the callback records), and
    each account's new chain head."""

    def account_id(account: AccountRow) -> int:
        return account.account_id if account.account_id is not None else new_ids[id(account)]

    heads: dict[int, tuple[int, int, bytes]] = {
        id(a): (new_ids[id(a)], 0, GENESIS_HASH) for a in batch.new_accounts
    }
    lines: list[tuple[Any, ...]] = []
    for tx_id, draft in zip(tx_ids, batch.transactions, strict=True):
        for line_no, (account, bucket, amount, balance_after) in enumerate(draft.lines):
            aid = account_id(account)
            _, version, prev = heads.get(id(account), (aid, account.version, account.last_hash))
            line = Line(tx_id, line_no, aid, account.currency, bucket, amount, balance_after, version + 1)
            digest = line_hash(prev, line)
            heads[id(account)] = (aid, version + 1, digest)
            lines.append(
                (tx_id, line_no, aid, line.asset, bucket, str(amount), str(balance_after), version + 1, prev, digest)
            )
    for account, *_ in batch.balances.values():
        heads.setdefault(id(account), (account_id(account), account.version, account.last_hash))

    partitions = sorted(batch.partitions)
    txs = batch.transactions
    records = batch.records
    bets = list(batch.bets.values())
    resolutions = batch.resolutions
    updates = list(batch.balances.values())
    line_columns: list[list[Any]] = [list(c) for c in zip(*lines, strict=True)] if lines else [[]] * 10
    filled: dict[int, dict[str, Any]] = {}  # id(record) -> its response with the tx id
    responses = []
    for record in records:
        response = dict(record.response)
        if record.tx_index is not None:
            response["tx_id"] = tx_ids[record.tx_index]
        filled[id(record)] = response
        responses.append(json.dumps(response))
    callbacks = None
    if batch.callbacks:
        # One JSON document rather than ten more arrays: asyncpg encodes arrays element by
        # element in Python, json.dumps runs in C (migration 0012 reads it back).
        callbacks = json.dumps(
            [
                [
                    c.provider_id,
                    c.endpoint,
                    c.request_id,
                    c.record.idempotency_key,
                    c.reference_id,
                    c.player_id,
                    c.round_ref,
                    c.body_sha256.hex(),
                    filled[id(c.record)],
                ]
                for c in batch.callbacks
            ]
        )
    args: list[Any] = [
        partitions,
        [epochs[p] for p in partitions],
        [new_ids[id(a)] for a in batch.new_accounts],
        [a.kind for a in batch.new_accounts],
        [a.operator_id for a in batch.new_accounts],
        [a.player_id for a in batch.new_accounts],
        [a.currency for a in batch.new_accounts],
        [a.partition_id for a in batch.new_accounts],
        tx_ids,
        [d.kind for d in txs],
        [account_id(d.account) for d in txs],
        [d.idempotency_key for d in txs],
        [d.reference for d in txs],
        [d.round_ref for d in txs],
        [d.game_ref for d in txs],
        [d.partition_id for d in txs],
        [epochs[d.partition_id] for d in txs],
        *line_columns,
        [account_id(r.account) for r in records],
        [r.idempotency_key for r in records],
        [r.command_kind for r in records],
        [r.request_hash for r in records],
        responses,
        [None if r.tx_index is None else tx_ids[r.tx_index] for r in records],
        [account_id(b.account) for b in bets],
        [b.bet_key for b in bets],
        [b.state for b in bets],
        _text_amounts([b.amount for b in bets]),
        [b.round_ref for b in bets],
        [b.game_ref for b in bets],
        [b.resolution_key for b in bets],
        _text_amounts([b.payout for b in bets]),
        [account_id(r.account) for r in resolutions],
        [r.state for r in resolutions],
        [r.resolution_key for r in resolutions],
        # JSON, not arrays: one C call per batch instead of per-bet encoding (0005 says why)
        json.dumps([r.keys for r in resolutions]),
        json.dumps([r.payouts for r in resolutions]),
        [heads[id(a)][0] for a, *_ in updates],
        [str(w) for _, w, _, _ in updates],
        [str(b) for _, _, b, _ in updates],
        [status for *_, status in updates],
        [a.version for a, *_ in updates],
        [heads[id(a)][1] for a, *_ in updates],
        [heads[id(a)][2] for a, *_ in updates],
        callbacks,
    ]
    assert len(args) == _JOURNAL_ARGS
    return args, heads
