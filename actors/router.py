"""The caller's side of the account shards: route, coalesce, retry.

A call to a shard costs about as much as a whole durable transaction, so a router never
makes one call per command. Commands queued in one turn of the event loop leave together,
one request per shard; commands bound for a shard that already has ``max_in_flight``
requests out wait and go together in the next one (up to ``max_batch``).

Requests travel over one TCP connection per shard (``actors.framing``), whose address the
shard's Ray actor gives out; Ray restarts a dead shard and the router reconnects.

When a shard dies mid-request, nobody can say whether the commands ran. Every command
that moves money carries an idempotency key, so the router resends the same commands
until the shard is back: those that ran are answered from their stored result, the others
run now. Reads and opens are naturally idempotent.

Partitions move between shards while traffic flows (``actors.rebalance``). The router
holds a routing map (partition -> lane) and learns of a move only when a shard says so:
an answer "partition N is not owned here", a stopping shard, or a shard that cannot be
reached makes it reload the map from a shard's ``routing()`` (PostgreSQL behind it) and
resend the same commands, under the same keys, wherever the map now points. The hot path
stays one list lookup per command; the map is read only when it may have changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.framing import ConnectionLost, FrameConnection, open_frame_connection
from core.partitioning import partition_of, shard_of
from core.wallet import Command, Result, ResultCode

__all__ = ["ShardRouter"]

log = logging.getLogger("rgs.router")

# Answers after which the map may be out of date: the shard gave the partition away, is
# going away, or is gone (a surplus shard removed by a scale-down).
_MOVED_MARKERS = ("not owned here", "shard stopping", "shard stopped", "shard unreachable")
_RELOAD_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Lane:
    handle: Any
    name: str | None = None  # the shard's actor name, once known (from the map or ready())
    queue: list[_Item] = field(default_factory=list)
    in_flight: int = 0
    connection: FrameConnection | None = None
    connecting: asyncio.Future[FrameConnection] | None = None


@dataclass(slots=True)
class _Item:
    command: Command
    future: asyncio.Future[Result]
    deadline: float  # resend transient answers until then


class ShardRouter:
    def __init__(
        self,
        handles: list[Any],
        partitions: int,
        *,
        max_batch: int = 500,
        max_in_flight: int = 1,
        retry_for_s: float = 60.0,
        retry_busy: bool = True,
    ) -> None:
        self._lanes = [_Lane(h) for h in handles]  # every lane ever used (close() closes them)
        # partition -> lane. Until a shard's routing() says otherwise: the layout a set of
        # ``len(handles)`` shards starts with (actors.shard.default_owners).
        self._route = [self._lanes[shard_of(p, len(self._lanes))] for p in range(partitions)]
        self._version = 0
        self._reloading: asyncio.Future[bool] | None = None
        self._partitions = partitions
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._retry_for_s = retry_for_s
        self._retry_busy = retry_busy
        self.calls = 0
        self.retries = 0
        self.reloads = 0  # routing maps adopted after a move
        self._tasks: set[asyncio.Future[None]] = set()  # keeps in-flight sends alive
        self._touched: dict[int, _Lane] = {}  # lanes with commands queued this turn
        self._pump_scheduled = False

    def shard_for(self, command: Command) -> int:
        """Index (among the lanes this router knows) of the shard a command goes to."""
        return self._lanes.index(self._lane_for(command))

    def _lane_for(self, command: Command) -> _Lane:
        return self._route[partition_of(command.operator_id, command.player_id, self._partitions)]

    @property
    def layout_version(self) -> int:
        """Version of the routing map in use (0: the starting guess, never reloaded)."""
        return self._version

    async def execute(self, command: Command) -> Result:
        return (await self.execute_many([command]))[0]

    async def execute_many(self, commands: list[Command]) -> list[Result]:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._retry_for_s
        futures = []
        touched: dict[int, _Lane] = {}
        for command in commands:
            future: asyncio.Future[Result] = loop.create_future()
            lane = self._lane_for(command)
            lane.queue.append(_Item(command, future, deadline))
            touched[id(lane)] = lane
            futures.append(future)
        # Sent at the end of this turn of the event loop, not now: concurrent callers (an
        # adapter handling a frame of requests) then share one request per shard.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            loop.call_soon(self._pump_touched)
        self._touched.update(touched)
        return list(await asyncio.gather(*futures))

    def _pump_touched(self) -> None:
        self._pump_scheduled = False
        touched, self._touched = self._touched, {}
        for lane in touched.values():
            self._pump(lane)

    def close(self) -> None:
        for lane in self._lanes:
            if lane.connection is not None:
                lane.connection.close()
                lane.connection = None

    def _pump(self, lane: _Lane) -> None:
        while lane.queue and lane.in_flight < self._max_in_flight:
            batch, lane.queue = lane.queue[: self._max_batch], lane.queue[self._max_batch :]
            lane.in_flight += 1
            task = asyncio.ensure_future(self._send(lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, lane: _Lane, batch: list[_Item]) -> None:
        """Send ``batch`` to ``lane``; resend transient answers (to wherever the map points
        by then) until each item has a definitive answer or its deadline passed."""
        pending = batch
        delay = 0.05
        try:
            while True:
                answers = await self._attempt(lane, [item.command for item in pending])
                retry: list[_Item] = []
                moved = False
                now = time.monotonic()
                for item, answer in zip(pending, answers, strict=True):
                    transient = answer.code is ResultCode.UNAVAILABLE or (
                        self._retry_busy and answer.code is ResultCode.BUSY
                    )
                    if transient and now < item.deadline:
                        retry.append(item)
                        moved = moved or any(marker in answer.message for marker in _MOVED_MARKERS)
                    elif not item.future.done():
                        item.future.set_result(answer)
                if not retry:
                    return
                self.retries += 1
                pending = retry
                if not (moved and await self._reload()):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                # Resend, each to its shard under the (possibly new) map: the ones still
                # bound here go on in this call, the others join their lane's queue.
                stay = []
                for item in pending:
                    target = self._lane_for(item.command)
                    if target is lane:
                        stay.append(item)
                    else:
                        target.queue.append(item)
                        self._pump(target)
                if not stay:
                    return
                pending = stay
        except BaseException as exc:  # answer every caller, whatever happened
            for item in pending:
                if not item.future.done():
                    item.future.set_result(
                        Result(ResultCode.UNAVAILABLE, message=f"shard call failed: {_first_line(exc)}")
                    )
            if not isinstance(exc, Exception):
                raise
        finally:
            lane.in_flight -= 1
            self._pump(lane)

    async def _reload(self) -> bool:
        """Read the routing map again; True if a newer one is now in use. Concurrent
        callers (every lane hears about a move at once) share one read."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._read_map())
        return await asyncio.shield(self._reloading)

    async def _read_map(self) -> bool:
        # Any live shard can answer (they all read the same table): the connected ones
        # first, they are the likeliest to be alive.
        candidates = sorted(self._lanes, key=lambda lane: lane.connection is None or lane.connection.closed)
        for lane in candidates:
            try:
                layout = await asyncio.wait_for(lane.handle.routing.remote(), _RELOAD_TIMEOUT_S)
            except Exception:  # gone, restarting, or no routing() at all: ask the next one
                continue
            try:
                return await self._adopt_map(layout)
            except Exception as exc:  # a shard named in the map is not up yet: later
                log.warning("routing map not usable yet: %s", _first_line(exc))
                return False
        return False

    async def _adopt_map(self, layout: dict[str, Any] | None) -> bool:
        if layout is None or int(layout["version"]) <= self._version:
            return False
        owners: list[str] = list(layout["owners"])
        if len(owners) != self._partitions:
            raise ValueError(f"routing map has {len(owners)} partitions, expected {self._partitions}")
        by_name = {lane.name: lane for lane in self._lanes if lane.name is not None}
        for name in dict.fromkeys(owners):
            if name not in by_name:
                handle = await asyncio.to_thread(ray.get_actor, name, namespace=layout["namespace"])
                by_name[name] = _Lane(handle, name=name)
                self._lanes.append(by_name[name])
        self._route = [by_name[name] for name in owners]
        self._version = int(layout["version"])
        self.reloads += 1
        return True

    async def _connection(self, lane: _Lane) -> FrameConnection:
        if lane.connection is not None and not lane.connection.closed:
            return lane.connection
        connecting = lane.connecting
        if connecting is None:
            connecting = lane.connecting = asyncio.ensure_future(self._connect(lane))
        try:
            return await asyncio.shield(connecting)
        finally:
            # Several senders wait on one attempt; whichever wakes first clears it.
            if lane.connecting is connecting and connecting.done():
                lane.connecting = None

    async def _connect(self, lane: _Lane) -> FrameConnection:
        info = await lane.handle.ready.remote()
        lane.name = info.get("name", lane.name)
        lane.connection = await open_frame_connection(info["address"], info["token"], peer="shard")
        return lane.connection

    async def _attempt(self, lane: _Lane, commands: list[Command]) -> list[Result]:
        """One request to one shard: an answer per command (transient ones included)."""
        self.calls += 1
        try:
            connection = await self._connection(lane)
            replies = await connection.request([c.to_wire() for c in commands])
            answers = [Result.from_wire(w) for w in replies]
        except (ConnectionLost, OSError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            # Unknown outcome: resend the same commands (same keys) once the shard is back.
            return [Result(ResultCode.UNAVAILABLE, message=f"shard unreachable: {_first_line(exc)}")] * len(commands)
        except ray.exceptions.RayTaskError as exc:
            return [Result(ResultCode.UNAVAILABLE, message=f"shard failed: {_first_line(exc)}")] * len(commands)
        if lane.connection is not None and any("fenced" in a.message for a in answers):
            # A fenced incarnation will never write again: find the new one.
            lane.connection.close()
            lane.connection = None
        return answers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


