"""Small builders shared by tests."""

from __future__ import annotations

import time
from typing import Any

from core.wallet import Command, CommandKind

OPERATOR = "op-test"


def cmd(kind: str, player: str = "alice", key: str = "", amount: int = 0, **kw: object) -> Command:
    """A wallet command of the test operator, EUR unless ``currency=`` says otherwise."""
    currency = str(kw.pop("currency", "EUR"))
    return Command(CommandKind(kind), OPERATOR, player, currency, key, amount, **kw)  # type: ignore[arg-type]


def kill_and_wait_for_restart(shard: Any, timeout_s: float = 60.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Kill a shard actor (Ray restarts it) and wait for its next life to answer ``ready``:
    ``(ready before, ready after)``. ``ray.kill`` returns before the process is gone, so
    the new life is told from the old by its pid."""
    import ray

    first = ray.get(shard.ready.remote())
    ray.kill(shard, no_restart=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            again = ray.get(shard.ready.remote(), timeout=30)
            if again["pid"] != first["pid"]:
                return first, again
        except ray.exceptions.RayActorError:
            pass
        assert time.monotonic() < deadline, "the shard did not come back"
        time.sleep(0.2)
