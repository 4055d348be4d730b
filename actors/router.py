"""The caller's side of the account shards: route, coalesce, retry.

A call to a shard costs about as much as a whole durable transaction, so a router never
makes one call per command. Commands bound for one shard wait while that shard already
has ``max_in_flight`` requests out, and go together in the next one (up to
``max_batch``). Idle, a command leaves at once; busy, many share a request.

Requests travel over one TCP connection per shard (``actors.framing``), whose address the
shard's Ray actor gives out; Ray restarts a dead shard and the router reconnects.

When a shard dies mid-request, nobody can say whether the commands ran. Every command
that moves money carries an idempotency key, so the router resends the same commands
until the shard is back: those that ran are answered from their stored result, the others
run now. Reads and opens are naturally idempotent.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.framing import FrameError, encode_frame, read_frame
from core.partitioning import partition_of, shard_of
from core.wallet import Command, Result, ResultCode

__all__ = ["ShardRouter"]


class _Lost(ConnectionError):
    """The connection to a shard broke: outcomes of its in-flight requests are unknown."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: dict[int, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count()
        self._reader = asyncio.ensure_future(self._read_loop(reader))
        self.closed = False

    async def request(self, wires: list[Any]) -> list[Any]:
        if self.closed:
            raise _Lost("connection closed")
        request_id = next(self._ids)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode_frame([request_id, wires]))
        return await future

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                request_id, answers = await read_frame(reader)
                future = self._pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(answers)
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError) as exc:
            self._fail(_Lost(f"connection to shard lost: {type(exc).__name__}"))
        except asyncio.CancelledError:
            self._fail(_Lost("connection closed"))
            raise

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        self._writer.close()

    def close(self) -> None:
        self._reader.cancel()
        self._fail(_Lost("connection closed"))


@dataclass
class _Lane:
    handle: Any
    queue: list[tuple[Command, asyncio.Future[Result]]] = field(default_factory=list)
    in_flight: int = 0
    connection: _Connection | None = None
    connecting: asyncio.Future[_Connection] | None = None


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
        self._lanes = [_Lane(h) for h in handles]
        self._partitions = partitions
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._retry_for_s = retry_for_s
        self._retry_busy = retry_busy
        self.calls = 0
        self.retries = 0
        self._tasks: set[asyncio.Future[None]] = set()  # keeps in-flight sends alive

    def shard_for(self, command: Command) -> int:
        return shard_of(partition_of(command.operator_id, command.player_id, self._partitions), len(self._lanes))

    async def execute(self, command: Command) -> Result:
        return (await self.execute_many([command]))[0]

    async def execute_many(self, commands: list[Command]) -> list[Result]:
        loop = asyncio.get_running_loop()
        futures = []
        touched = set()
        for command in commands:
            future: asyncio.Future[Result] = loop.create_future()
            index = self.shard_for(command)
            self._lanes[index].queue.append((command, future))
            touched.add(index)
            futures.append(future)
        for index in touched:
            self._pump(index)
        return list(await asyncio.gather(*futures))

    def close(self) -> None:
        for lane in self._lanes:
            if lane.connection is not None:
                lane.connection.close()
                lane.connection = None

    def _pump(self, index: int) -> None:
        lane = self._lanes[index]
        while lane.queue and lane.in_flight < self._max_in_flight:
            batch, lane.queue = lane.queue[: self._max_batch], lane.queue[self._max_batch :]
            lane.in_flight += 1
            task = asyncio.ensure_future(self._send(index, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, index: int, batch: list[tuple[Command, asyncio.Future[Result]]]) -> None:
        lane = self._lanes[index]
        try:
            results = await self._call_with_retry(lane, [c for c, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except BaseException as exc:  # answer every caller, whatever happened
            for _, future in batch:
                if not future.done():
                    future.set_result(Result(ResultCode.UNAVAILABLE, message=f"shard call failed: {_first_line(exc)}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            lane.in_flight -= 1
            self._pump(index)

    async def _connection(self, lane: _Lane) -> _Connection:
        if lane.connection is not None and not lane.connection.closed:
            return lane.connection
        if lane.connecting is None:
            lane.connecting = asyncio.ensure_future(self._connect(lane))
        try:
            return await asyncio.shield(lane.connecting)
        finally:
            if lane.connecting.done():
                lane.connecting = None

    async def _connect(self, lane: _Lane) -> _Connection:
        info = await lane.handle.ready.remote()
        host, port = info["address"]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(encode_frame(info["token"]))
        lane.connection = _Connection(reader, writer)
        return lane.connection

    async def _call_with_retry(self, lane: _Lane, commands: list[Command]) -> list[Result]:
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.05
        results: list[Result | None] = [None] * len(commands)
        pending = list(range(len(commands)))
        while True:
            self.calls += 1
            try:
                connection = await self._connection(lane)
                replies = await connection.request([commands[i].to_wire() for i in pending])
                answers = [Result.from_wire(w) for w in replies]
            except (_Lost, OSError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                # Unknown outcome: resend the same commands (same keys) once the shard is back.
                answers = [Result(ResultCode.UNAVAILABLE, message=f"shard unreachable: {_first_line(exc)}")] * len(pending)
            except ray.exceptions.RayTaskError as exc:
                answers = [Result(ResultCode.UNAVAILABLE, message=f"shard failed: {_first_line(exc)}")] * len(pending)
            retry = []
            for slot, answer in zip(pending, answers, strict=True):
                transient = answer.code is ResultCode.UNAVAILABLE or (
                    self._retry_busy and answer.code is ResultCode.BUSY
                )
                if transient and time.monotonic() < deadline:
                    retry.append(slot)
                else:
                    results[slot] = answer
                if "fenced" in answer.message and lane.connection is not None:
                    # A fenced incarnation will never write again: find the new one.
                    lane.connection.close()
                    lane.connection = None
            if not retry:
                return [r for r in results if r is not None]
            self.retries += 1
            pending = retry
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


