"""Running simulation batches as Ray tasks, deterministically, with a progress bar.

A simulation is a list of batch specifications, each carrying its own seed. Whatever the
number of workers, :func:`run_batches` returns the results in specification order, so a
reduction over them in that order gives bit-identical figures on 1 worker or 100.
``workers=0`` runs the batches in this process, without Ray (quick runs, tests, benches).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

from sims import SimulationError

__all__ = ["Progress", "cluster_cpus", "ray_cluster", "run_batches", "seed_sequence"]

Spec = TypeVar("Spec")
Result = TypeVar("Result")


def seed_sequence(seed: int, *key: int) -> Any:
    """The seed of one batch: ``SeedSequence(seed)`` spawned along ``key`` (e.g. batch index).

    Spawn keys give statistically independent streams for every key, and depend on
    nothing but ``seed`` and ``key``: the base of determinism across worker counts.
    """
    import numpy as np

    if seed < 0:
        raise SimulationError(f"seed must be >= 0, got {seed}")
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(key))


class Progress:
    """A one-line progress bar on stderr, shown only once a run has lasted ``delay`` s.

    On a terminal the line is redrawn in place; otherwise (CI logs, pipes) a line is
    printed at most every 10% so logs stay short. Never writes to stdout, which belongs
    to ``--json``.
    """

    def __init__(
        self,
        total: float,
        unit: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        delay: float = 1.0,
    ) -> None:
        self.total = max(float(total), 1e-12)
        self.unit = unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.done = 0.0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._shown = False

    def advance(self, amount: float) -> None:
        self.done += amount
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self._start
        if elapsed < self.delay:
            return
        fraction = min(1.0, self.done / self.total)
        if self.stream.isatty():
            if now - self._last_draw >= 0.1 or fraction >= 1.0:
                self._draw(fraction, elapsed, end="\r")
        else:
            decile = int(fraction * 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self._draw(fraction, elapsed, end="\n")

    def _draw(self, fraction: float, elapsed: float, *, end: str) -> None:
        width = 30
        filled = round(fraction * width)
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        self.stream.write(
            f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} "
            f"{_short(self.done)}/{_short(self.total)} {self.unit} "
            f"{elapsed:6.1f}s eta {eta:5.1f}s{end}"
        )
        self.stream.flush()
        self._last_draw = time.perf_counter()
        self._shown = True

    def close(self) -> None:
        if self._shown and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()


def _short(value: float) -> str:
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


@contextmanager
def ray_cluster(address: str | None = None) -> Iterator[None]:
    """Ray for the duration of a command: the one already initialised, else ``address``,
    else ``RAY_ADDRESS``, else a new local Ray that is shut down on exit."""
    import ray

    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target is not None:
        _check_reachable(target)
    try:
        ray.init(
            address=target,
            namespace="rgs",
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = target or "a new local Ray"
        raise SimulationError(f"cannot start or reach Ray ({where}): {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes: ``ray.init`` retries an unreachable GCS for long."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" or another form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise SimulationError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def cluster_cpus() -> int:
    """CPUs Ray reports for the cluster (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


_REMOTES: dict[Callable[..., Any], Any] = {}


def _remote(function: Callable[..., Any]) -> Any:
    import ray

    if function not in _REMOTES:
        # One CPU per task: batches are single-threaded numpy, so more tasks than cores
        # would only make them fight for the same cores.
        _REMOTES[function] = ray.remote(num_cpus=1, max_retries=2)(function)
    return _REMOTES[function]


def run_batches(
    function: Callable[..., Result],
    specs: Sequence[Spec],
    *,
    workers: int,
    progress: Progress | None = None,
    weight: Callable[[Spec], float] = lambda _spec: 1.0,
    shared: Any = None,
) -> list[Result]:
    """``[function(spec) for spec in specs]``, with at most ``workers`` Ray tasks in flight.

    Results come back in ``specs`` order whatever order the tasks finish in. ``shared``
    (e.g. a ticket book's arrays), when given, is passed as a second argument; it is put
    in Ray's object store once, not shipped with every task.
    """
    extra: tuple[Any, ...] = () if shared is None else (shared,)
    if workers < 0:
        raise SimulationError(f"workers must be >= 0, got {workers}")
    results: list[Any] = [None] * len(specs)
    if workers == 0:
        for index, spec in enumerate(specs):
            results[index] = function(spec, *extra)
            if progress is not None:
                progress.advance(weight(spec))
        return results

    import ray

    remote = _remote(function)
    if extra:
        extra = (ray.put(shared),)
    in_flight: dict[Any, int] = {}
    next_index = 0
    while next_index < len(specs) or in_flight:
        while next_index < len(specs) and len(in_flight) < workers:
            in_flight[remote.remote(specs[next_index], *extra)] = next_index
            next_index += 1
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            index = in_flight.pop(ref)
            results[index] = ray.get(ref)
            if progress is not None:
                progress.advance(weight(specs[index]))
    return results
