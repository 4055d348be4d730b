"""Shard actors on Ray: naming, coalesced calls, restart with a new fencing epoch."""

from __future__ import annotations

import asyncio
import time

import ray

from actors.router import ShardRouter
from actors.shard import NAMESPACE, shard_handles, start_shards
from core.config import load_config
from core.wallet import ResultCode
from tests.helpers import cmd


def test_shards_are_named_restartable_and_coalesced(ray_session: None, fresh_database_url: str) -> None:
    config = load_config({}, overrides={"shards": 2, "partitions": 8})
    shards = start_shards(config, fresh_database_url)  # default names
    try:
        assert [ray.get_actor(f"account-shard-{i}", namespace=NAMESPACE) for i in range(2)]
        found = shard_handles(2, 8)
        first = ray.get(found.handles[0].ready.remote())
        first_epochs = first["epochs"]

        async def traffic() -> tuple[list[object], int]:
            router = ShardRouter(found.handles, 8)
            players = [f"p{i}" for i in range(50)]
            await router.execute_many([cmd("open", p) for p in players])
            results = await asyncio.gather(
                *(router.execute(cmd("transfer_in", p, f"k{p}-{i}", 1)) for p in players for i in range(20))
            )
            return list(results), router.calls

        results, calls = asyncio.run(traffic())
        assert {r.code for r in results} == {ResultCode.OK}  # type: ignore[attr-defined]
        assert calls < len(results) / 5  # many commands per actor call

        ray.kill(found.handles[0], no_restart=False)
        deadline = time.monotonic() + 60
        while True:  # ray.kill returns before the process is gone
            try:
                again = ray.get(found.handles[0].ready.remote(), timeout=30)
                if again["pid"] != first["pid"]:
                    break
            except ray.exceptions.RayActorError:
                pass
            assert time.monotonic() < deadline, "the shard did not come back"
            time.sleep(0.2)
        assert again["epochs"] and first_epochs, (again, first_epochs)
        assert all(again["epochs"][p] > first_epochs[p] for p in first_epochs), (again, first_epochs)  # fenced the old one
        after = asyncio.run(ShardRouter(found.handles, 8).execute(cmd("balance", "p0")))
        assert after.code is ResultCode.OK and after.balance == 20
    finally:
        shards.stop()
