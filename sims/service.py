"""Inputs of the capacity model: service times, workload shape and deployment sizes.

Defaults ship in ``sims/data/service_times.json`` (each figure states its source). A
``--service-times FILE`` overrides any subset of them. The file is either

* an object shaped like the shipped one (``{"service": {...}, "workload": {...},
  "deployment": {...}}``), or
* the output of ``rgs bench NAME --json`` (one object, a list of them, or one per line):
  every result carrying a ``"service_times"`` object contributes it as overrides, in
  file order, so a benchmark of the real stack can feed the model directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sims import SimulationError
from sims.files import load_json

__all__ = [
    "DEFAULT_FILE",
    "CapacityConfig",
    "Deployment",
    "Duration",
    "ServiceTimes",
    "Workload",
    "load_config",
]

DEFAULT_FILE = Path(__file__).with_name("data") / "service_times.json"


@dataclass(frozen=True)
class Duration:
    """A random duration: lognormal with the given mean (ms) and coefficient of variation."""

    mean_ms: float
    cv: float = 0.0

    def sample(self, rng: np.random.Generator, count: int) -> npt.NDArray[np.float64]:
        """``count`` durations in seconds."""
        mean = self.mean_ms / 1000.0
        if self.cv <= 0 or mean <= 0:
            return np.full(count, mean)
        sigma2 = math.log1p(self.cv * self.cv)
        return rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=count)


@dataclass(frozen=True)
class ServiceTimes:
    serve_request: Duration
    actor_call: Duration
    command: Duration
    db_fixed_ms: float
    db_per_command_ms: float
    db_cv: float
    db_connections: int
    hop: Duration
    settlement_per_ticket: Duration
    flush_ms: float
    max_group: int
    coalesce_ms: float
    # The provider-adapter stage (actors/provider_adapter.py, serve/wallet.py).
    adapter_request: Duration
    router_call: Duration
    record_fixed_ms: float
    record_per_record_ms: float
    record_cv: float
    record_writes_in_flight: int
    record_batch_max: int
    serve_batch_wait_ms: float
    serve_batch_max: int
    providers: int
    # Mechanisms only the event loop expresses (sims/event_model.py); these defaults turn
    # them off and keep the closed-form model.
    #: Cores of the one node every process shares (0: each process has a core of its own).
    node_cores: int = 0
    #: The load generator's CPU per request on that node (0: it runs elsewhere).
    client_request: Duration = Duration(0.0)
    #: Requests a router keeps out per shard (0: unlimited, one request per command).
    router_in_flight: int = 0
    #: Share of ``adapter_request`` run after the shard answers (0: all before the call).
    adapter_after_share: float = 0.0

    @property
    def needs_event_loop(self) -> bool:
        return (self.node_cores > 0 or self.router_in_flight > 0 or self.adapter_after_share > 0
                or self.client_request.mean_ms > 0)

    def db_capacity_per_s(self) -> float:
        """Most commands per second the database commits, with full groups."""
        per_commit_s = (self.db_fixed_ms + self.db_per_command_ms * self.max_group) / 1000.0
        return self.db_connections * self.max_group / per_commit_s


@dataclass(frozen=True)
class Workload:
    daily_amplitude: float
    peak_hour: float
    round_seconds: float
    close_seconds: float
    close_rush: float
    burst_multiplier: float
    burst_seconds: float
    win_fraction: float
    window_seconds: float
    warmup_seconds: float
    #: True: the Keno round scheduler credits each round's winners at its end. False: no
    #: round-end credits; each win arrives instead as its own wallet request (a seamless-
    #: wallet provider's win callback, as ``rgs bench wallet`` sends it).
    settlement: bool = True
    #: 0: Poisson arrivals shaped as above. N > 0: a paced load generator of N workers
    #: started together, as `rgs bench wallet` before its pacing was staggered: all N send
    #: at once every N / rate seconds (flat load; exact while answers come back within it).
    client_workers: int = 0


@dataclass(frozen=True)
class Deployment:
    cores_per_node: int
    cpus_per_replica: float
    cpus_per_shard: float
    cpus_per_table: float
    fixed_cpus: float
    max_replicas: int
    max_shards: int

    def nodes(self, *, replicas: int, shards: int, tables: int) -> int:
        cpus = (replicas * self.cpus_per_replica + shards * self.cpus_per_shard
                + tables * self.cpus_per_table + self.fixed_cpus)
        return max(1, math.ceil(cpus / self.cores_per_node - 1e-9))


@dataclass(frozen=True)
class CapacityConfig:
    service: ServiceTimes
    workload: Workload
    deployment: Deployment
    sources: tuple[str, ...]


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise SimulationError(f"{where}: unknown key {key!r} (expected: {', '.join(sorted(base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise SimulationError(f"{where}.{key}: expected an object")
            merged[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def _overrides(document: Any, where: str) -> list[Mapping[str, Any]]:
    results = document if isinstance(document, list) else [document]
    found = []
    for item in results:
        if not isinstance(item, Mapping):
            raise SimulationError(f"{where}: expected JSON objects")
        if "ours" in item and "name" in item:  # an `rgs bench --json` result
            if isinstance(item.get("service_times"), Mapping):
                found.append(item["service_times"])
        else:
            found.append(item)
    return found


def _number(section: Mapping[str, Any], key: str, where: str, *, low: float = 0.0,
            high: float = math.inf) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SimulationError(f"{where}.{key}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def _flag(section: Mapping[str, Any], key: str, where: str) -> bool:
    value = section.get(key)
    if not isinstance(value, bool):
        raise SimulationError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _duration(section: Mapping[str, Any], key: str, where: str) -> Duration:
    item = section[key]
    return Duration(_number(item, "mean", f"{where}.{key}"),
                    _number(item, "cv", f"{where}.{key}", high=10.0))


def load_config(path: str | Path | None = None) -> CapacityConfig:
    """Shipped defaults, overridden by ``path`` when given."""
    defaults = load_json(DEFAULT_FILE, "shipped service times")
    merged = {k: v for k, v in defaults.items() if k != "source"}
    sources = [f"defaults: {DEFAULT_FILE.name}"]
    if path is not None:
        where = f"service-times file {path}"
        try:
            document = load_json(path, "service-times file")
        except SimulationError:
            # `rgs bench --json` appended run after run: one JSON object per line.
            lines = Path(path).read_text(encoding="utf-8").splitlines() if Path(path).is_file() else []
            try:
                document = [json.loads(line) for line in lines if line.strip()]
            except json.JSONDecodeError:
                document = None
            if not document:
                raise
        for override in _overrides(document, where):
            merged = _merge(merged, {k: v for k, v in override.items() if k != "source"}, where)
        sources.append(f"overrides: {path}")
    s, w, d = merged["service"], merged["workload"], merged["deployment"]
    at = "service"
    commit, record, adapter, cpu = s["db_commit_ms"], s["record_commit_ms"], s["adapter"], s["cpu"]
    service = ServiceTimes(
        serve_request=_duration(s, "serve_request_ms", at),
        actor_call=_duration(s, "actor_call_ms", at),
        command=_duration(s, "command_ms", at),
        db_fixed_ms=_number(commit, "fixed", f"{at}.db_commit_ms"),
        db_per_command_ms=_number(commit, "per_command", f"{at}.db_commit_ms"),
        db_cv=_number(commit, "cv", f"{at}.db_commit_ms", high=10.0),
        db_connections=int(_number(s, "db_connections", at, low=1, high=1024)),
        hop=_duration(s, "hop_ms", at),
        settlement_per_ticket=_duration(s, "settlement_ms_per_ticket", at),
        flush_ms=_number(s["group_commit"], "flush_ms", f"{at}.group_commit"),
        max_group=int(_number(s["group_commit"], "max_entries", f"{at}.group_commit", low=1,
                              high=100_000)),
        coalesce_ms=_number(s["group_commit"], "call_coalesce_ms", f"{at}.group_commit",
                            low=0.01, high=10_000.0),
        adapter_request=_duration(s, "adapter_request_ms", at),
        router_call=_duration(s, "router_call_ms", at),
        record_fixed_ms=_number(record, "fixed", f"{at}.record_commit_ms"),
        record_per_record_ms=_number(record, "per_record", f"{at}.record_commit_ms"),
        record_cv=_number(record, "cv", f"{at}.record_commit_ms", high=10.0),
        record_writes_in_flight=int(_number(adapter, "record_writes_in_flight", f"{at}.adapter",
                                            low=1, high=1024)),
        record_batch_max=int(_number(adapter, "record_batch_max", f"{at}.adapter", low=1,
                                     high=1_000_000)),
        serve_batch_wait_ms=_number(adapter, "serve_batch_wait_ms", f"{at}.adapter", low=0.01,
                                    high=10_000.0),
        serve_batch_max=int(_number(adapter, "serve_batch_max", f"{at}.adapter", low=1,
                                    high=100_000)),
        providers=int(_number(adapter, "providers", f"{at}.adapter", low=1, high=10_000)),
        node_cores=int(_number(cpu, "node_cores", f"{at}.cpu", high=1024)),
        client_request=_duration(cpu, "client_request_ms", f"{at}.cpu"),
        router_in_flight=int(_number(adapter, "router_in_flight", f"{at}.adapter", high=1024)),
        adapter_after_share=_number(adapter, "after_shard_share", f"{at}.adapter", high=1.0),
    )
    at = "workload"
    workload = Workload(
        daily_amplitude=_number(w, "daily_amplitude", at, high=0.99),
        peak_hour=_number(w, "peak_hour", at, high=24.0),
        round_seconds=_number(w, "round_seconds", at, low=0.1, high=3600.0),
        close_seconds=_number(w, "close_seconds", at, high=3600.0),
        close_rush=_number(w, "close_rush", at, low=0.01, high=100.0),
        burst_multiplier=_number(w, "burst_multiplier", at, low=1.0, high=100.0),
        burst_seconds=_number(w, "burst_seconds", at, high=86_400.0),
        win_fraction=_number(w, "win_fraction", at, high=1.0),
        window_seconds=_number(w, "window_seconds", at, low=1.0, high=86_400.0),
        warmup_seconds=_number(w, "warmup_seconds", at, high=86_400.0),
        settlement=_flag(w, "settlement", at),
        client_workers=int(_number(w, "client_workers", at, high=100_000)),
    )
    if workload.close_seconds >= workload.round_seconds:
        raise SimulationError("workload: close_seconds must be shorter than round_seconds")
    if workload.warmup_seconds >= workload.window_seconds:
        raise SimulationError("workload: warmup_seconds must be shorter than window_seconds")
    at = "deployment"
    deployment = Deployment(
        cores_per_node=int(_number(d, "cores_per_node", at, low=1, high=1024)),
        cpus_per_replica=_number(d, "cpus_per_replica", at),
        cpus_per_shard=_number(d, "cpus_per_shard", at),
        cpus_per_table=_number(d, "cpus_per_table", at),
        fixed_cpus=_number(d, "fixed_cpus", at),
        max_replicas=int(_number(d, "max_replicas", at, low=1, high=100_000)),
        max_shards=int(_number(d, "max_shards", at, low=1, high=100_000)),
    )
    return CapacityConfig(service, workload, deployment, tuple(sources))
