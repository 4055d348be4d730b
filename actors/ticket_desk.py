"""``TicketDesk``: where a Keno table takes its tickets, and cancels them while it may.

A placement request is checked against the table (picks, paytable, stake limits,
currency, ids) and the open round, then placed with every other request of the moment:
one ticket insert, one round of wallet commands (a BET per ticket) and one update for
many concurrent callers. A ticket whose debit's outcome is unknown stays pending and is
refunded at the close (``actors.table_runner``). A ticket may be cancelled (its bet
rolled back) while its round still takes bets.

The desk owns no round: the table runner opens and closes them in the ``OpenRound``
map both share, and says whether the table is enabled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.errors import BetRefusedError
from core.errors import ProtocolError, RgsError
from core.keno import PaytableSet, validate_picks
from core.money import check_minor
from core.tables import TableConfig
from core.wallet import Command, CommandKind, Result, ResultCode
from storage.rounds import RoundRecord, RoundStore, TicketRow, bet_key

__all__ = ["OpenRound", "PlacementCounts", "TicketDesk"]

Execute = Callable[[list[Command]], Awaitable[list[Result]]]

_PLACE_BATCH = 500  # placement requests per batch


@dataclass
class OpenRound:
    """A round taking bets: placements in flight keep its close waiting (``idle``)."""

    record: RoundRecord
    accepting: bool = True
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class PlacementCounts(Protocol):
    tickets_placed: int
    tickets_rejected: int


class TicketDesk:
    def __init__(
        self,
        table: TableConfig,
        paytables: PaytableSet,
        store: RoundStore,
        execute: Execute,
        rounds: dict[str, OpenRound],
        availability: Callable[[], tuple[bool, str | None]],
        stats: PlacementCounts,
        clock: Callable[[], int],
    ) -> None:
        self._table = table
        self._paytables = paytables
        self._store = store
        self._execute = execute
        self._rounds = rounds  # shared with the runner, which opens and closes them
        self._availability = availability  # (enabled, why not)
        self._stats = stats
        self._clock = clock  # unix milliseconds, the runner's
        self._place_queue: list[tuple[list[TicketRow], asyncio.Future[list[dict[str, Any]]]]] = []
        self._placer: asyncio.Task[None] | None = None

    @property
    def placer(self) -> asyncio.Task[None] | None:
        """The task placing queued batches, if one is running (the runner stops it)."""
        return self._placer

    def current_round(self) -> dict[str, Any] | None:
        for rid, state in self._rounds.items():
            if state.accepting and self._clock() < state.record.closes_at:
                r = state.record
                return {
                    "round_id": rid,
                    "table_id": r.table_id,
                    "opens_at": r.opens_at,
                    "closes_at": r.closes_at,
                    "draws_at": r.draws_at,
                    "commitment": r.commitment,
                    "nonce": r.nonce,
                }
        return None

    async def place(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Place Keno tickets in the open round. One answer per request, in order.

        A request: ``{"operator_id", "player_id", "currency", "picks", "stake"}`` plus
        optional ``"ticket_id"`` (a repeat of a known id returns the stored ticket) and
        ``"round_id"`` (default: the open round).
        """
        answers: list[dict[str, Any] | None] = [None] * len(requests)
        valid: list[tuple[int, TicketRow]] = []
        by_round: dict[str, OpenRound] = {}
        for index, request in enumerate(requests):
            try:
                state = self._round_for(request.get("round_id"))
                ticket = self._ticket(request, state.record.round_id)
            except BetRefusedError as exc:
                answers[index] = {"status": "rejected", "code": exc.code, "message": str(exc)}
                continue
            by_round[state.record.round_id] = state
            valid.append((index, ticket))
        if valid:
            for state in by_round.values():
                state.in_flight += 1
            try:
                placed = await self._place_batched([t for _, t in valid])
                for index, answer in zip([i for i, _ in valid], placed, strict=True):
                    answers[index] = answer
            finally:
                for state in by_round.values():
                    state.in_flight -= 1
                    if not state.in_flight:
                        state.idle.set()
        return [a for a in answers if a is not None]

    def _round_for(self, requested: object) -> OpenRound:
        enabled, reason = self._availability()
        if not enabled:
            raise BetRefusedError(
                "table_disabled",
                f"table {self._table.table_id} is disabled: {reason}",
            )
        now = self._clock()
        if requested is None:
            for state in self._rounds.values():
                if state.accepting and now < state.record.closes_at:
                    return state
            raise BetRefusedError(
                "no_open_round", "no round is open for bets right now; retry in a moment"
            )
        if not isinstance(requested, str):
            raise BetRefusedError("bad_request", "round_id must be a string")
        state_or_none = self._rounds.get(requested)
        if (
            state_or_none is None
            or not state_or_none.accepting
            or now >= state_or_none.record.closes_at
        ):
            raise BetRefusedError("round_closed", f"round {requested} is not open for bets")
        return state_or_none

    def _ticket(self, request: dict[str, Any], rid: str) -> TicketRow:
        try:
            raw_picks: Any = request.get("picks")
            picks = validate_picks(raw_picks)
            spots = len(picks)
            self._paytables.for_spots(spots)
        except ProtocolError as exc:
            raise BetRefusedError("bad_picks", str(exc)) from exc
        except RgsError as exc:
            raise BetRefusedError("spots_not_offered", str(exc)) from exc
        stake = request.get("stake")
        try:
            check_minor(stake, what="stake")  # type: ignore[arg-type]
        except RgsError as exc:
            raise BetRefusedError("bad_stake", str(exc)) from exc
        assert isinstance(stake, int)
        if stake < max(1, self._table.min_stake_minor):
            raise BetRefusedError(
                "stake_too_low",
                f"stake must be at least {max(1, self._table.min_stake_minor)} minor units",
            )
        if self._table.max_stake_minor is not None and stake > self._table.max_stake_minor:
            raise BetRefusedError(
                "stake_too_high", f"stake must be at most {self._table.max_stake_minor} minor units"
            )
        currency = request.get("currency")
        if currency not in self._table.currencies:
            raise BetRefusedError(
                "currency_not_offered",
                f"table {self._table.table_id} plays {', '.join(self._table.currencies)}",
            )
        operator_id, player_id = request.get("operator_id"), request.get("player_id")
        for name, value in (("operator_id", operator_id), ("player_id", player_id)):
            if not isinstance(value, str) or not 1 <= len(value) <= 128 or value.startswith("~"):
                raise BetRefusedError(
                    "bad_request", f"{name} must be a string of 1..128 characters"
                )
        ticket_id = request.get("ticket_id") or uuid.uuid4().hex
        if not isinstance(ticket_id, str) or not 1 <= len(ticket_id) <= 64:
            raise BetRefusedError("bad_request", "ticket_id must be a string of 1..64 characters")
        assert (
            isinstance(operator_id, str)
            and isinstance(player_id, str)
            and isinstance(currency, str)
        )
        return TicketRow(ticket_id, rid, operator_id, player_id, currency, picks, stake, "pending")

    async def _place_batched(self, tickets: list[TicketRow]) -> list[dict[str, Any]]:
        """Place with whoever else is placing now: one ticket insert, one round of wallet
        commands and one update for many concurrent callers (a call costs about as much
        as a whole batch, see DESIGN.md's costs table)."""
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._place_queue.append((tickets, future))
        if self._placer is None or self._placer.done():
            self._placer = asyncio.ensure_future(self._place_forever())
        return await future

    async def _place_forever(self) -> None:
        while self._place_queue:
            batch, self._place_queue = (
                self._place_queue[:_PLACE_BATCH],
                self._place_queue[_PLACE_BATCH:],
            )
            tickets = [t for chunk, _ in batch for t in chunk]
            ids = [t.ticket_id for t in tickets]
            if len(set(ids)) != len(ids):
                # the same ticket id twice in one batch: place the requests one by one
                for chunk, future in batch:
                    await self._settle_future(future, self._place(chunk))
                continue
            try:
                answers = await self._place(tickets)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for chunk, future in batch:
                if not future.done():
                    future.set_result(answers[start : start + len(chunk)])
                start += len(chunk)

    @staticmethod
    async def _settle_future(
        future: asyncio.Future[list[dict[str, Any]]], work: Awaitable[list[dict[str, Any]]]
    ) -> None:
        try:
            result = await work
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)

    async def _place(self, tickets: list[TicketRow]) -> list[dict[str, Any]]:
        existing = set(
            await self._store.insert_pending(self._table.table_id, tickets, self._table.paytable_set)
        )
        fresh = [t for t in tickets if t.ticket_id not in existing]
        commands = [
            Command(
                CommandKind.BET,
                t.operator_id,
                t.player_id,
                t.currency,
                idempotency_key=t.bet_key,
                amount=t.stake,
                round_ref=t.round_id,
                game_ref=f"keno:{self._table.table_id}",
            )
            for t in fresh
        ]
        results = await self._execute(commands) if commands else []
        placed: list[tuple[str, int, int, int | None]] = []
        rejected: list[tuple[str, str]] = []
        answers: dict[str, dict[str, Any]] = {}
        for ticket, result in zip(fresh, results, strict=True):
            if result.ok and result.balance is not None:
                placed.append(
                    (ticket.ticket_id, result.balance + ticket.stake, result.balance, result.tx_id)
                )
                answers[ticket.ticket_id] = {
                    "status": "placed",
                    "ticket_id": ticket.ticket_id,
                    "round_id": ticket.round_id,
                    "picks": list(ticket.picks),
                    "stake": ticket.stake,
                    "currency": ticket.currency,
                    "balance": result.balance,
                }
            elif result.code in (ResultCode.BUSY, ResultCode.UNAVAILABLE):
                # Outcome unknown: the ticket stays pending and is refunded at the close.
                answers[ticket.ticket_id] = {
                    "status": "rejected",
                    "code": "unavailable",
                    "ticket_id": ticket.ticket_id,
                    "message": "wallet unavailable; the ticket will be refunded if it was debited",
                }
            else:
                rejected.append((ticket.ticket_id, result.code.value))
                answers[ticket.ticket_id] = {
                    "status": "rejected",
                    "code": result.code.value,
                    "ticket_id": ticket.ticket_id,
                    "message": result.message,
                    "balance": result.balance,
                }
        await self._store.finish_placement(placed, rejected)
        self._stats.tickets_placed += len(placed)
        self._stats.tickets_rejected += len(rejected)
        out = []
        for ticket in tickets:
            if ticket.ticket_id in answers:
                out.append(answers[ticket.ticket_id])
            else:
                stored = await self._store.ticket(ticket.ticket_id)
                out.append({"status": "repeat", "ticket": stored})
        return out

    async def rollback(self, ticket_id: str) -> dict[str, Any]:
        """Cancel a ticket while its round still takes bets (refund the stake)."""
        stored = await self._store.ticket(ticket_id)
        if stored is None:
            raise BetRefusedError("unknown_ticket", f"no ticket {ticket_id}")
        if stored["state"] == "rolled_back":
            return {"status": "rolled_back", "ticket_id": ticket_id, "repeat": True}
        state = self._rounds.get(stored["round_id"])
        if state is None or not state.accepting or self._clock() >= state.record.closes_at:
            raise BetRefusedError(
                "round_closed", f"round {stored['round_id']} no longer takes bets or rollbacks"
            )
        if stored["state"] != "placed":
            raise BetRefusedError("not_placed", f"ticket {ticket_id} is {stored['state']}")
        state.in_flight += 1
        try:
            [result] = await self._execute(
                [
                    Command(
                        CommandKind.ROLLBACK,
                        stored["operator_id"],
                        stored["player_id"],
                        stored["currency"],
                        idempotency_key=f"cancel:{ticket_id}",
                        reference=bet_key(ticket_id),
                        round_ref=stored["round_id"],
                        game_ref=f"keno:{self._table.table_id}",
                    )
                ]
            )
            if not (result.ok or result.code is ResultCode.ROLLED_BACK):
                raise BetRefusedError(result.code.value, result.message or "rollback refused")
            await self._store.mark_refunded([ticket_id], state="rolled_back")
        finally:
            state.in_flight -= 1
            if not state.in_flight:
                state.idle.set()
        return {"status": "rolled_back", "ticket_id": ticket_id, "balance": result.balance}
