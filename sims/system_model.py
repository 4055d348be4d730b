"""A discrete-event model of the running system, from bet arrival to journal commit.

The path of a bet (DESIGN.md, Actors):

1. **Serve replica** (FIFO, one CPU): parse, validate, respond. Requests are routed to a
   replica at random (Serve's power-of-two-choices does better: this errs pessimistic).
2. **Caller coalescing**: a replica sends a shard one actor call per ``coalesce_ms``
   window carrying every command it has for that shard; then one hop.
3. **Account shard** (FIFO, one CPU): per call ``actor_call`` + per command ``command``.
4. **Group commit**: a shard's processed entries wait until ``flush_ms`` after the
   oldest or ``max_group`` entries, and never while its previous commit is in flight;
   the transaction queues at **PostgreSQL** (``db_connections`` servers, FIFO) and takes
   ``fixed + per_command × entries``. Journal before ack: the bet is answered when its
   transaction commits, plus the hop back.

Settlement: at each round's end every table's scheduler computes its winners one by one
(``settlement_ms_per_ticket``) and sends the credits through steps 2-4 as another caller.

FIFO single servers are solved in closed form, vectorised (``D_n = max(A_n, D_{n-1}) +
S_n`` is ``C_n + max_{k<=n}(A_k − C_{k-1})`` with ``C`` the cumulative service), so only
the group commits, coupled across shards through the shared database, run in an event
loop: thousands of events per simulated second, not one per bet.

``stable`` means every resource's utilisation over the window stays below 95%; a stable
system can still queue deeply in the busiest seconds, which is what the p99 shows.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sims import SimulationError
from sims.runner import seed_sequence
from sims.service import CapacityConfig
from sims.workload import arrival_times

__all__ = ["Scenario", "fifo_departures", "simulate_system"]

_ARRIVALS_STREAM = 103
_SERVICE_STREAM = 104
_STABLE_UTILIZATION = 0.95
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    players: int
    bets_per_minute: float
    tables: int
    replicas: int
    shards: int
    seed: int = 0

    def check(self) -> None:
        for name in ("players", "tables", "replicas", "shards"):
            if getattr(self, name) < 1:
                raise SimulationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.bets_per_minute > 0:
            raise SimulationError(f"bets per minute must be > 0, got {self.bets_per_minute}")


def _uniform_ints(rng: np.random.Generator, high: int, size: int) -> Ints:
    result: Ints = np.asarray(rng.integers(0, high, size=size), dtype=np.int64)
    return result


def fifo_departures(arrivals: Floats, services: Floats) -> Floats:
    """Departure times of a FIFO single server (arrivals sorted), in closed form."""
    done = np.cumsum(services)
    before = done - services
    result: Floats = done + np.maximum.accumulate(arrivals - before)
    return result


def _segments(keys: Ints, count: int) -> list[tuple[int, int]]:
    """Start/stop of each key's run in ``keys`` sorted ascending (keys 0..count-1)."""
    bounds = np.searchsorted(keys, np.arange(count + 1))
    return [(int(bounds[k]), int(bounds[k + 1])) for k in range(count)]


def _coalesce(ready: Floats, callers: Ints, shards: Ints, window: float, n_callers: int) -> tuple[Ints, Floats]:
    """Group commands into calls: one per (shard, caller, ``window`` bucket).

    Returns each command's call index and each call's dispatch time (bucket end).
    """
    buckets = np.floor(ready / window).astype(np.int64)
    span = int(buckets.max()) + 1 if buckets.size else 1
    if (int(shards.max(initial=0)) + 1) * n_callers * span >= 2**62:
        raise SimulationError("capacity model: too many coalescing windows; lengthen coalesce_ms")
    keys = (shards * n_callers + callers) * span + buckets
    unique, call_of = np.unique(keys, return_inverse=True)
    dispatch: Floats = ((unique % span) + 1).astype(np.float64) * window
    return call_of.ravel().astype(np.int64), dispatch


def simulate_system(scenario: Scenario, config: CapacityConfig) -> dict[str, Any]:
    """Simulate the window of ``config.workload`` for one deployment; JSON-ready figures."""
    scenario.check()
    started = time.perf_counter()
    s, w = config.service, config.workload
    rng = np.random.Generator(np.random.PCG64(seed_sequence(scenario.seed, _ARRIVALS_STREAM)))
    noise = np.random.Generator(np.random.PCG64(seed_sequence(scenario.seed, _SERVICE_STREAM)))
    arrivals = arrival_times(rng, scenario.players * scenario.bets_per_minute / 60.0, w)
    bets = arrivals.shape[0]
    if bets == 0:
        raise SimulationError("capacity model: no bet arrives in the window; raise the load")
    if bets > 20_000_000:
        raise SimulationError(f"capacity model: {bets} bets in the window is too many; shorten it")
    players = _uniform_ints(rng, scenario.players, bets)
    tables = _uniform_ints(rng, scenario.tables, bets)
    wins = rng.random(bets) < w.win_fraction
    replicas = _uniform_ints(noise, scenario.replicas, bets)

    # 1. Serve replicas.
    serve_time = s.serve_request.sample(noise, bets)
    replica_done = np.empty(bets)
    by_replica = np.argsort(replicas, kind="stable")
    replica_busy = np.zeros(scenario.replicas)
    for r, (lo, hi) in enumerate(_segments(replicas[by_replica], scenario.replicas)):
        rows = by_replica[lo:hi]
        replica_done[rows] = fifo_departures(arrivals[rows], serve_time[rows])
        replica_busy[r] = serve_time[rows].sum()

    # Settlement credits: winners of each (round, table), computed one by one from round end.
    open_seconds = w.round_seconds - w.close_seconds
    rounds = np.floor(arrivals / w.round_seconds).astype(np.int64)
    winners = np.flatnonzero(wins & (arrivals - rounds * w.round_seconds < open_seconds))
    group = rounds[winners] * scenario.tables + tables[winners]
    order = np.argsort(group, kind="stable")
    winners, group = winners[order], group[order]
    costs = s.settlement_per_ticket.sample(noise, winners.shape[0])
    running = np.cumsum(costs)
    first = np.r_[True, group[1:] != group[:-1]] if group.size else np.zeros(0, bool)
    base = np.maximum.accumulate(np.where(first, running - costs, 0.0)) if group.size else running
    settle_start: Floats = ((rounds[winners] + 1) * w.round_seconds).astype(np.float64)
    credit_ready = settle_start + running - base

    # 2-3. Commands (bets, then credits) coalesced into calls, FIFO at each shard.
    ready = np.concatenate([replica_done, credit_ready])
    callers = np.concatenate([replicas, scenario.replicas + tables[winners]]).astype(np.int64)
    owner = np.concatenate([players, players[winners]]) % scenario.shards
    commands = ready.shape[0]
    call_of, dispatch = _coalesce(ready, callers, owner, s.coalesce_ms / 1000.0,
                                  scenario.replicas + scenario.tables)
    calls = dispatch.shape[0]
    command_cost = s.command.sample(noise, commands)
    call_cost = s.actor_call.sample(noise, calls) + np.bincount(call_of, command_cost, calls)
    call_shard = np.zeros(calls, dtype=np.int64)
    call_shard[call_of] = owner
    call_arrival = dispatch + s.hop.sample(noise, calls)
    call_order = np.lexsort((call_arrival, call_shard))
    call_done = np.empty(calls)
    shard_busy = np.zeros(scenario.shards)
    for shard, (lo, hi) in enumerate(_segments(call_shard[call_order], scenario.shards)):
        rows = call_order[lo:hi]
        call_done[rows] = fifo_departures(call_arrival[rows], call_cost[rows])
        shard_busy[shard] = call_cost[rows].sum()

    # 4. Group commit against the shared database: an event loop over transactions.
    entry_ready = call_done[call_of]
    ack = _group_commits(entry_ready, owner, scenario.shards, config, noise)
    stats = ack.pop("stats")
    done = ack.pop("done")

    # Figures over what arrived after warm-up.
    measured = arrivals >= w.warmup_seconds
    latency = (done[:bets] + s.hop.mean_ms / 1000.0 - arrivals)[measured] * 1000.0
    replica_stage = (replica_done - arrivals)[measured] * 1000.0
    to_shard = (entry_ready[:bets] - replica_done)[measured] * 1000.0
    commit = (done[:bets] - entry_ready[:bets])[measured] * 1000.0
    settlement = _settlement_ms(done[bets:], group, settle_start, w.warmup_seconds, w.window_seconds)
    window = w.window_seconds
    replica_util = replica_busy / window
    shard_util = shard_busy / window
    db_util = stats["db_busy"] / (window * s.db_connections)
    per_shard_latency = _p99_by(latency, owner[:bets][measured], scenario.shards)
    per_replica_latency = _p99_by(replica_stage, replicas[measured], scenario.replicas)
    per_second = np.bincount(np.floor(arrivals).astype(np.int64))
    return {
        "players": scenario.players,
        "bets_per_minute": scenario.bets_per_minute,
        "tables": scenario.tables,
        "replicas": scenario.replicas,
        "shards": scenario.shards,
        "window_s": window,
        "bets": int(bets),
        "bets_per_s_daily_mean": scenario.players * scenario.bets_per_minute / 60.0,
        "bets_per_s_window": bets / window,
        "bets_per_s_peak_second": int(per_second.max()),
        "credits": int(winners.shape[0]),
        "calls_per_s": calls / window,
        "commits_per_s": stats["commits"] / window,
        "mean_group_size": commands / max(1, stats["commits"]),
        "latency_ms": _percentiles(latency),
        "stage_p99_ms": {
            "replica": _percentiles(replica_stage)["p99"],
            "coalesce_and_shard": _percentiles(to_shard)["p99"],
            "group_commit": _percentiles(commit)["p99"],
        },
        "settlement_ms": settlement,
        "utilization": {
            "replica_max": float(replica_util.max()),
            "replica_mean": float(replica_util.mean()),
            "shard_max": float(shard_util.max()),
            "shard_mean": float(shard_util.mean()),
            "db": float(db_util),
        },
        "stable": bool(max(replica_util.max(), shard_util.max(), db_util) < _STABLE_UTILIZATION),
        "per_shard": [
            {"shard": i, "utilization": float(shard_util[i]), "p99_ms": per_shard_latency[i]}
            for i in range(scenario.shards)
        ],
        "per_replica": [
            {"replica": i, "utilization": float(replica_util[i]), "p99_ms": per_replica_latency[i]}
            for i in range(scenario.replicas)
        ],
        "simulation_seconds": round(time.perf_counter() - started, 3),
    }


def _group_commits(
    ready: Floats, owner: Ints, shards: int, config: CapacityConfig, noise: np.random.Generator
) -> dict[str, Any]:
    s = config.service
    flush = s.flush_ms / 1000.0
    limit = s.max_group
    order = np.lexsort((ready, owner))
    sorted_ready = ready[order]
    segments = _segments(owner[order], shards)
    # Unit-mean lognormal factors for commit times, drawn up front in a fixed order.
    sigma2 = math.log1p(s.db_cv * s.db_cv)
    factors = np.asarray(noise.lognormal(-sigma2 / 2, math.sqrt(sigma2), size=ready.shape[0])).tolist()
    times = sorted_ready.tolist()
    done_sorted = np.empty(ready.shape[0])

    def next_group(start: int, stop: int, previous_done: float) -> tuple[float, int]:
        last_needed = start + limit - 1
        full_at = times[last_needed] if last_needed < stop else math.inf
        close = max(previous_done, min(times[start] + flush, full_at))
        end = int(np.searchsorted(sorted_ready[start:stop], close, side="right")) + start
        return close, min(end, start + limit)

    queue: list[tuple[float, int, int, int]] = []
    for shard, (lo, hi) in enumerate(segments):
        if hi > lo:
            close, end = next_group(lo, hi, -math.inf)
            queue.append((close, shard, lo, end))
    heapq.heapify(queue)
    servers = [0.0] * s.db_connections
    busy = 0.0
    commits = 0
    while queue:
        submitted, shard, lo, hi = heapq.heappop(queue)
        free = heapq.heappop(servers)
        begin = max(submitted, free)
        finish = begin + (s.db_fixed_ms + s.db_per_command_ms * (hi - lo)) / 1000.0 * factors[commits]
        heapq.heappush(servers, finish)
        busy += finish - begin
        commits += 1
        done_sorted[lo:hi] = finish
        stop = segments[shard][1]
        if hi < stop:
            close, end = next_group(hi, stop, finish)
            heapq.heappush(queue, (close, shard, hi, end))
    done = np.empty(ready.shape[0])
    done[order] = done_sorted
    return {"done": done, "stats": {"db_busy": busy, "commits": commits}}


def _percentiles(values_ms: Floats) -> dict[str, float]:
    if values_ms.size == 0:
        return {"p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
    p50, p99, p999 = np.quantile(values_ms, [0.5, 0.99, 0.999])
    return {"p50": float(p50), "p99": float(p99), "p999": float(p999), "max": float(values_ms.max())}


def _p99_by(values: Floats, keys: Ints, count: int) -> list[float]:
    order = np.argsort(keys, kind="stable")
    result = []
    for lo, hi in _segments(keys[order], count):
        chunk = values[order[lo:hi]]
        result.append(float(np.quantile(chunk, 0.99)) if chunk.size else 0.0)
    return result


def _settlement_ms(done: Floats, group: Ints, start: Floats, warmup: float, window: float) -> dict[str, float]:
    """Time from a round's end until its table's last credit commits, per (round, table)."""
    if group.size == 0:
        return {"p99": 0.0, "max": 0.0, "rounds_measured": 0}
    keys, first = np.unique(group, return_index=True)
    last = np.zeros(keys.shape[0])
    np.maximum.at(last, np.searchsorted(keys, group), done)
    began = start[first]
    inside = (began >= warmup) & (began <= window)
    spans = (last - began)[inside] * 1000.0
    if spans.size == 0:
        return {"p99": 0.0, "max": 0.0, "rounds_measured": 0}
    return {"p99": float(np.quantile(spans, 0.99)), "max": float(spans.max()),
            "rounds_measured": int(spans.size)}
