"""Partitions moving between two shard engines (no Ray): release drains, adopt fences."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from actors.engine import EngineSettings, ShardEngine
from core.partitioning import partition_of
from core.wallet import ResultCode
from storage.journal import Journal
from storage.ledger_check import verify_ledger
from tests.conftest import ENGINE_PARTITIONS
from tests.helpers import OPERATOR, cmd

OK = ResultCode.OK


async def test_partitions_move_and_come_back(
    make_engine: Callable[..., object], fresh_database_url: str
) -> None:
    first: ShardEngine = await make_engine("first")  # type: ignore[misc]
    second = ShardEngine(
        Journal(fresh_database_url, "second"),
        EngineSettings(partitions=ENGINE_PARTITIONS, owned=frozenset()),
    )
    await second.start()
    try:
        players = [f"m{i}" for i in range(40)]
        opened = await first.submit(
            [c for p in players for c in (cmd("open", p), cmd("transfer_in", p, f"f-{p}", 1000))]
        )
        assert {r.code for r in opened} == {OK}
        moving = frozenset(range(ENGINE_PARTITIONS // 2))
        movers = [p for p in players if partition_of(OPERATOR, p, ENGINE_PARTITIONS) in moving]
        stayers = [p for p in players if p not in movers]
        assert movers and stayers

        # Commands queued when the release starts are committed and answered, not failed.
        queued = first.submit_nowait([cmd("bet", p, f"q-{p}", 10) for p in players])
        released = await first.release(moving)
        assert sorted(released) == sorted(moving)
        assert [r.code for r in await asyncio.gather(*queued)] == [OK] * len(players)
        refused = await first.submit([cmd("bet", p, f"late-{p}", 1) for p in movers])
        assert {r.code for r in refused} == {ResultCode.UNAVAILABLE}
        assert all("not owned here" in r.message for r in refused)

        claimed = await second.adopt(moving)
        assert all(claimed[p] > released[p] for p in moving)  # the old owner is fenced out
        repeats = await second.submit([cmd("bet", p, f"q-{p}", 10) for p in movers])
        assert all(r.code is OK and r.replayed and r.balance == 990 for r in repeats)
        moved_bets = await second.submit([cmd("bet", p, f"b-{p}", 5) for p in movers])
        assert all(r.code is OK and r.balance == 985 for r in moved_bets)
        # The claim fenced only the moved partitions: the first engine goes on with the rest.
        kept_bets = await first.submit([cmd("bet", p, f"b-{p}", 5) for p in stayers])
        assert all(r.code is OK and r.balance == 985 for r in kept_bets)
        assert first.snapshot()["fenced"] is None

        # And back: what the first engine knew about the movers before is stale by now.
        await second.release(moving)
        await first.adopt(moving)
        wins = await first.submit(
            [cmd("win", p, f"w-{p}", 100, reference=f"b-{p}") for p in movers]
        )
        assert all(r.code is OK and r.balance == 1085 for r in wins), wins
        assert second.snapshot()["fenced"] is None and first.snapshot()["fenced"] is None
    finally:
        await second.stop(drain=False)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await verify_ledger(conn) == []
    finally:
        await conn.close()
