"""A discrete-event model of the running system, from bet arrival to journal commit.

The path of a wallet request (DESIGN.md, Actors; serve/wallet.py, actors/provider_adapter.py):

1. **Serve replica** (FIFO, one CPU): parse, validate, respond. Requests are routed to a
   replica at random (Serve's power-of-two-choices does better: this errs pessimistic).
2. **Serve batch → provider adapter**: each replica gathers its requests for a provider
   over ``serve_batch_wait_ms`` windows (at most ``serve_batch_max`` each) into one Ray
   call to that provider's single ``ProviderAdapter`` actor (FIFO, one CPU): per call
   ``actor_call`` (a measured round trip), per request ``adapter_request`` (signature,
   parse, session, render; all charged before the shard call).
3. **Account shard** (FIFO, one CPU): the adapter's router sends each command as a
   request of its own (``router_in_flight`` 0), or keeps at most ``router_in_flight``
   requests out per shard and sends what queued meanwhile together when one comes back:
   ``hop`` + ``router_call`` + ``command`` per command.
4. **Group commit**: a shard's processed entries wait until ``flush_ms`` after the
   oldest or ``max_group`` entries, and never while its previous commit is in flight;
   the transaction queues at **PostgreSQL** (``db_connections`` servers, FIFO) and takes
   ``fixed + per_command × entries``.
5. **Callback record**: a hop after its commit the adapter queues the request's record;
   its recorder writes every pending record in one INSERT (``record_commit_ms``: fixed +
   per record, at the same database), ``record_writes_in_flight`` at a time.
6. The adapter answers a whole Serve batch when its last request is recorded
   (``asyncio.gather``); that answer is the request's latency.

Step 2 is modelled as it was measured and validated (2026-11-22, BENCHMARKS.md):
``serve.batch`` and a Ray call. Since 2026-12-06 a replica sends its requests over the
adapter's own socket instead, one frame per turn of its event loop
(``actors.provider_adapter.AdapterLink``): in this model's terms a wait window of about
zero and an ``actor_call`` of one socket round trip (~0.3 ms, not ~1.4 ms). The service
times in ``sims/data`` and the validations have not been redone for that path yet.

Settlement (``workload.settlement``, default on): at each round's end every table's
scheduler computes its winners one by one (``settlement_ms_per_ticket``) and sends the
credits, coalesced per ``call_coalesce_ms`` window, to the shards (steps 3-4, ``actor_call``
per call). Off: no round-end credits; each win is a wallet request of its own (steps 1-6).

With ``node_cores`` (one node of that many cores shared by every process, the load
generator's ``client_request`` included), a router in-flight limit, or adapter work after
the shard answer (``adapter_after_share``), steps 1-6 run in one event loop instead
(:mod:`sims.event_model`); otherwise every process has a core of its own and:

FIFO single servers are solved in closed form, vectorised (``D_n = max(A_n, D_{n-1}) +
S_n`` is ``C_n + max_{k<=n}(A_k − C_{k-1})`` with ``C`` the cumulative service), so only
the group commits and record writes, coupled through the shared database, run in an
event loop: thousands of events per simulated second, not one per bet.

``stable`` means every resource's utilisation over the window stays below 95%; a stable
system can still queue deeply in the busiest seconds, which is what the p99 shows.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sims import SimulationError
from sims.event_model import EventInputs, simulate_events
from sims.runner import seed_sequence
from sims.service import CapacityConfig, ServiceTimes
from sims.workload import arrival_times, paced_bursts

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


def _running_within(group: Ints, costs: Floats) -> Floats:
    """Cumulative ``costs`` within each run of equal ``group`` values (``group`` sorted)."""
    if group.size == 0:
        return np.zeros(0)
    running = np.cumsum(costs)
    first = np.r_[True, group[1:] != group[:-1]]
    base = np.maximum.accumulate(np.where(first, running - costs, 0.0))
    result: Floats = running - base
    return result


def _fifo_by(keys: Ints, count: int, arrivals: Floats, costs: Floats) -> tuple[Floats, Floats]:
    """FIFO single server per key: each job's departure and each server's busy time."""
    done = np.empty(arrivals.shape[0])
    busy = np.zeros(count)
    order = np.lexsort((arrivals, keys))
    for key, (lo, hi) in enumerate(_segments(keys[order], count)):
        rows = order[lo:hi]
        done[rows] = fifo_departures(arrivals[rows], costs[rows])
        busy[key] = costs[rows].sum()
    return done, busy


def _serve_batches(ready: Floats, replicas: Ints, providers: Ints, n_replicas: int,
                   s: ServiceTimes) -> tuple[Ints, Floats, Ints]:
    """``serve.batch`` in each replica: one adapter call per (replica, provider, wait window),
    at most ``serve_batch_max`` requests each. Returns each request's batch, each batch's
    dispatch time and provider."""
    window_of, window_dispatch = _coalesce(ready, replicas, providers, s.serve_batch_wait_ms / 1000.0,
                                           n_replicas)
    order = np.argsort(window_of, kind="stable")
    rank = (_running_within(window_of[order], np.ones(order.shape[0])) - 1).astype(np.int64)
    split = np.empty_like(window_of)
    split[order] = window_of[order] * (ready.shape[0] + 1) + rank // s.serve_batch_max
    unique, batch_of = np.unique(split, return_inverse=True)
    batch_of = batch_of.ravel().astype(np.int64)
    dispatch: Floats = window_dispatch[unique // (ready.shape[0] + 1)]
    batch_provider = np.zeros(unique.shape[0], dtype=np.int64)
    batch_provider[batch_of] = providers
    return batch_of, dispatch, batch_provider


def simulate_system(scenario: Scenario, config: CapacityConfig) -> dict[str, Any]:
    """Simulate the window of ``config.workload`` for one deployment; JSON-ready figures."""
    scenario.check()
    started = time.perf_counter()
    s, w = config.service, config.workload
    rng = np.random.Generator(np.random.PCG64(seed_sequence(scenario.seed, _ARRIVALS_STREAM)))
    noise = np.random.Generator(np.random.PCG64(seed_sequence(scenario.seed, _SERVICE_STREAM)))
    bet_rate = scenario.players * scenario.bets_per_minute / 60.0
    paced_wins = np.zeros(0)
    if w.client_workers:
        # Each burst: one request per worker, bets and (without settlement) wins in proportion.
        share = 1.0 if w.settlement else 1.0 / (1.0 + w.win_fraction)
        total = bet_rate / share
        bursts = paced_bursts(total, w.client_workers, w)
        per_burst = round(w.client_workers * share)
        bet_arrivals = np.repeat(bursts, per_burst)
        paced_wins = np.repeat(bursts, w.client_workers - per_burst)
    else:
        bet_arrivals = arrival_times(rng, bet_rate, w)
    bets = bet_arrivals.shape[0]
    if bets == 0:
        raise SimulationError("capacity model: no bet arrives in the window; raise the load")
    if bets * (1.0 + w.win_fraction) > 20_000_000:
        raise SimulationError(f"capacity model: {bets} bets in the window is too many; shorten it")
    bet_players = _uniform_ints(rng, scenario.players, bets)
    tables = _uniform_ints(rng, scenario.tables, bets)
    wins: npt.NDArray[np.bool_] = np.asarray(rng.random(bets) < w.win_fraction)
    if w.settlement:
        arrivals, players = bet_arrivals, bet_players
    else:
        # No round-end credits: wins come as wallet requests of their own (same shape, a
        # Poisson stream at the winning rate), through the same path as bets.
        win_arrivals = paced_wins if w.client_workers else arrival_times(rng, bet_rate * w.win_fraction, w)
        arrivals = np.concatenate([bet_arrivals, win_arrivals])
        players = np.concatenate([bet_players, _uniform_ints(rng, scenario.players, win_arrivals.shape[0])])
        by_time = np.argsort(arrivals, kind="stable")
        arrivals, players = arrivals[by_time], players[by_time]
        wins = np.zeros(bets, dtype=bool)
    requests = arrivals.shape[0]
    replicas = _uniform_ints(noise, scenario.replicas, requests)
    providers = _uniform_ints(noise, s.providers, requests)

    # Settlement credits: winners of each (round, table), computed one by one from round end.
    open_seconds = w.round_seconds - w.close_seconds
    rounds = np.floor(bet_arrivals / w.round_seconds).astype(np.int64)
    winners = np.flatnonzero(wins & (bet_arrivals - rounds * w.round_seconds < open_seconds))
    group = rounds[winners] * scenario.tables + tables[winners]
    order = np.argsort(group, kind="stable")
    winners, group = winners[order], group[order]
    settle_start: Floats = ((rounds[winners] + 1) * w.round_seconds).astype(np.float64)
    credits = winners.shape[0]

    def credit_ready() -> Floats:
        # Drawn where the paths need it, so the closed form's random stream is unchanged.
        ready: Floats = settle_start + _running_within(
            group, s.settlement_per_ticket.sample(noise, winners.shape[0]))
        return ready

    path_inputs = _PathInputs(arrivals, players, replicas, providers,
                              bet_players[winners] % scenario.shards, tables[winners].astype(np.int64),
                              credit_ready)
    path = (_event_path if s.needs_event_loop else _closed_form_path)(path_inputs, scenario, config, noise)
    replica_done, adapter_done = path["replica_done"], path["adapter_done"]
    entry_ready, commit_done = path["entry_ready"], path["commit_done"]
    record_done, answered, owner = path["record_done"], path["answered"], path["owner"]
    stats, calls, batches = path["stats"], path["calls"], path["batches"]
    replica_busy, adapter_busy, shard_busy = path["replica_busy"], path["adapter_busy"], path["shard_busy"]

    # Figures over what arrived after warm-up.
    measured = arrivals >= w.warmup_seconds

    def stage(after: Floats, before: Floats) -> float:
        return _percentiles((after - before)[measured] * 1000.0)["p99"]

    latency = (answered - arrivals)[measured] * 1000.0
    replica_stage = (replica_done - arrivals)[measured] * 1000.0
    settlement = _settlement_ms(commit_done[requests:], group, settle_start, w.warmup_seconds,
                                w.window_seconds)
    window = w.window_seconds
    replica_util = replica_busy / window
    adapter_util = adapter_busy / window
    shard_util = shard_busy / window
    db_util = stats["db_busy"] / (window * s.db_connections)
    # CPU the modelled processes demand, in cores; against the node's when it is shared.
    cpu_cores = (path["client_busy"] + replica_busy.sum() + adapter_busy.sum() + shard_busy.sum()
                 + stats["db_busy"]) / window
    node_util = cpu_cores / s.node_cores if s.node_cores else 0.0
    per_shard_latency = _p99_by(latency, owner[:requests][measured], scenario.shards)
    per_replica_latency = _p99_by(replica_stage, replicas[measured], scenario.replicas)
    per_second = np.bincount(np.floor(bet_arrivals).astype(np.int64))
    return {
        "players": scenario.players,
        "bets_per_minute": scenario.bets_per_minute,
        "tables": scenario.tables,
        "replicas": scenario.replicas,
        "shards": scenario.shards,
        "providers": s.providers,
        "settlement": w.settlement,
        "window_s": window,
        "bets": int(bets),
        "requests": int(requests),
        "bets_per_s_daily_mean": bet_rate,
        "bets_per_s_window": bets / window,
        "requests_per_s_window": requests / window,
        "bets_per_s_peak_second": int(per_second.max()),
        "credits": int(credits),
        "adapter_calls_per_s": batches / window,
        "calls_per_s": calls / window,
        "commits_per_s": stats["commits"] / window,
        "record_writes_per_s": stats["record_writes"] / window,
        "mean_group_size": (requests + credits) / max(1, stats["commits"]),
        "latency_ms": _percentiles(latency),
        "stage_p99_ms": {
            "replica": _percentiles(replica_stage)["p99"],
            "adapter": stage(adapter_done, replica_done),
            "coalesce_and_shard": stage(entry_ready[:requests], adapter_done),
            "group_commit": stage(commit_done[:requests], entry_ready[:requests]),
            "callback_record": stage(record_done[:requests], commit_done[:requests]),
            "batch_gather": stage(answered, record_done[:requests]),
        },
        "settlement_ms": settlement,
        "utilization": {
            "replica_max": float(replica_util.max()),
            "replica_mean": float(replica_util.mean()),
            "adapter_max": float(adapter_util.max()),
            "shard_max": float(shard_util.max()),
            "shard_mean": float(shard_util.mean()),
            "db": float(db_util),
            "cpu_demand_cores": float(cpu_cores),
            "node_cpu": float(node_util),
        },
        "node_cores": s.node_cores,
        "router_in_flight": s.router_in_flight,
        "stable": bool(max(replica_util.max(), adapter_util.max(), shard_util.max(), db_util, node_util)
                       < _STABLE_UTILIZATION),
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


@dataclass(frozen=True)
class _PathInputs:
    arrivals: Floats
    players: Ints
    replicas: Ints
    providers: Ints
    credit_shard: Ints
    credit_table: Ints
    credit_ready: Callable[[], Floats]


def _closed_form_path(p: _PathInputs, scenario: Scenario, config: CapacityConfig,
                      noise: np.random.Generator) -> dict[str, Any]:
    """Steps 1-6 with every process on a core of its own and unlimited router requests."""
    s = config.service
    arrivals, players, replicas, providers = p.arrivals, p.players, p.replicas, p.providers
    requests = arrivals.shape[0]
    # 1. Serve replicas.
    serve_time = s.serve_request.sample(noise, requests)
    replica_done, replica_busy = _fifo_by(replicas, scenario.replicas, arrivals, serve_time)

    # 2. Serve batches, one adapter call each; the provider's adapter is a FIFO CPU: per call
    #    ``actor_call`` (the measured round trip of a Ray call), per request ``adapter_request``.
    batch_of, batch_dispatch, batch_provider = _serve_batches(
        replica_done, replicas, providers, scenario.replicas, s)
    batches = batch_dispatch.shape[0]
    request_cpu = s.adapter_request.sample(noise, requests)
    call_overhead = s.actor_call.sample(noise, batches)
    batch_cost = call_overhead + np.bincount(batch_of, request_cpu, batches)
    batch_done, adapter_busy = _fifo_by(batch_provider, s.providers, batch_dispatch, batch_cost)
    in_batch = np.argsort(batch_of, kind="stable")
    adapter_done = np.empty(requests)
    adapter_done[in_batch] = ((batch_done - batch_cost + call_overhead)[batch_of[in_batch]]
                              + _running_within(batch_of[in_batch], request_cpu[in_batch]))

    credit_ready = p.credit_ready()

    # 3. Account shards (FIFO). Each request's command goes from its adapter's router as a
    #    request of its own (an idle router sends at once); credits are coalesced per table.
    credit_shard, credits = p.credit_shard, p.credit_shard.shape[0]
    credit_call_of, credit_dispatch = _coalesce(credit_ready, p.credit_table, credit_shard,
                                                s.coalesce_ms / 1000.0, scenario.tables)
    owner = np.concatenate([players % scenario.shards, credit_shard])
    call_of = np.concatenate([np.arange(requests), requests + credit_call_of])
    calls = requests + credit_dispatch.shape[0]
    command_cost = s.command.sample(noise, requests + credits)
    call_cost = np.concatenate([s.router_call.sample(noise, requests),
                                s.actor_call.sample(noise, calls - requests)])
    call_cost += np.bincount(call_of, command_cost, calls)
    call_shard = np.zeros(calls, dtype=np.int64)
    call_shard[call_of] = owner
    call_arrival = np.concatenate([adapter_done, credit_dispatch]) + s.hop.sample(noise, calls)
    call_done, shard_busy = _fifo_by(call_shard, scenario.shards, call_arrival, call_cost)

    # 4-5. Group commits and the adapters' callback records against the shared database.
    entry_ready = call_done[call_of]
    record_lane = np.concatenate([providers, np.full(credits, -1, dtype=np.int64)])
    ack = _group_commits(entry_ready, owner, record_lane, scenario.shards, config, noise)
    stats = ack["stats"]
    commit_done, record_done = ack["done"], ack["record_done"]

    # 6. The adapter answers a batch when all its requests are recorded (``gather``).
    batch_end = np.full(batches, -np.inf)
    np.maximum.at(batch_end, batch_of, record_done[:requests])
    answered = batch_end[batch_of]

    return {"replica_done": replica_done, "adapter_done": adapter_done, "entry_ready": entry_ready,
            "commit_done": commit_done, "record_done": record_done, "answered": answered,
            "owner": owner, "stats": stats, "calls": calls, "batches": batches,
            "replica_busy": replica_busy, "adapter_busy": adapter_busy, "shard_busy": shard_busy,
            "client_busy": 0.0}


def _event_path(p: _PathInputs, scenario: Scenario, config: CapacityConfig,
                noise: np.random.Generator) -> dict[str, Any]:
    """Steps 1-6 in one event loop (sims/event_model.py): shared cores, router in-flight
    limit, adapter work after the shard answer."""
    s = config.service
    requests = p.arrivals.shape[0]
    serve_cpu = s.serve_request.sample(noise, requests)
    adapter_cpu = s.adapter_request.sample(noise, requests)
    overheads = iter(s.actor_call.sample(noise, requests + 1).tolist())  # at most one per request
    credit_ready = p.credit_ready()
    credits = credit_ready.shape[0]
    credit_call_of, credit_dispatch = _coalesce(credit_ready, p.credit_table, p.credit_shard,
                                                s.coalesce_ms / 1000.0, scenario.tables)
    command_cpu = s.command.sample(noise, requests + credits)
    router_cpu = s.router_call.sample(noise, requests)
    credit_call_cpu = s.actor_call.sample(noise, credit_dispatch.shape[0])
    credit_call_cpu += np.bincount(credit_call_of, command_cpu[requests:], credit_dispatch.shape[0])
    members: list[list[int]] = [[] for _ in range(credit_dispatch.shape[0])]
    for credit, call in enumerate(credit_call_of.tolist()):
        members[call].append(credit)
    call_shard = np.zeros(credit_dispatch.shape[0], dtype=np.int64)
    call_shard[credit_call_of] = p.credit_shard
    hop = s.hop.mean_ms / 1000.0
    credit_calls = [(float(credit_dispatch[c]) + hop, int(call_shard[c]), float(credit_call_cpu[c]), members[c])
                    for c in range(credit_dispatch.shape[0])]
    after = s.adapter_after_share
    n = requests + credits
    events = simulate_events(EventInputs(
        arrivals=p.arrivals, replicas=p.replicas, providers=p.providers,
        shards=p.players % scenario.shards,
        client_cpu=s.client_request.sample(noise, requests), serve_cpu=serve_cpu,
        adapter_before_cpu=adapter_cpu * (1.0 - after), adapter_after_cpu=adapter_cpu * after,
        command_cpu=command_cpu[:requests], router_cpu=router_cpu,
        call_overhead=lambda: next(overheads),
        commit_factors=_unit_lognormal(noise, s.db_cv, n), record_factors=_unit_lognormal(noise, s.record_cv, n),
        credit_calls=credit_calls, credits=credits, n_replicas=scenario.replicas, n_shards=scenario.shards,
    ), s)
    counts, busy = events["counts"], events["busy"]
    return {
        "replica_done": events["replica_done"], "adapter_done": events["adapter_done"],
        "entry_ready": np.concatenate([events["entry_ready"], np.full(credits, np.nan)]),
        "commit_done": np.concatenate([events["commit_done"], events["credit_commit_done"]]),
        "record_done": events["record_done"], "answered": events["answered"],
        "owner": np.concatenate([p.players % scenario.shards, p.credit_shard]),
        "stats": {"db_busy": busy["db"], "commits": counts["commits"],
                  "record_writes": counts["record_writes"]},
        "calls": counts["router_requests"] + credit_dispatch.shape[0],
        "batches": counts["adapter_calls"],
        "replica_busy": busy["replica"], "adapter_busy": busy["adapter"], "shard_busy": busy["shard"],
        "client_busy": busy["client"],
    }


def _group_commits(
    ready: Floats, owner: Ints, record_lane: Ints, shards: int, config: CapacityConfig,
    noise: np.random.Generator,
) -> dict[str, Any]:
    """One event loop for everything that queues at the database: each shard's group commits
    (one in flight per shard) and each adapter's callback-record writes (entries with
    ``record_lane`` >= 0: a hop after its commit the record is pending; the adapter writes
    every pending record, up to ``record_batch_max``, in one INSERT, with at most
    ``record_writes_in_flight`` INSERTs out)."""
    s = config.service
    flush = s.flush_ms / 1000.0
    limit = s.max_group
    hop = s.hop.mean_ms / 1000.0
    order = np.lexsort((ready, owner))
    sorted_ready = ready[order]
    segments = _segments(owner[order], shards)
    # Unit-mean lognormal factors for commit times, drawn up front in a fixed order.
    factors = _unit_lognormal(noise, s.db_cv, ready.shape[0])
    record_factors = _unit_lognormal(noise, s.record_cv, ready.shape[0])
    times = sorted_ready.tolist()
    done_sorted = np.empty(ready.shape[0])
    record_done = np.full(ready.shape[0], np.nan)
    lanes = order_lanes = record_lane[order]

    def next_group(start: int, stop: int, previous_done: float) -> tuple[float, int]:
        last_needed = start + limit - 1
        full_at = times[last_needed] if last_needed < stop else math.inf
        close = max(previous_done, min(times[start] + flush, full_at))
        end = int(np.searchsorted(sorted_ready[start:stop], close, side="right")) + start
        return close, min(end, start + limit)

    # Events: (time, sequence, kind, lane, payload). kind 0: a shard submits a group
    # (payload (lo, hi) into ``order``); 1: records become pending (payload: entry rows);
    # 2: a recorder retries once one of its INSERTs finished.
    sequence = itertools.count()
    queue: list[tuple[float, int, int, int, Any]] = []
    for shard, (lo, hi) in enumerate(segments):
        if hi > lo:
            close, end = next_group(lo, hi, -math.inf)
            queue.append((close, next(sequence), 0, shard, (lo, end)))
    heapq.heapify(queue)
    servers = [0.0] * s.db_connections
    pending: dict[int, list[Ints]] = {}
    writing: dict[int, list[float]] = {}
    busy = 0.0
    commits = writes = 0

    def database(now: float, cost_ms: float) -> float:
        nonlocal busy
        free = heapq.heappop(servers)
        begin = max(now, free)
        finish = begin + cost_ms / 1000.0
        heapq.heappush(servers, finish)
        busy += finish - begin
        return finish

    def write_records(lane: int, now: float) -> None:
        nonlocal writes
        out = writing.setdefault(lane, [])
        out[:] = [t for t in out if t > now]
        waiting = pending.get(lane, [])
        while waiting and len(out) < s.record_writes_in_flight:
            rows = np.concatenate(waiting)
            batch, rest = rows[:s.record_batch_max], rows[s.record_batch_max:]
            waiting[:] = [rest] if rest.size else []
            cost = (s.record_fixed_ms + s.record_per_record_ms * batch.size) * record_factors[writes]
            finish = database(now, cost)
            writes += 1
            record_done[batch] = finish
            out.append(finish)
        if waiting:
            heapq.heappush(queue, (min(out), next(sequence), 2, lane, None))

    while queue:
        now, _, kind, lane, payload = heapq.heappop(queue)
        if kind == 0:
            lo, hi = payload
            finish = database(now, (s.db_fixed_ms + s.db_per_command_ms * (hi - lo)) * factors[commits])
            commits += 1
            done_sorted[lo:hi] = finish
            for provider in np.unique(order_lanes[lo:hi]):
                if provider >= 0:
                    rows = order[lo:hi][lanes[lo:hi] == provider]
                    heapq.heappush(queue, (finish + hop, next(sequence), 1, int(provider), rows))
            stop = segments[lane][1]
            if hi < stop:
                close, end = next_group(hi, stop, finish)
                heapq.heappush(queue, (close, next(sequence), 0, lane, (hi, end)))
        elif kind == 1:
            pending.setdefault(lane, []).append(payload)
            write_records(lane, now)
        else:
            write_records(lane, now)
    done = np.empty(ready.shape[0])
    done[order] = done_sorted
    return {"done": done, "record_done": record_done,
            "stats": {"db_busy": busy, "commits": commits, "record_writes": writes}}


def _unit_lognormal(noise: np.random.Generator, cv: float, count: int) -> list[float]:
    sigma2 = math.log1p(cv * cv)
    return list(np.asarray(noise.lognormal(-sigma2 / 2, math.sqrt(sigma2), size=count)).tolist())


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
