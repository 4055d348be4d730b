"""Scaling the account shards live: move partitions between shard actors under traffic.

A rebalance to N shards moves every partition whose owner in the stored layout differs
from its owner in ``default_owners(partitions, N)`` (partition p on shard p mod N, the
layout N shards start with, so a later restart with N shards changes nothing). Going
from 2 to 4 moves half the partitions; from 4 back to 2 moves them back.

The steps, and why they are in this order:

1. **Lock.** One rebalance of a shard set at a time (a PostgreSQL session lock), and the
   layout is written only if its version is still the one the plan was made from.
2. **Start the new shards** (scaling up). They own nothing yet. They are detached actors:
   the process running the rebalance (a CLI) exits, and they must not go with it.
3. **Release** on every shard giving partitions away, concurrently: it refuses new
   commands for them at once ("not owned here": retryable, so routers resend), answers
   everything it had queued or in flight for them, and forgets their accounts. A shard
   that cannot drain in time keeps its partitions: they are left out of this rebalance.
4. **Store the new layout** (version + 1). From here a shard Ray restarts claims its new
   share, and routers asking ``routing()`` find the new owners.
5. **Adopt** on every receiving shard: it claims the partitions, which bumps their fencing
   epochs (any write from the previous owner would now be refused by PostgreSQL), and
   starts taking their commands.
6. **Remove the surplus shards** (scaling down): they own nothing now; drained, killed.

While a partition moves (steps 3 to 5, milliseconds to a few seconds) its commands are
answered "not owned here" and resent by the routers under the same idempotency keys: no
command fails and none runs twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.errors import RebalanceError
from actors.shard import NAMESPACE, SHARD_PREFIX, create_shard, default_owners, live_shards
from core.config import Config
from storage.errors import StorageError
from storage.journal import Journal, ShardLayout

__all__ = ["RebalanceReport", "rebalance"]

_READY_TIMEOUT_S = 120.0
_ADOPT_ATTEMPTS = 5


@dataclass
class RebalanceReport:
    shard_set: str
    shards_before: int
    shards_after: int
    version_before: int
    version_after: int
    moved: dict[int, tuple[str, str]] = field(default_factory=dict)  # partition -> (from, to)
    kept: dict[int, str] = field(default_factory=dict)  # partitions that could not move -> owner
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ownership: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    move_seconds: float = 0.0  # from the first release to the last adoption

    @property
    def ok(self) -> bool:
        return not self.errors and not self.kept

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "shard_set": self.shard_set,
            "shards_before": self.shards_before,
            "shards_after": self.shards_after,
            "layout_version_before": self.version_before,
            "layout_version_after": self.version_after,
            "partitions_moved": len(self.moved),
            "moves": [
                {"partition": p, "from": a, "to": b} for p, (a, b) in sorted(self.moved.items())
            ],
            "partitions_kept": {str(p): owner for p, owner in sorted(self.kept.items())},
            "added": self.added,
            "removed": self.removed,
            "errors": self.errors,
            "ownership": self.ownership,
            "seconds": round(self.seconds, 3),
            "move_seconds": round(self.move_seconds, 3),
        }


def _by_shard(partitions: dict[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for partition, shard in sorted(partitions.items()):
        grouped[shard].append(partition)
    return dict(grouped)


def _index(name: str, prefix: str) -> int:
    return int(name[len(prefix) :])


async def rebalance(
    config: Config,
    database_url: str,
    shards: int,
    *,
    prefix: str = SHARD_PREFIX,
    grace_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> RebalanceReport:
    """Move partitions so that ``shards`` shard actors own them (see the module docstring).

    Needs Ray initialised (namespace ``rgs``) and the shard set running. Raises
    :class:`RebalanceError` when nothing could be done (bad count, no shards, a concurrent
    rebalance); a partial outcome (some partitions kept by their owner) is reported.
    """
    say = progress or (lambda _line: None)
    partitions = config.partitions
    if not 1 <= shards <= partitions:
        raise RebalanceError(
            f"--shards must be between 1 and the partition count ({partitions}), not {shards}"
        )
    began = time.monotonic()
    journal = Journal(database_url, owner=f"rebalance/pid{os.getpid()}")
    try:
        try:
            if not await journal.try_lock_layout(prefix):
                raise RebalanceError(
                    f"another rebalance of {prefix}* is running; try again when it is done"
                )
            return await _rebalance(
                config, database_url, journal, shards, prefix, grace_s, say, began
            )
        except StorageError as exc:
            raise RebalanceError(f"rebalance stopped: {exc}") from exc
    finally:
        await journal.close()  # also lets go of the lock


async def _rebalance(
    config: Config,
    database_url: str,
    journal: Journal,
    shards: int,
    prefix: str,
    grace_s: float,
    say: Callable[[str], None],
    began: float,
) -> RebalanceReport:
    partitions = config.partitions
    live = await asyncio.to_thread(live_shards, prefix)
    if not live:
        raise RebalanceError(
            f"no shard actors named {prefix}N are running in namespace {NAMESPACE!r}"
        )
    stored = await journal.load_layout(prefix, partitions)
    layout = stored or ShardLayout(prefix, 0, default_owners(partitions, len(live), prefix))
    missing = sorted(set(layout.owners) - set(live), key=lambda n: _index(n, prefix))
    if missing:
        raise RebalanceError(
            f"the layout assigns partitions to {', '.join(missing)}, which are not running"
        )
    target = default_owners(partitions, shards, prefix)
    report = RebalanceReport(
        prefix, len(set(layout.owners)), shards, layout.version, layout.version
    )
    moves = {
        p: (old, new)
        for p, (old, new) in enumerate(zip(layout.owners, target, strict=True))
        if old != new
    }
    say(
        f"layout v{layout.version}: {report.shards_before} shard(s) -> {shards}; "
        f"{len(moves)} of {partitions} partitions to move"
    )

    handles = {
        name: await asyncio.to_thread(ray.get_actor, name, namespace=NAMESPACE) for name in live
    }
    added = [name for name in dict.fromkeys(target) if name not in handles]
    for name in added:
        handles[name] = create_shard(config, database_url, name, frozenset(), prefix, detached=True)
    if added:
        say(f"starting {', '.join(added)}")
        try:
            await asyncio.wait_for(
                asyncio.gather(*(handles[n].ready.remote() for n in added)), _READY_TIMEOUT_S
            )
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise RebalanceError(f"new shards did not start: {exc}") from exc
        report.added = added

    owners = list(layout.owners)
    move_began = time.monotonic()
    if moves:
        outgoing = _by_shard({p: old for p, (old, _) in moves.items()})
        say("releasing " + "; ".join(f"{n}: {len(ps)} partition(s)" for n, ps in outgoing.items()))
        released = await asyncio.gather(
            *(handles[name].release.remote(parts, grace_s) for name, parts in outgoing.items()),
            return_exceptions=True,
        )
        for (name, parts), outcome in zip(outgoing.items(), released, strict=True):
            if isinstance(outcome, BaseException):
                report.errors.append(f"{name} kept {parts}: {_first_line(outcome)}")
                report.kept.update(dict.fromkeys(parts, name))
                for p in parts:
                    del moves[p]
        for p, (_, new) in moves.items():
            owners[p] = new
        try:
            saved = await journal.save_layout(prefix, owners, expected_version=layout.version)
        except StorageError:
            # Nobody owns the released partitions now: give them back before giving up.
            await _give_back(handles, _by_shard({p: old for p, (old, _) in moves.items()}))
            raise
        report.version_after = saved.version
        incoming = _by_shard({p: new for p, (_, new) in moves.items()})
        say(
            f"layout v{saved.version} stored; "
            + "; ".join(f"{n} adopts {len(ps)}" for n, ps in incoming.items())
        )
        adopted = await asyncio.gather(
            *(_adopt(handles[name], parts) for name, parts in incoming.items()),
            return_exceptions=True,
        )
        for (name, parts), confirmation in zip(incoming.items(), adopted, strict=True):
            if isinstance(confirmation, BaseException):
                # The layout names it: when Ray brings it back it claims them by itself.
                report.errors.append(
                    f"{name} did not confirm adopting {parts}: {_first_line(confirmation)}"
                )
        report.moved = moves
    report.move_seconds = time.monotonic() - move_began

    surplus = [name for name in handles if name not in owners]
    for name in sorted(surplus, key=lambda n: _index(n, prefix)):
        say(f"draining and removing {name}")
        try:
            await asyncio.wait_for(handles[name].drain.remote(), grace_s + 5)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            report.errors.append(f"{name} did not drain cleanly before removal: {_first_line(exc)}")
        ray.kill(handles[name], no_restart=True)
        report.removed.append(name)
    report.ownership = {
        name: parts
        for name, parts in sorted(
            _by_shard(dict(enumerate(owners))).items(), key=lambda kv: _index(kv[0], prefix)
        )
    }
    report.seconds = time.monotonic() - began
    return report


async def _adopt(handle: Any, parts: list[int]) -> dict[str, Any]:
    """Adopt, waiting out a restart of the receiving shard (Ray brings it back)."""
    for attempt in range(_ADOPT_ATTEMPTS):
        try:
            result: dict[str, Any] = await handle.adopt.remote(parts)
            return result
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            if attempt == _ADOPT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def _give_back(handles: dict[str, Any], parts_by_shard: dict[str, list[int]]) -> None:
    await asyncio.gather(
        *(_adopt(handles[name], parts) for name, parts in parts_by_shard.items()),
        return_exceptions=True,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]
