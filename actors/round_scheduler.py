"""``RoundScheduler``: one Ray actor per Keno table, driving its rounds (``actors.table_runner``).

Named ``round-scheduler-{table_id}`` in namespace ``rgs`` and restarted by Ray when it
dies. Its timers die with it; the schedule lives in Postgres, so a new incarnation picks
every unfinished round up from its stored phase.

Bets reach a table through :meth:`RoundScheduler.place`: the scheduler is the one place
that knows whether a round still takes bets, and it closes a round only after the
placements already in flight have finished.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors.errors import BetRefusedError, NotaryUnavailableError, RoundError
from actors.router import ShardRouter
from actors.shard import NAMESPACE, SHARD_PREFIX, shard_handles, tune_interpreter
from actors.table_runner import TableRunner
from core.keno import parse_paytables
from core.seeds import SeedVault, parse_key
from core.tables import TableConfig
from storage.rounds import RoundStore

__all__ = ["RayNotary", "RoundScheduler", "scheduler_handle", "scheduler_name", "start_schedulers"]

SCHEDULER_PREFIX = "round-scheduler-"

log = logging.getLogger("rgs.rounds")


def scheduler_name(table_id: str) -> str:
    return f"{SCHEDULER_PREFIX}{table_id}"


class RayNotary:
    """The ``ChainNotary`` actor seen through the runner's ``Notary`` protocol."""

    def __init__(self, name: str = "chain-notary") -> None:
        self._name = name
        self._handle: Any = None
        self._chain_id: int | None = None

    def _actor(self) -> Any:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(self._name, namespace=NAMESPACE)
            except ValueError as exc:
                raise NotaryUnavailableError(f"the chain notary {self._name!r} is not running") from exc
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._actor(), method).remote(*args)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self._handle = None
            raise NotaryUnavailableError(f"the chain notary is away: {type(exc).__name__}") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, TimeoutError):
                raise TimeoutError(str(cause)) from exc
            raise NotaryUnavailableError(f"the chain notary failed: {str(exc).strip().splitlines()[-1]}") from exc

    async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("commit", round_id, commitment_hex)
        return result

    async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("reveal", round_id, seed_hex)
        return result

    async def salt_after(self, unix_seconds: float, wait_s: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("salt_after", unix_seconds, wait_s)
        return result

    async def chain_id(self) -> int | None:
        if self._chain_id is None:
            info = await self._call("info")
            self._chain_id = int(info["chain_id"])
        return self._chain_id


@ray.remote(max_restarts=-1, max_task_retries=0)
class RoundScheduler:
    def __init__(
        self,
        table: dict[str, Any],
        paytables: dict[str, Any],
        database_url: str,
        seed_key_hex: str,
        shards: int,
        partitions: int,
        shard_prefix: str = SHARD_PREFIX,
        notary_name: str = "chain-notary",
        run_schedule: bool = True,
        redis_url: str | None = None,
    ) -> None:
        tune_interpreter()
        self._table = TableConfig.from_mapping(table)
        self._paytables, _ = parse_paytables(paytables, name=self._table.paytable_set)
        self._database_url = database_url
        self._vault = SeedVault(parse_key(seed_key_hex))
        self._shard_args = (shards, partitions, shard_prefix)
        self._notary = RayNotary(notary_name)
        self._run_schedule = run_schedule
        self._redis_url = redis_url
        self._feed: Any = None
        self._publishing: set[asyncio.Task[None]] = set()
        self._runner: TableRunner | None = None
        self._ready: asyncio.Future[None] | None = None
        # Start by itself, also after Ray restarts it: nobody may be around to ask.
        self._autostart = asyncio.get_event_loop().create_task(self._start_until_up())

    async def _start_until_up(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.ready()
                return
            except Exception as exc:  # keep trying: the database or shards may be away
                log.warning("round scheduler for %s not up yet: %s", self._table.table_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _start(self) -> None:
        store = await RoundStore.connect(self._database_url)
        shards, partitions, prefix = self._shard_args
        router = ShardRouter(shard_handles(shards, partitions, prefix=prefix).handles, partitions, max_in_flight=2)
        self._runner = TableRunner(self._table, self._paytables, store, self._notary, router.execute_many, self._vault)
        if self._redis_url is not None:
            from storage.feed import RoundFeed
            from storage.redis_store import connect_redis

            self._feed = RoundFeed(await connect_redis(self._redis_url))
            self._runner.subscribe(self._publish)
        await self._runner.start(run_schedule=self._run_schedule)

    def _publish(self, event: dict[str, Any]) -> None:
        """Fan a phase change out to the operator API replicas (best effort: the round
        itself never waits for, or fails with, its feed)."""

        async def send() -> None:
            try:
                await self._feed.publish(event)
            except Exception as exc:
                log.warning("round feed: event for %s not published: %s", event.get("round_id"), exc)

        task = asyncio.ensure_future(send())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def ready(self) -> str:
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._start())
        await asyncio.shield(self._ready)
        return self._table.table_id

    async def _runner_ready(self) -> TableRunner:
        await self.ready()
        assert self._runner is not None
        return self._runner

    async def place(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        runner = await self._runner_ready()
        return await runner.place(requests)

    async def rollback(self, ticket_id: str) -> dict[str, Any]:
        runner = await self._runner_ready()
        try:
            return await runner.rollback(ticket_id)
        except BetRefusedError as exc:
            return {"status": "rejected", "code": exc.code, "message": str(exc)}

    async def current(self) -> dict[str, Any] | None:
        return (await self._runner_ready()).current_round()

    async def status(self) -> dict[str, Any]:
        return (await self._runner_ready()).status()

    async def create_next(self) -> str | None:
        """Create the next due round now (tests and tools running without the schedule)."""
        return await (await self._runner_ready()).create_next()

    async def drain(self) -> dict[str, Any]:
        """Stop creating rounds and wait until every started round has finished."""
        runner = await self._runner_ready()
        await runner.drain()
        return runner.status()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.stop()


def start_schedulers(
    tables: list[TableConfig],
    paytables: dict[str, dict[str, Any]],
    database_url: str,
    seed_key_hex: str,
    shards: int,
    partitions: int,
    *,
    shard_prefix: str = SHARD_PREFIX,
    notary_name: str = "chain-notary",
    redis_url: str | None = None,
    timeout: float = 60.0,
) -> list[Any]:
    """Create (or find) one scheduler per table and wait until each has resumed its rounds."""
    handles = []
    for table in tables:
        if table.paytable_set not in paytables:
            raise RoundError(
                f"table {table.table_id} plays paytable set {table.paytable_set!r}, which is not"
                f" loaded (known: {', '.join(sorted(paytables)) or 'none'})"
            )
        handles.append(
            RoundScheduler.options(  # type: ignore[attr-defined]
                name=scheduler_name(table.table_id), namespace=NAMESPACE, get_if_exists=True, max_concurrency=1000
            ).remote(
                table.to_mapping(), paytables[table.paytable_set], database_url, seed_key_hex, shards, partitions,
                shard_prefix, notary_name, True, redis_url,
            )
        )
    try:
        ray.get([h.ready.remote() for h in handles], timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        raise RoundError(f"round schedulers did not start: {exc}") from exc
    return handles


def scheduler_handle(table_id: str) -> Any:
    try:
        return ray.get_actor(scheduler_name(table_id), namespace=NAMESPACE)
    except ValueError as exc:
        raise RoundError(f"no round scheduler runs table {table_id!r}") from exc



