"""The wallet path as one event loop, for what the closed-form queues cannot express.

Used by :func:`sims.system_model.simulate_system` when any of these is on:

* **Shared node CPU** (``node_cores`` > 0): every process of the deployment (the load
  generator when ``client_request`` costs anything, Serve replicas, provider adapters,
  account shards and the database connections) runs on one node of ``node_cores`` cores.
  Each process is single-threaded (FIFO, the GIL); the operating system shares the cores
  among the processes that have work: while ``n`` are runnable each advances at
  ``min(1, cores / n)`` of real time (processor sharing, solved with one virtual clock).
* **The router's in-flight limit** (``router_in_flight`` > 0): an adapter's router keeps
  at most that many requests out per shard; commands arriving meanwhile wait and leave
  together in the next request, when one comes back (after its group commit and a hop).
* **Adapter work after the shard answers** (``adapter_after_share`` > 0): that share of
  ``adapter_request`` runs on the adapter's event loop when the router's answer comes
  back, before the callback record is queued, instead of before the shard call.

Serve batches here follow ``serve.batch``: a batch opens with its first request and leaves
``serve_batch_wait_ms`` later or when full (the path as validated; the deployed replica now
coalesces per event-loop turn over a socket, see :mod:`sims.system_model`). Everything else is as in
:mod:`sims.system_model`. Deterministic: all random draws are made by the caller.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from sims.service import ServiceTimes

__all__ = ["EventInputs", "simulate_events"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Done = Callable[[float], None]


@dataclass
class EventInputs:
    """Everything drawn before the loop (seconds), one row per request unless stated."""

    arrivals: Floats
    replicas: Ints
    providers: Ints
    shards: Ints
    client_cpu: Floats
    serve_cpu: Floats
    adapter_before_cpu: Floats
    adapter_after_cpu: Floats
    command_cpu: Floats
    router_cpu: Floats  # per request, used when it travels as a router request of its own
    call_overhead: Callable[[], float]  # one per Serve batch, drawn in dispatch order
    commit_factors: list[float]
    record_factors: list[float]
    credit_calls: list[tuple[float, int, float, list[int]]]  # (arrival at shard, shard, CPU, credits)
    credits: int
    n_replicas: int
    n_shards: int


@dataclass(eq=False)
class _Process:
    """One single-threaded OS process: a FIFO of CPU jobs."""

    name: str
    queue: deque[tuple[float, Done]] = field(default_factory=deque)
    busy: bool = False
    work: float = 0.0  # CPU seconds served


class _Loop:
    def __init__(self, cores: int) -> None:
        self.cores = cores
        self.now = 0.0
        self.virtual = 0.0  # CPU seconds a runnable process has received since 0
        self.running: list[tuple[float, int, _Process, Done]] = []  # (virtual finish, seq, ...)
        self.timers: list[tuple[float, int, Done]] = []
        self.sequence = itertools.count()

    def rate(self) -> float:
        runnable = len(self.running)
        if self.cores <= 0 or runnable <= self.cores:
            return 1.0
        return self.cores / runnable

    def at(self, when: float, action: Done) -> None:
        heapq.heappush(self.timers, (when, next(self.sequence), action))

    def submit(self, process: _Process, work: float, done: Done) -> None:
        if process.busy:
            process.queue.append((work, done))
        else:
            self._start(process, work, done)

    def _start(self, process: _Process, work: float, done: Done) -> None:
        process.busy = True
        process.work += work
        heapq.heappush(self.running, (self.virtual + work, next(self.sequence), process, done))

    def run(self) -> None:
        while self.timers or self.running:
            rate = self.rate()
            finish = (self.now + (self.running[0][0] - self.virtual) / rate) if self.running else math.inf
            timer = self.timers[0][0] if self.timers else math.inf
            if timer <= finish:
                when, _, action = heapq.heappop(self.timers)
                self._advance(max(when, self.now), rate)
                action(self.now)
            else:
                _, _, process, done = heapq.heappop(self.running)
                self._advance(finish, rate)
                process.busy = False
                if process.queue:
                    self._start(process, *process.queue.popleft())
                done(self.now)

    def _advance(self, when: float, rate: float) -> None:
        self.virtual += (when - self.now) * rate
        self.now = when


class _Pool:
    """``count`` identical processes sharing one FIFO (the database's connections)."""

    def __init__(self, loop: _Loop, name: str, count: int) -> None:
        self.loop = loop
        self.members = [_Process(f"{name}-{i}") for i in range(count)]
        self.waiting: deque[tuple[float, Done]] = deque()

    def submit(self, work: float, done: Done) -> None:
        for member in self.members:
            if not member.busy:
                self.loop.submit(member, work, self._finished(member, done))
                return
        self.waiting.append((work, done))

    def _finished(self, member: _Process, done: Done) -> Done:
        def finished(now: float) -> None:
            if self.waiting and not member.busy:
                work, after = self.waiting.popleft()
                self.loop.submit(member, work, self._finished(member, after))
            done(now)
        return finished

    @property
    def work(self) -> float:
        return sum(m.work for m in self.members)


def simulate_events(inputs: EventInputs, s: ServiceTimes) -> dict[str, Any]:
    """Run the loop; per-request timestamps (seconds), busy CPU per resource and counts."""
    loop = _Loop(s.node_cores)
    n = inputs.arrivals.shape[0]
    hop = s.hop.mean_ms / 1000.0
    client = _Process("client")
    replicas = [_Process(f"replica-{i}") for i in range(inputs.n_replicas)]
    adapters = [_Process(f"adapter-{i}") for i in range(s.providers)]
    shards = [_Process(f"shard-{i}") for i in range(inputs.n_shards)]
    database = _Pool(loop, "postgres", s.db_connections)
    stamps = {key: np.full(n, np.nan) for key in
              ("replica_done", "adapter_done", "entry_ready", "commit_done", "record_done", "answered")}
    counts = {"adapter_calls": 0, "router_requests": 0, "commits": 0, "record_writes": 0}
    credit_commit_done = np.full(inputs.credits, np.nan)

    # -- Serve batches: open with the first request, leave after the wait or when full.
    open_batch: dict[tuple[int, int], list[int]] = {}
    batch_members: list[list[int]] = []
    batch_left: list[int] = []
    batch_of = np.full(n, -1, dtype=np.int64)

    def dispatch(key: tuple[int, int], members: list[int]) -> None:
        if open_batch.get(key) is not members:
            return  # already left full
        del open_batch[key]
        index = len(batch_members)
        batch_members.append(members)
        batch_left.append(len(members))
        batch_of[members] = index
        counts["adapter_calls"] += 1
        adapter = adapters[key[1]]
        loop.submit(adapter, inputs.call_overhead(), lambda now: None)
        for request in members:
            loop.submit(adapter, inputs.adapter_before_cpu[request], _after_adapter(request))

    def join_batch(request: int, now: float) -> None:
        stamps["replica_done"][request] = now
        key = (int(inputs.replicas[request]), int(inputs.providers[request]))
        members = open_batch.get(key)
        if members is None:
            members = open_batch[key] = []
            loop.at(now + s.serve_batch_wait_ms / 1000.0, lambda _now: dispatch(key, members))
        members.append(request)
        if len(members) >= s.serve_batch_max:
            dispatch(key, members)

    # -- The adapter's router: lanes per (provider, shard), at most router_in_flight out.
    lanes: dict[tuple[int, int], deque[int]] = {}
    out: dict[tuple[int, int], int] = {}

    def _after_adapter(request: int) -> Done:
        def after(now: float) -> None:
            stamps["adapter_done"][request] = now
            key = (int(inputs.providers[request]), int(inputs.shards[request]))
            lanes.setdefault(key, deque()).append(request)
            pump(key)
        return after

    def pump(key: tuple[int, int]) -> None:
        queue = lanes[key]
        limit = s.router_in_flight or math.inf
        while queue and out.get(key, 0) < limit:
            batch = [queue.popleft() for _ in range(min(len(queue), 500))]
            out[key] = out.get(key, 0) + 1
            counts["router_requests"] += 1
            cpu = float(inputs.router_cpu[batch[0]] + inputs.command_cpu[batch].sum())
            loop.at(loop.now + hop, partial(arrive_at_shard, key, batch, cpu))

    def arrive_at_shard(key: tuple[int, int], batch: list[int], cpu: float, _now: float) -> None:
        loop.submit(shards[key[1]], cpu, partial(shard_done, key, batch))

    # -- Group commits per shard (one in flight each), at the shared database.
    buffers: list[list[tuple[float, Done]]] = [[] for _ in range(inputs.n_shards)]
    committing = [False] * inputs.n_shards
    flush = s.flush_ms / 1000.0

    def add_entries(shard: int, now: float, entries: list[Done]) -> None:
        was_empty = not buffers[shard]
        buffers[shard].extend((now, entry) for entry in entries)
        if was_empty:
            loop.at(now + flush, lambda when: maybe_commit(shard, when))
        maybe_commit(shard, now)

    def maybe_commit(shard: int, now: float) -> None:
        buffer = buffers[shard]
        if committing[shard] or not buffer:
            return
        if len(buffer) < s.max_group and buffer[0][0] + flush > now + 1e-12:
            return
        group, buffers[shard] = buffer[: s.max_group], buffer[s.max_group:]
        committing[shard] = True
        cost = (s.db_fixed_ms + s.db_per_command_ms * len(group)) * inputs.commit_factors[counts["commits"]]
        counts["commits"] += 1

        def committed(done: float) -> None:
            committing[shard] = False
            for _, entry in group:
                entry(done)
            if buffers[shard]:
                rest = buffers[shard]
                if rest[0][0] + flush <= done or len(rest) >= s.max_group:
                    maybe_commit(shard, done)
                else:
                    loop.at(rest[0][0] + flush, lambda when: maybe_commit(shard, when))

        database.submit(cost / 1000.0, committed)

    def shard_done(key: tuple[int, int], batch: list[int], now: float) -> None:
        left = [len(batch)]

        def entry_for(request: int) -> Done:
            def committed(done: float) -> None:
                stamps["commit_done"][request] = done
                left[0] -= 1
                if left[0] == 0:
                    loop.at(done + hop, lambda when: answered_by_shard(key, batch, when))
            return committed

        for request in batch:
            stamps["entry_ready"][request] = now
        add_entries(key[1], now, [entry_for(r) for r in batch])

    def answered_by_shard(key: tuple[int, int], batch: list[int], now: float) -> None:
        out[key] -= 1
        pump(key)
        adapter = adapters[key[0]]
        for request in batch:
            loop.submit(adapter, inputs.adapter_after_cpu[request], partial(queue_record, key[0], request))

    # -- Callback records: each adapter's recorder, record_writes_in_flight INSERTs at a time.
    pending: dict[int, list[int]] = {}
    writing: dict[int, int] = {}

    def queue_record(provider: int, request: int, now: float) -> None:
        pending.setdefault(provider, []).append(request)
        write_records(provider)

    def write_records(provider: int) -> None:
        waiting = pending.get(provider, [])
        while waiting and writing.get(provider, 0) < s.record_writes_in_flight:
            batch, pending[provider] = waiting[: s.record_batch_max], waiting[s.record_batch_max:]
            waiting = pending[provider]
            writing[provider] = writing.get(provider, 0) + 1
            cost = (s.record_fixed_ms + s.record_per_record_ms * len(batch)) * \
                inputs.record_factors[counts["record_writes"]]
            counts["record_writes"] += 1
            database.submit(cost / 1000.0, partial(recorded, provider, batch))

    def recorded(provider: int, batch: list[int], now: float) -> None:
        writing[provider] -= 1
        for request in batch:
            stamps["record_done"][request] = now
            index = int(batch_of[request])
            batch_left[index] -= 1
            if batch_left[index] == 0:
                stamps["answered"][batch_members[index]] = now
        write_records(provider)

    # -- Arrivals and round-end credits.
    for request in range(n):
        def arrive(now: float, r: int = request) -> None:
            replica = replicas[int(inputs.replicas[r])]
            serve = lambda _now: loop.submit(replica, inputs.serve_cpu[r],  # noqa: E731
                                             lambda done: join_batch(r, done))
            if inputs.client_cpu[r] > 0:
                loop.submit(client, inputs.client_cpu[r], serve)
            else:
                serve(now)
        loop.at(float(inputs.arrivals[request]), arrive)
    def credit_committed(credit: int, done: float) -> None:
        credit_commit_done[credit] = done

    def credit_entries(shard: int, members: list[int], ready: float) -> None:
        add_entries(shard, ready, [partial(credit_committed, i) for i in members])

    def credit_call(shard: int, cpu: float, members: list[int], _now: float) -> None:
        loop.submit(shards[shard], cpu, partial(credit_entries, shard, members))

    for when, shard, cpu, members in inputs.credit_calls:
        loop.at(when, partial(credit_call, shard, cpu, members))
    loop.run()
    return {
        **stamps,
        "batch_of": batch_of,
        "credit_commit_done": credit_commit_done,
        "busy": {
            "client": client.work,
            "replica": np.array([p.work for p in replicas]),
            "adapter": np.array([p.work for p in adapters]),
            "shard": np.array([p.work for p in shards]),
            "db": database.work,
        },
        "counts": counts,
    }
