"""``AccountShard``: the Ray actor hosting a share of the virtual account actors.

Shards are named ``{prefix}{i}`` (default ``account-shard-{i}``) in Ray namespace ``rgs``
and restarted by Ray when they die. A restarted shard claims its partitions again, which
bumps their fencing epochs: anything its previous incarnation still had in flight cannot
be written any more.

Commands reach a shard two ways: the ``execute`` actor method (simple, ~1.4 ms per call)
and, for routers on hot paths, a TCP listener whose address and per-incarnation token
``ready()`` returns (~0.3 ms per round trip; see ``actors.framing``).

Which shard owns which partition is the *layout* of the shard set (named by its prefix),
stored in PostgreSQL (migration 0008) next to the fencing epochs it complements. A shard
claims what the stored layout assigns it when it starts, so one that Ray restarts after a
live rebalance takes its current share, not the one it was created with. Routers read the
layout through any shard's ``routing()`` when a shard says a partition is not owned there
(``actors.router``); ``release`` and ``adopt`` move partitions (``actors.rebalance``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import sys
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import msgpack
import ray

from actors.engine import EngineSettings, ShardEngine
from actors.errors import ShardSetupError
from actors.framing import FrameError, encode_frame, read_frame
from actors.metrics import export_shard_metrics
from core.config import Config
from core.errors import RgsError
from core.partitioning import shard_of
from core.wallet import Command, Result, ResultCode
from storage.errors import StorageError
from storage.journal import Journal, ShardLayout

__all__ = [
    "NAMESPACE",
    "SHARD_PREFIX",
    "AccountShard",
    "ShardSet",
    "create_shard",
    "default_owners",
    "engine_settings",
    "live_shards",
    "run_sync",
    "shard_handles",
    "start_shards",
    "tune_interpreter",
]

log = logging.getLogger("rgs.shard")
_T = TypeVar("_T")

NAMESPACE = "rgs"


def tune_interpreter() -> None:
    """Shorten the GIL switch interval in processes that host Ray and an event loop.

    Ray keeps Python threads of its own in every worker and driver. With the default
    5 ms switch interval, our event loop waits up to 5 ms for the GIL each time one of
    them runs: measured here, a one-command commit went from 1.9 ms to 1.25 ms at 0.2 ms.
    """
    sys.setswitchinterval(0.0002)
SHARD_PREFIX = "account-shard-"


def default_owners(partitions: int, shards: int, prefix: str = SHARD_PREFIX) -> tuple[str, ...]:
    """The layout ``shards`` shards start with, and the one a rebalance to ``shards`` ends at:
    partition p on ``{prefix}{p mod shards}`` (so a restart with the same count changes nothing)."""
    return tuple(f"{prefix}{shard_of(p, shards)}" for p in range(partitions))


def engine_settings(
    config: Config, index: int, shards: int, *, owned: frozenset[int] | None = None
) -> EngineSettings:
    if owned is None:
        owned = frozenset(p for p in range(config.partitions) if shard_of(p, shards) == index)
    return EngineSettings(
        partitions=config.partitions,
        owned=owned,
        group_commit_max=config.group_commit_max,
        mailbox_capacity=config.mailbox_capacity,
        max_active_accounts=config.max_active_accounts,
        idle_passivate_s=config.idle_passivate_s,
    )


@ray.remote(max_restarts=-1, max_task_retries=0)
class AccountShard:
    """Commands arrive as msgpack lists (one call carries many); answers go back the same way."""

    def __init__(self, name: str, database_url: str, settings: dict[str, Any], shard_set: str | None = None) -> None:
        tune_interpreter()
        settings = dict(settings)
        settings["owned"] = frozenset(settings["owned"])
        self._name = name
        self._shard_set = shard_set if shard_set is not None else name.rstrip("0123456789")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._layout_read: asyncio.Future[ShardLayout | None] | None = None
        self._engine = ShardEngine(
            Journal(database_url, owner=f"{name}/pid{os.getpid()}"), EngineSettings(**settings)
        )
        self._started: asyncio.Task[None] | None = None
        self._token = secrets.token_hex(16)
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._metrics = export_shard_metrics(name, lambda: self._engine.metrics_snapshot())

    def _running(self) -> bool:
        task = self._started
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def _start(self) -> None:
        """Start the engine once; after a failure (database down) the next call tries again."""
        task = self._started
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._started = asyncio.ensure_future(self._boot())
        try:
            await asyncio.shield(task)
        except StorageError as exc:
            raise ShardSetupError(f"{self._name} cannot start: {exc}") from exc
        if self._server is None:
            host = ray.util.get_node_ip_address()
            self._server = await asyncio.start_server(self._serve_connection, host, 0)
            self._address = (host, int(self._server.sockets[0].getsockname()[1]))

    async def _boot(self) -> None:
        """Start the engine on the partitions the stored layout gives us (none if the layout
        leaves us out); without a stored layout, on those we were created with."""
        self._loop = asyncio.get_running_loop()
        layout = await self._engine.load_layout(self._shard_set)
        await self._engine.start(None if layout is None else layout.owned_by(self._name))

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One router's connection: frames ``[request_id, [command, ...]]`` in, answers out."""
        replies: set[asyncio.Task[None]] = set()
        try:
            if await read_frame(reader) != self._token:
                return
            while True:
                request_id, wires = await read_frame(reader)
                commands = [Command.from_wire(w) for w in wires]
                # Queued as the frame is read: one connection's order is arrival order.
                futures = self._engine.submit_nowait(commands)
                reply = asyncio.ensure_future(self._reply(writer, request_id, futures))
                replies.add(reply)
                reply.add_done_callback(replies.discard)
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, RgsError, ValueError, TypeError):
            pass  # the router sees the connection drop and retries under the same keys
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, request_id: int, futures: list[asyncio.Future[Result]]) -> None:
        results: list[Result] = await asyncio.gather(*futures)
        if not writer.is_closing():
            writer.write(encode_frame([request_id, [r.to_wire() for r in results]]))

    async def execute(self, payload: bytes) -> bytes:
        commands = [Command.from_wire(w) for w in msgpack.unpackb(payload, use_list=True)]
        if self._running():
            # Queued before the first await, so one caller's calls keep their order.
            futures = self._engine.submit_nowait(commands)
        else:
            try:
                await self._start()
            except ShardSetupError as exc:
                unavailable = Result(ResultCode.UNAVAILABLE, message=str(exc))
                return msgpack.packb([unavailable.to_wire()] * len(commands))
            futures = self._engine.submit_nowait(commands)
        results: list[Result] = await asyncio.gather(*futures)
        return msgpack.packb([r.to_wire() for r in results])

    async def ready(self) -> dict[str, Any]:
        """Start if needed; where to connect, and which partitions at which epochs we own."""
        await self._start()
        assert self._address is not None
        return {
            "name": self._name,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "host": self._address[0],
            "epochs": self._engine.epochs,
            "partitions": self._engine.settings.partitions,
            "address": list(self._address),
            "token": self._token,
        }

    async def stats(self) -> dict[str, Any]:
        return {"name": self._name, **self._engine.snapshot()}

    async def drain(self) -> dict[str, Any]:
        """Answer everything queued, flush the journal and stop accepting."""
        if not self._engine.stopping:
            await self._engine.stop(drain=True)
        return {"name": self._name, **self._engine.snapshot()}

    async def routing(self) -> dict[str, Any] | None:
        """The stored layout for routers: ``owners[partition]`` is a shard's name.

        Called by routers that were told a partition is not owned where they sent it, all
        at about the same moment after a move: concurrent calls share one read.
        """
        if self._layout_read is None or self._layout_read.done():
            self._layout_read = asyncio.ensure_future(self._engine.load_layout(self._shard_set))
        layout = await asyncio.shield(self._layout_read)
        if layout is None:
            return None
        return {"version": layout.version, "namespace": NAMESPACE, "owners": list(layout.owners)}

    async def release(self, partitions: list[int], grace_s: float = 10.0) -> dict[str, Any]:
        """Stop taking commands for ``partitions``, answer all of theirs, let them go."""
        await self._start()
        epochs = await self._engine.release(partitions, grace_s=grace_s)
        return {"name": self._name, "released": epochs, "owned": sorted(self._engine.settings.owned)}

    async def adopt(self, partitions: list[int]) -> dict[str, Any]:
        """Claim ``partitions`` (fencing their previous owner) and take their commands."""
        await self._start()
        epochs = await self._engine.adopt(partitions)
        return {"name": self._name, "claimed": epochs, "owned": sorted(self._engine.settings.owned)}

    def __ray_shutdown__(self) -> None:
        """Ray's graceful exit (all handles gone, ``__ray_terminate__``): drain first.

        Ray calls this once pending calls are done, from a thread of its own, with the
        actor's event loop stopped but not closed (observed on Ray 2.60): the loop is run
        once more here, in this thread, until the engine has answered what it held and
        closed its journal (bounded). ``ray.kill`` skips this hook, which is why ``rgs up``
        calls ``drain`` before it kills; fencing covers a shard that dies without either.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or self._engine.stopping:
            return
        running = loop.is_running()
        if running and threading.get_ident() == getattr(loop, "_thread_id", None):
            return  # called on the loop itself: waiting here would block the drain
        drain = asyncio.wait_for(self._engine.stop(drain=True), timeout=15)
        try:
            if running:  # another Ray version may keep the loop going: hand the drain over
                asyncio.run_coroutine_threadsafe(drain, loop).result(timeout=20)
            else:
                loop.run_until_complete(drain)
        except Exception as exc:
            log.warning("%s: drain on graceful exit failed: %s", self._name, exc)
        else:
            log.info("%s: drained on graceful exit", self._name)


class ShardSet:
    """Handles to a set of shards, by index."""

    def __init__(self, handles: list[Any], partitions: int, prefix: str = SHARD_PREFIX) -> None:
        self.handles = handles
        self.partitions = partitions
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.handles)

    def stop(self) -> None:
        """Kill the shards (no drain: see ``drain_all``), also those a rebalance added."""
        for handle in self.handles:
            ray.kill(handle, no_restart=True)
        for name in live_shards(self.prefix):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)

    def drain_all(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Drain every live shard of the set (answer what is queued, flush the journal);
        the outcome per shard, an ``error`` entry for one that could not."""
        refs: dict[str, Any] = {}
        for name in live_shards(self.prefix):
            with contextlib.suppress(ValueError):
                refs[name] = ray.get_actor(name, namespace=NAMESPACE).drain.remote()
        outcomes = []
        for name, ref in refs.items():
            try:
                outcomes.append(ray.get(ref, timeout=timeout))
            except (ray.exceptions.RayError, TimeoutError) as exc:
                outcomes.append({"name": name, "error": str(exc).strip().splitlines()[-1][:200]})
        return outcomes


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from synchronous code, also when this thread already
    runs an event loop (a benchmark's async main calls ``start_shards``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _layout_to_start(
    database_url: str, shard_set: str, partitions: int, configured: Sequence[str], live: frozenset[str]
) -> ShardLayout:
    """The layout a starting stack runs. If shards the stored layout names are alive (a
    backend keeper restarting under running traffic, after a rebalance), that layout wins:
    declaring the configured one over it would give a partition two owners. Otherwise
    (a cold start) the configured layout is stored, replacing what a previous run left."""
    journal = Journal(database_url, owner=f"start_shards/pid{os.getpid()}")
    try:
        stored = await journal.load_layout(shard_set, partitions)
        if stored is not None and live & set(stored.owners):
            if tuple(stored.owners) != tuple(configured):
                log.warning(
                    "%s: adopting the stored layout (version %d, %d shards) its live shards run, not the"
                    " configured %d shards; change it with `rgs shards rebalance`",
                    shard_set, stored.version, len(stored.shards), len(set(configured)),
                )
            return stored
        return await journal.save_layout(shard_set, configured, expected_version=None)
    finally:
        await journal.close()


def create_shard(
    config: Config, database_url: str, name: str, owned: frozenset[int], shard_set: str, *, detached: bool = False
) -> Any:
    """Create (or find, by name) one shard actor; it starts on first call.

    ``detached``: the shard outlives the process creating it. A rebalance adds shards from
    a short-lived CLI process, whose non-detached actors Ray would end with it; those are
    removed by name (``ShardSet.stop``, a later rebalance), not by their creator exiting.
    """
    settings = asdict(engine_settings(config, 0, 1, owned=owned))
    settings["owned"] = sorted(settings["owned"])
    options: dict[str, Any] = {"lifetime": "detached"} if detached else {}
    return AccountShard.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, get_if_exists=True, max_concurrency=10_000, **options
    ).remote(name, database_url, settings, shard_set)


def start_shards(config: Config, database_url: str, *, prefix: str = SHARD_PREFIX, timeout: float = 120.0) -> ShardSet:
    """Create (or find) ``config.shards`` shard actors and wait until each owns its partitions.

    On a cold start (no shard of the set alive) the stack declares its layout:
    ``default_owners`` for ``config.shards`` is stored, replacing what a previous run, or
    a rebalance of it, left. While shards of the set are alive, the stored layout they run
    is adopted instead, whatever ``config.shards`` says (see ``_layout_to_start``).
    """
    configured = default_owners(config.partitions, config.shards, prefix)
    try:
        layout = run_sync(
            _layout_to_start(database_url, prefix, config.partitions, configured, frozenset(live_shards(prefix)))
        )
    except StorageError as exc:
        raise ShardSetupError(f"cannot store the shard layout: {exc}") from exc
    handles = [
        create_shard(config, database_url, name, layout.owned_by(name), prefix, detached=name not in configured)
        for name in layout.shards
    ]
    try:
        ray.get([h.ready.remote() for h in handles], timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        raise ShardSetupError(f"account shards did not start: {exc}") from exc
    return ShardSet(handles, config.partitions, prefix)


def live_shards(prefix: str = SHARD_PREFIX) -> list[str]:
    """Names of the shard actors of a set alive in the cluster now, by index (a rebalance
    may have added or removed some since whoever holds a ShardSet started them)."""
    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == NAMESPACE
        and entry["name"].startswith(prefix)
        and entry["name"][len(prefix) :].isdigit()
    ]
    return sorted(names, key=lambda n: int(n[len(prefix) :]))


def shard_handles(count: int, partitions: int, *, prefix: str = SHARD_PREFIX) -> ShardSet:
    """Find running shards by name (from a Serve replica, a CLI, another driver).

    ``count`` is what the caller was configured with; a live rebalance may have changed
    it since. Shards of the first ``count`` that are gone (scaled down) are skipped: a
    router made from the rest finds every partition's owner through the stored layout.
    Only when none is found is it an error.
    """
    handles = []
    missing = []
    for index in range(count):
        try:
            handles.append(ray.get_actor(f"{prefix}{index}", namespace=NAMESPACE))
        except ValueError:
            missing.append(f"{prefix}{index}")
    if not handles:
        raise ShardSetupError(f"account shards are not running: none of {', '.join(missing)} found")
    return ShardSet(handles, partitions, prefix)
