"""ray-rgs' own Prometheus metrics, recorded through Ray's metrics agent.

Every process records into ``ray.util.metrics``; Ray's per-node metrics agent merges them
and serves them, in Prometheus text format and with Ray's ``ray_`` prefix, on the node's
metrics export port (``ray start --metrics-export-port``, 8080 in ``ray-cluster.yaml``;
a random port locally, found in ``ray.nodes()[i]["MetricsExportPort"]``). It does so with
or without the dashboard. Counters gain a ``_total`` suffix on the way out, so
``rgs_wallet_requests`` is scraped as ``ray_rgs_wallet_requests_total``. Every series also
carries Ray's own labels (``WorkerId``, ``NodeAddress``, ...): sum over them in queries.

Labels stay low-cardinality on purpose: dialect, HTTP status, shard name, table id, round
phase, notary kind, limit scope. Never a player, ticket, round or IP: each distinct value
is a series held by every Prometheus for as long as it retains data.

Metrics are made on first use in each process, so importing this module costs nothing,
and recording without a Ray worker (plain-asyncio unit tests) is a no-op in Ray itself.

Shards are sampled rather than hooked: :func:`export_shard_metrics` reads the engine's
cumulative ``snapshot()`` every :data:`SHARD_SAMPLE_S` seconds and records what changed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ray.util.metrics import Counter, Gauge, Histogram

__all__ = [
    "METRIC_NAMES",
    "PEAK_WINDOW_S",
    "SHARD_SAMPLE_S",
    "ShardSampler",
    "WindowMax",
    "export_shard_metrics",
    "observe_chain_tx",
    "observe_settlement",
    "record_chain_backlog",
    "record_rate_limited",
    "record_round_phase",
    "record_wallet_request",
]

log = logging.getLogger("rgs.metrics")

SHARD_SAMPLE_S = 1.0
# Queues drain within milliseconds; a scrape of the instantaneous depth nearly always
# reads 0, so depth also has a gauge of its maximum over a window longer than a scrape.
PEAK_WINDOW_S = 60.0

# Seconds: wallet calls and journal commits live in milliseconds, settlement and chain
# transactions in seconds.
_FAST_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_BATCH_COMMANDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True)
class _Metrics:
    wallet_requests: Counter
    wallet_seconds: Histogram
    rate_limited: Counter
    journal_batches: Counter
    journal_commands: Counter
    journal_commit_seconds_total: Counter
    journal_batch_commands: Histogram
    journal_commit_seconds: Histogram
    shard_active_accounts: Gauge
    shard_mailbox_depth: Gauge
    shard_mailbox_peak: Gauge
    shard_busy_rejections: Counter
    rounds: Counter
    settlement_seconds: Histogram
    chain_tx_seconds: Histogram
    chain_backlog: Gauge
    chain_backlog_peak: Gauge


# Names as recorded; Prometheus sees them with the ray_ prefix (and _total on counters).
METRIC_NAMES: Mapping[str, str] = {
    "wallet_requests": "rgs_wallet_requests",
    "wallet_seconds": "rgs_wallet_request_seconds",
    "rate_limited": "rgs_rate_limited",
    "journal_batches": "rgs_journal_batches",
    "journal_commands": "rgs_journal_commands",
    "journal_commit_seconds_total": "rgs_journal_commit_busy_seconds",
    "journal_batch_commands": "rgs_journal_batch_commands",
    "journal_commit_seconds": "rgs_journal_commit_seconds",
    "shard_active_accounts": "rgs_shard_active_accounts",
    "shard_mailbox_depth": "rgs_shard_mailbox_depth",
    "shard_mailbox_peak": "rgs_shard_mailbox_depth_peak",
    "shard_busy_rejections": "rgs_shard_busy_rejections",
    "rounds": "rgs_rounds",
    "settlement_seconds": "rgs_settlement_seconds",
    "chain_tx_seconds": "rgs_chain_tx_seconds",
    "chain_backlog": "rgs_chain_backlog",
    "chain_backlog_peak": "rgs_chain_backlog_peak",
}

_made: _Metrics | None = None


def _metrics() -> _Metrics:
    global _made
    if _made is None:
        n = METRIC_NAMES
        _made = _Metrics(
            wallet_requests=Counter(
                n["wallet_requests"],
                "Seamless-wallet HTTP requests answered, by dialect and HTTP status.",
                ("dialect", "status"),
            ),
            wallet_seconds=Histogram(
                n["wallet_seconds"],
                "Seamless-wallet request time in the gateway, seconds.",
                list(_FAST_S),
                ("dialect",),
            ),
            rate_limited=Counter(
                n["rate_limited"],
                "Operator-API requests refused by a rate limit, by scope (ip, operator).",
                ("scope",),
            ),
            journal_batches=Counter(
                n["journal_batches"], "Journal batches committed by a shard.", ("shard",)
            ),
            journal_commands=Counter(
                n["journal_commands"],
                "Wallet commands committed by a shard (in batches).",
                ("shard",),
            ),
            journal_commit_seconds_total=Counter(
                n["journal_commit_seconds_total"],
                "Seconds a shard spent committing journal batches.",
                ("shard",),
            ),
            journal_batch_commands=Histogram(
                n["journal_batch_commands"],
                f"Mean commands per journal batch over each {SHARD_SAMPLE_S:g} s sample of a shard.",
                list(_BATCH_COMMANDS),
                ("shard",),
            ),
            journal_commit_seconds=Histogram(
                n["journal_commit_seconds"],
                f"Mean journal commit time per batch over each {SHARD_SAMPLE_S:g} s sample of a shard, seconds.",
                list(_FAST_S),
                ("shard",),
            ),
            shard_active_accounts=Gauge(
                n["shard_active_accounts"], "Virtual accounts loaded in a shard.", ("shard",)
            ),
            shard_mailbox_depth=Gauge(
                n["shard_mailbox_depth"],
                "Commands queued in a shard's account mailboxes.",
                ("shard",),
            ),
            shard_mailbox_peak=Gauge(
                n["shard_mailbox_peak"],
                f"Most commands queued at once in a shard's mailboxes over the last {PEAK_WINDOW_S:g} s.",
                ("shard",),
            ),
            shard_busy_rejections=Counter(
                n["shard_busy_rejections"],
                "Commands refused because an account mailbox was full.",
                ("shard",),
            ),
            rounds=Counter(
                n["rounds"], "Keno rounds entering each phase, by table.", ("table", "phase")
            ),
            settlement_seconds=Histogram(
                n["settlement_seconds"],
                "Time to settle a drawn round (tickets, credits, results), seconds.",
                list(_SLOW_S),
                ("table",),
            ),
            chain_tx_seconds=Histogram(
                n["chain_tx_seconds"],
                "Chain notary: send to receipt of one batch transaction, seconds.",
                list(_SLOW_S),
                ("kind",),
            ),
            chain_backlog=Gauge(
                n["chain_backlog"],
                "Chain notary: items queued or in flight, not yet on chain.",
                ("kind",),
            ),
            chain_backlog_peak=Gauge(
                n["chain_backlog_peak"],
                f"Chain notary: most items queued or in flight at once over the last {PEAK_WINDOW_S:g} s.",
                ("kind",),
            ),
        )
    return _made


# -- recording ------------------------------------------------------------------------------


def record_wallet_request(dialect: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.wallet_requests.inc(1, {"dialect": dialect, "status": str(status)})
    m.wallet_seconds.observe(seconds, {"dialect": dialect})


def record_rate_limited(scope: str) -> None:
    _metrics().rate_limited.inc(1, {"scope": scope})


def record_round_phase(table: str, phase: str) -> None:
    _metrics().rounds.inc(1, {"table": table, "phase": phase})


def observe_settlement(table: str, seconds: float) -> None:
    _metrics().settlement_seconds.observe(seconds, {"table": table})


def observe_chain_tx(kind: str, seconds: float) -> None:
    _metrics().chain_tx_seconds.observe(seconds, {"kind": kind})


class WindowMax:
    """The largest value seen over the last ``window_s`` seconds (times are the caller's
    monotonic clock). Keeps only values that can still be the maximum."""

    def __init__(self, window_s: float = PEAK_WINDOW_S) -> None:
        self.window_s = window_s
        self._values: collections.deque[tuple[float, float]] = collections.deque()

    def observe(self, value: float, now: float) -> float:
        while self._values and self._values[-1][1] <= value:
            self._values.pop()
        self._values.append((now, value))
        return self.value(now)

    def value(self, now: float) -> float:
        while self._values and self._values[0][0] <= now - self.window_s:
            self._values.popleft()
        return self._values[0][1] if self._values else 0.0


_backlog_peaks: dict[str, WindowMax] = {}


def record_chain_backlog(kind: str, items: int) -> None:
    m = _metrics()
    tags = {"kind": kind}
    m.chain_backlog.set(items, tags)
    peak = _backlog_peaks.setdefault(kind, WindowMax())
    m.chain_backlog_peak.set(peak.observe(items, time.monotonic()), tags)


# -- shards ---------------------------------------------------------------------------------


class ShardSampler:
    """Turns a shard engine's cumulative snapshots into metric records.

    The engine keeps running totals (batches, commands, commit seconds); each sample
    records the change since the previous one. Per-batch figures are not kept by the
    engine, so the two histograms get one observation per sample that saw batches: the
    sample's mean batch size and mean commit time. Exact rates and averages come from the
    three counters. A total that went down means the engine was replaced (a restart, a
    rebalance): its whole value is the change.
    """

    _TOTALS = ("batches", "commands", "commit_seconds", "busy_rejections")

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self._last: dict[str, float] = {}
        self._mailbox_peak = WindowMax()

    def sample(self, snapshot: Mapping[str, Any]) -> dict[str, float]:
        delta: dict[str, float] = {}
        for key in self._TOTALS:
            now = float(snapshot.get(key, 0) or 0)
            before = self._last.get(key, 0.0)
            delta[key] = now - before if now >= before else now
            self._last[key] = now
        m = _metrics()
        tags = {"shard": self.shard}
        m.shard_active_accounts.set(float(snapshot.get("active_accounts", 0) or 0), tags)
        depth = float(snapshot.get("mailbox_depth", 0) or 0)
        m.shard_mailbox_depth.set(depth, tags)
        peak = max(depth, float(snapshot.get("mailbox_peak", 0) or 0))
        m.shard_mailbox_peak.set(self._mailbox_peak.observe(peak, time.monotonic()), tags)
        if delta["busy_rejections"] > 0:
            m.shard_busy_rejections.inc(delta["busy_rejections"], tags)
        batches = delta["batches"]
        if batches > 0:
            m.journal_batches.inc(batches, tags)
            m.journal_commands.inc(delta["commands"], tags)
            m.journal_batch_commands.observe(delta["commands"] / batches, tags)
            if delta["commit_seconds"] > 0:
                m.journal_commit_seconds_total.inc(delta["commit_seconds"], tags)
                m.journal_commit_seconds.observe(delta["commit_seconds"] / batches, tags)
        return delta


def export_shard_metrics(
    shard: str, snapshot: Callable[[], Mapping[str, Any]], every_s: float = SHARD_SAMPLE_S
) -> asyncio.Task[None]:
    """Sample ``snapshot()`` every ``every_s`` seconds, forever, in the running event loop.

    ``snapshot`` is a callable so a shard that replaces its engine keeps being sampled.
    """
    sampler = ShardSampler(shard)

    async def run() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                sampler.sample(snapshot())
            except Exception:  # a metric must never take a shard down
                with contextlib.suppress(Exception):
                    log.exception("shard %s: metrics sample failed", shard)

    return asyncio.get_event_loop().create_task(run(), name=f"metrics-{shard}")
