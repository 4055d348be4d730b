"""The round scheduler as deployed: Ray actors for the table, the notary and the account
shards, the dev chain in its own process. Rounds run every second with bets on them while
the test kills the scheduler, the notary and a shard (Ray restarts each). Afterwards every
round is finished, every ticket resolved exactly once, every revealed round verifies from
public data, and the ledger is clean."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import ray

from actors.round_scheduler import start_schedulers
from actors.router import ShardRouter
from actors.shard import start_shards
from core.config import Config
from core.seeds import generate_key_hex
from core.tables import TableConfig
from core.verification import verify_round
from core.wallet import Command, CommandKind
from storage.games import load_paytable_documents
from storage.ledger_check import verify_ledger
from storage.rounds import RoundStore

pytestmark = pytest.mark.usefixtures("ray_session")

OPERATOR = "op-sched"
PLAYERS = [f"q{i}" for i in range(8)]
FUNDS = 10_000_000


@pytest.fixture
def chain(tmp_path: Any) -> Iterator[Any]:
    from storage.embedded_chain import EmbeddedChain

    node = EmbeddedChain(tmp_path / "chain")
    node.start()
    yield node
    node.stop()


def _bet(n: int) -> dict[str, Any]:
    spots = 1 + n % 10
    picks = sorted({(n * 17 + k * 23) % 80 + 1 for k in range(spots)})
    return {"operator_id": OPERATOR, "player_id": PLAYERS[n % len(PLAYERS)], "currency": "EUR", "picks": picks,
            "stake": 100 + n % 7}


async def test_rounds_survive_killed_scheduler_notary_and_shard(fresh_database_url: str, chain: Any) -> None:
    from actors.chain_notary import start_notary
    from cli.verify import ChainReader

    tag = uuid.uuid4().hex[:6]
    config = Config(shards=2, partitions=8)
    shards = start_shards(config, fresh_database_url, prefix=f"rs-{tag}-shard-")
    notary_name = f"rs-{tag}-notary"
    notary = start_notary(chain.url, chain.private_key, name=notary_name, batch_window_s=0.05)
    router = ShardRouter(shards.handles, config.partitions)
    for player in PLAYERS:
        [opened] = await router.execute_many([Command(CommandKind.OPEN, OPERATOR, player, "EUR")])
        [funded] = await router.execute_many(
            [Command(CommandKind.TRANSFER_IN, OPERATOR, player, "EUR", idempotency_key=f"f-{player}", amount=FUNDS)]
        )
        assert opened.ok and funded.ok
    table = TableConfig.from_mapping(
        {"table_id": f"rs{tag}", "paytable_set": "standard", "currencies": ["EUR"], "max_stake_minor": 10_000,
         "period_ms": 1000, "close_offset_ms": 300, "commit_lead_ms": 2500}
    )
    [scheduler] = start_schedulers([table], load_paytable_documents(), fresh_database_url, generate_key_hex(),
                                   len(shards), config.partitions, shard_prefix=f"rs-{tag}-shard-",
                                   notary_name=notary_name)
    placed: list[dict[str, Any]] = []
    kills = {4.0: ("scheduler", scheduler), 8.0: ("notary", notary), 12.0: ("shard", shards.handles[1])}
    started = time.monotonic()
    n = 0
    try:
        while time.monotonic() - started < 16.0:
            elapsed = time.monotonic() - started
            for at in [a for a in kills if a <= elapsed]:
                _, handle = kills.pop(at)
                ray.kill(handle, no_restart=False)
            try:
                answers = await asyncio.wait_for(scheduler.place.remote([_bet(n), _bet(n + 1)]), 5)
            except (ray.exceptions.RayActorError, TimeoutError):
                answers = []  # the scheduler is restarting: bets are refused meanwhile
            placed.extend(a for a in answers if a["status"] == "placed")
            n += 2
            await asyncio.sleep(0.05)
        assert not kills
        assert len(placed) > 20, "bets should have been taken in most rounds"

        store = await RoundStore.connect(fresh_database_url)
        # Stop creating rounds and let every started one finish (retrying through the
        # restarted notary and shard).
        await asyncio.wait_for(scheduler.drain.remote(), 90)

        conn = await asyncpg.connect(fresh_database_url)
        try:
            phases = dict(await conn.fetch("SELECT phase, count(*) FROM rounds WHERE table_id = $1 GROUP BY phase",
                                           table.table_id))
            states = dict(await conn.fetch("SELECT state, count(*) FROM tickets WHERE table_id = $1 GROUP BY state",
                                           table.table_id))
            open_bets = await conn.fetchval("SELECT count(*) FROM wallet_bets WHERE state = 'open'")
            assert await verify_ledger(conn) == []
        finally:
            await conn.close()
        assert set(phases) <= {"revealed", "voided"}, phases
        assert phases.get("revealed", 0) >= 5, phases
        assert set(states) <= {"settled", "refunded", "rolled_back", "rejected"}, states
        assert open_bets == 0
        for ticket in placed:
            stored = await store.ticket(ticket["ticket_id"])
            assert stored is not None and stored["state"] in ("settled", "refunded"), stored
        reader = ChainReader(chain.url)
        revealed = await store.published_many(table_id=table.table_id, limit=1000)
        for record in revealed:
            checks = verify_round(record, reader, expected_notary=chain_address(chain))
            assert all(c.ok for c in checks), (record["round_id"], [c for c in checks if not c.ok])
        await store.close()
    finally:
        ray.kill(notary, no_restart=True)
        shards.stop()
        router.close()


def chain_address(chain: Any) -> str:
    from storage.chain import ChainClient

    address = ChainClient(chain.url, chain.private_key).address
    assert address is not None
    return address
