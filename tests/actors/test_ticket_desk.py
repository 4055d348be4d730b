"""The ticket desk on its own: which requests it refuses, and when, before any I/O.

A refused request never reaches the store or the wallet; both are stand-ins here that
record what they were asked. The clock is injected, so "the round just closed" is exact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.errors import BetRefusedError
from actors.ticket_desk import OpenRound, TicketDesk
from core.keno import PaytableSet
from core.rounds import RoundPhase
from core.tables import TableConfig
from core.wallet import Command, Result, ResultCode
from storage.games import load_paytable_documents, paytable_sets
from storage.rounds import RoundRecord, TicketRow

OPENS, CLOSES = 1_000_000, 1_009_000


@dataclass
class Counts:
    tickets_placed: int = 0
    tickets_rejected: int = 0


@dataclass
class StubStore:
    """Just enough of ``storage.rounds.RoundStore`` for placement."""

    inserted: list[TicketRow] = field(default_factory=list)
    finished: list[tuple[list[Any], list[Any]]] = field(default_factory=list)

    async def insert_pending(self, table_id: str, tickets: list[TicketRow], paytable_set: str) -> list[str]:
        self.inserted.extend(tickets)
        return []

    async def finish_placement(self, placed: list[Any], rejected: list[Any]) -> None:
        self.finished.append((placed, rejected))


@pytest.fixture(scope="module")
def paytables() -> PaytableSet:
    return paytable_sets(load_paytable_documents())["standard"]


def _record(round_id: str = "t1-7") -> RoundRecord:
    return RoundRecord(
        round_id, "t1", 7, RoundPhase.OPEN, OPENS, CLOSES, CLOSES + 1000, "hmac", b"", "c0ffee",
        "standard", None, None, None, None, None, None, None, None,
    )


class Desk:
    def __init__(self, paytables: PaytableSet, *, enabled: bool = True) -> None:
        self.now = OPENS + 10
        self.enabled = enabled
        self.commands: list[Command] = []
        self.store = StubStore()
        self.counts = Counts()
        self.rounds: dict[str, OpenRound] = {"t1-7": OpenRound(_record())}
        table = TableConfig.from_mapping(
            {"table_id": "t1", "paytable_set": "standard", "currencies": ["EUR"], "max_stake_minor": 10_000}
        )
        self.desk = TicketDesk(
            table, paytables, self.store, self._execute, self.rounds,  # type: ignore[arg-type]
            lambda: (self.enabled, None if self.enabled else "seed key lost"), self.counts, lambda: self.now,
        )

    async def _execute(self, commands: list[Command]) -> list[Result]:
        self.commands.extend(commands)
        return [Result(ResultCode.OK, 5_000 - c.amount, c.currency, 1) for c in commands]


BASE = {"operator_id": "op", "player_id": "p1", "currency": "EUR", "picks": [1, 2, 3], "stake": 100}


async def test_bad_requests_are_refused_with_codes_and_reach_nothing(paytables: PaytableSet) -> None:
    desk = Desk(paytables)
    cases = {
        "bad_picks": [{**BASE, "picks": [0, 5]}, {**BASE, "picks": [5, 5]}, {**BASE, "picks": "1,2"}],
        "bad_stake": [{**BASE, "stake": 1.5}, {**BASE, "stake": True}, {**BASE, "stake": "100"}],
        "stake_too_low": [{**BASE, "stake": 0}],
        "stake_too_high": [{**BASE, "stake": 10_001}],
        "currency_not_offered": [{**BASE, "currency": "USD"}],
        "bad_request": [{**BASE, "player_id": "~house"}, {**BASE, "operator_id": ""}, {**BASE, "ticket_id": "x" * 65},
                        {**BASE, "round_id": 7}],
        "round_closed": [{**BASE, "round_id": "t1-6"}],
    }
    for code, requests in cases.items():
        answers = await desk.desk.place(requests)
        assert [(a["status"], a["code"]) for a in answers] == [("rejected", code)] * len(requests), code
    assert desk.store.inserted == [] and desk.commands == []
    assert desk.counts == Counts()


async def test_a_round_stops_taking_tickets_at_its_close_to_the_millisecond(paytables: PaytableSet) -> None:
    desk = Desk(paytables)
    desk.now = CLOSES - 1
    assert desk.desk.current_round() is not None
    [placed] = await desk.desk.place([BASE])
    assert placed["status"] == "placed" and placed["round_id"] == "t1-7" and placed["balance"] == 4_900
    desk.now = CLOSES
    assert desk.desk.current_round() is None
    [late] = await desk.desk.place([BASE])
    assert late["code"] == "no_open_round"
    [named] = await desk.desk.place([{**BASE, "round_id": "t1-7"}])
    assert named["code"] == "round_closed"
    assert len(desk.commands) == 1 and desk.counts == Counts(tickets_placed=1)
    assert desk.rounds["t1-7"].in_flight == 0 and desk.rounds["t1-7"].idle.is_set()


async def test_a_disabled_table_refuses_and_says_why(paytables: PaytableSet) -> None:
    desk = Desk(paytables, enabled=False)
    [refused] = await desk.desk.place([BASE])
    assert refused["code"] == "table_disabled" and "seed key lost" in refused["message"]
    assert desk.commands == []


async def test_one_batch_places_many_callers_with_one_wallet_call_each_ticket_a_bet(paytables: PaytableSet) -> None:
    desk = Desk(paytables)
    answers = await asyncio.gather(*(desk.desk.place([{**BASE, "player_id": f"p{i}"}]) for i in range(20)))
    assert all(a[0]["status"] == "placed" for a in answers)
    assert len(desk.store.finished) == 1 and len(desk.store.finished[0][0]) == 20  # one update for all
    assert [c.player_id for c in desk.commands] == [f"p{i}" for i in range(20)]
    assert {c.round_ref for c in desk.commands} == {"t1-7"} and {c.game_ref for c in desk.commands} == {"keno:t1"}


async def test_cancelling_an_unknown_ticket_is_refused() -> None:
    class NoTickets(StubStore):
        async def ticket(self, ticket_id: str) -> None:
            return None

    desk = TicketDesk(
        None, None, NoTickets(), None, {}, lambda: (True, None), Counts(), lambda: 0,  # type: ignore[arg-type]
    )
    with pytest.raises(BetRefusedError) as refused:
        await desk.rollback("nope")
    assert refused.value.code == "unknown_ticket"
