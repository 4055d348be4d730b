"""``rgs status``: what a running ray-rgs stack is doing, asked of its actors.

Account shards (partitions and their fencing epochs, loaded accounts, queued commands,
process), Keno tables (the newest round and its phase, rounds in flight) and the chain
notary's backlog. It joins the Ray cluster as a short-lived driver: the local one
(``rgs up``), or any other with ``--address`` (``host:6379``, or ``ray://host:10001``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cli.base import add_json_flag, emit_json, fail

__all__ = ["collect_status", "register"]

_SCHEDULER_PREFIX = "round-scheduler-"


def register(sub: Any) -> None:
    parser = sub.add_parser("status", help="shards, tables and the chain notary of a running stack")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to ask (host:port of its GCS, or ray://host:port); default: RAY_ADDRESS, else the local one",
    )
    parser.add_argument(
        "--shard-prefix", default=None, help="names of the shard actors (default: account-shard-)"
    )
    parser.add_argument(
        "--notary", default=None, help="name of the chain notary actor (default: chain-notary)"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each actor (default 5)"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from actors.chain_notary import NOTARY_NAME
    from actors.shard import SHARD_PREFIX

    if args.timeout <= 0:
        fail("rgs status: --timeout must be positive")
    with _ray(args.address):
        report = collect_status(
            shard_prefix=args.shard_prefix or SHARD_PREFIX,
            notary=args.notary or NOTARY_NAME,
            timeout_s=args.timeout,
        )
    if not report["shards"] and not report["tables"] and report["notary"] is None:
        fail(
            f"rgs status: Ray is running at {report['cluster']} but no ray-rgs stack is (no shards, tables or"
            " notary in namespace rgs); start one with 'rgs up'",
            exit_code=1,
        )
    if args.json:
        emit_json(report)
    else:
        _print(report)
    return 0


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    import ray

    if ray.is_initialized():  # called in-process (tests, another command): use that Ray
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _check_reachable(target)
    try:
        ray.init(
            address=target,
            namespace="rgs",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if target == "auto" and "Could not find any running Ray instance" in str(exc):
            fail(
                "rgs status: no Ray cluster is running here; start the stack with 'rgs up', or pass --address"
            )
        if target == "auto":  # several local clusters, say: Ray's own words name them
            fail(f"rgs status: {str(exc).splitlines()[0]}")
        fail(f"rgs status: cannot join the Ray cluster at {target}: {str(exc).splitlines()[0]}")
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds: ``ray.init`` keeps retrying an unreachable address for minutes."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except OSError as exc:
        fail(f"rgs status: cannot reach a Ray cluster at {address}: {exc.strerror or exc}")


def collect_status(*, shard_prefix: str, notary: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask every actor of the stack in the connected Ray cluster; one JSON-ready dict."""
    import ray

    from actors.shard import NAMESPACE

    named = sorted(
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == NAMESPACE
    )
    shard_names = sorted(
        (n for n in named if n.startswith(shard_prefix) and n[len(shard_prefix) :].isdigit()),
        key=lambda n: int(n[len(shard_prefix) :]),
    )
    table_actors = [n for n in named if n.startswith(_SCHEDULER_PREFIX)]
    deadline = time.monotonic() + timeout_s

    def ask(name: str, method: str) -> Any:
        """The actor's answer, or an ``{"error": ...}`` dict (one sick actor spoils nothing)."""
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
            return ray.get(
                getattr(handle, method).remote(), timeout=max(0.5, deadline - time.monotonic())
            )
        except Exception as exc:
            return {
                "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
            }

    shards = [_shard_view(name, ask(name, "ready"), ask(name, "stats")) for name in shard_names]
    tables = [
        _table_view(name[len(_SCHEDULER_PREFIX) :], ask(name, "status")) for name in table_actors
    ]
    backlog = ask(notary, "backlog") if notary in named else None
    return {
        "cluster": _cluster_address(),
        "shards": shards,
        "tables": tables,
        "notary": None if backlog is None else {"name": notary, **backlog},
    }


def _cluster_address() -> str:
    import ray

    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # a Ray client connection has no GCS address of its own
        return os.environ.get("RAY_ADDRESS", "?")


def _shard_view(name: str, ready: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"name": name}
    errors = [d["error"] for d in (ready, stats) if "error" in d]
    if errors:
        view["error"] = errors[0]
    if "error" not in ready:
        epochs = {int(p): int(e) for p, e in dict(ready.get("epochs") or {}).items()}
        view.update(
            pid=ready.get("pid"), node=ready.get("node"), host=ready.get("host"), epochs=dict(sorted(epochs.items()))
        )
    if "error" not in stats:
        view.update(
            partitions=stats.get("partitions"),
            active_accounts=stats.get("active_accounts"),
            mailbox_depth=stats.get("mailbox_depth"),
            fenced=stats.get("fenced"),
        )
    return view


def _table_view(table_id: str, status: dict[str, Any]) -> dict[str, Any]:
    if "error" in status:
        return {"table_id": table_id, "error": status["error"]}
    rounds: dict[str, str] = dict(status.get("rounds") or {})
    finished = ("revealed", "voided")
    newest = max(rounds, key=_slot, default=None)
    return {
        "table_id": status.get("table_id", table_id),
        "enabled": status.get("enabled"),
        "disabled_reason": status.get("disabled_reason"),
        "open_round": status.get("open_round"),
        "current_round": newest,
        "current_phase": rounds.get(newest) if newest else None,
        "in_flight": {
            rid: phase
            for rid, phase in sorted(rounds.items(), key=lambda kv: _slot(kv[0]))
            if phase not in finished
        },
    }


def _slot(round_id: str) -> int:
    tail = round_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# -- text ----------------------------------------------------------------------------------


def _print(report: dict[str, Any], out: Callable[[str], None] = print) -> None:
    out(f"cluster  {report['cluster']}")
    out(f"shards   {len(report['shards'])}")
    for shard in report["shards"]:
        if "error" in shard and "epochs" not in shard:
            out(f"  {shard['name']:<20} unreachable: {shard['error']}")
            continue
        epochs: dict[int, int] = shard.get("epochs", {})
        fenced = f"  FENCED: {shard['fenced']}" if shard.get("fenced") else ""
        out(
            f"  {shard['name']:<20} host {shard.get('host')} pid {shard.get('pid')}  partitions {len(epochs)} {_partitions(epochs)}"
            f"  accounts {shard.get('active_accounts', '?')}  mailbox {shard.get('mailbox_depth', '?')}{fenced}"
        )
    out(f"tables   {len(report['tables'])}")
    for table in report["tables"]:
        if "error" in table:
            out(f"  {table['table_id']:<20} unreachable: {table['error']}")
            continue
        state = "enabled" if table["enabled"] else f"DISABLED ({table.get('disabled_reason')})"
        out(
            f"  {table['table_id']:<20} {state}  round {table['current_round'] or '-'}"
            f" {table['current_phase'] or ''}  open {table['open_round'] or '-'}  in flight {len(table['in_flight'])}"
        )
    notary = report["notary"]
    if notary is None:
        out("notary   not running")
    elif "error" in notary:
        out(f"notary   {notary['name']} unreachable: {notary['error']}")
    else:
        latency = notary.get("last_tx_latency_ms")
        out(
            f"notary   {notary['name']}  backlog: commits {notary.get('queued_commits', 0)}"
            f" (+{notary.get('in_flight_commits', 0)} in flight), reveals {notary.get('queued_reveals', 0)}"
            f" (+{notary.get('in_flight_reveals', 0)} in flight)  batches {notary.get('batches_sent', 0)}"
            f" ({notary.get('failed_batches', 0)} failed)  last tx "
            + ("-" if latency is None else f"{latency:.0f} ms")
        )
    sys.stdout.flush()


def _partitions(epochs: dict[int, int]) -> str:
    """``0-3,8 @ epoch 2``: ranges of partition numbers, grouped by epoch, shortened."""
    by_epoch: dict[int, list[int]] = {}
    for partition, epoch in sorted(epochs.items()):
        by_epoch.setdefault(epoch, []).append(partition)
    parts = []
    for epoch, partitions in sorted(by_epoch.items()):
        text = _ranges(partitions)
        if len(text) > 48:
            text = text[:45].rsplit(",", 1)[0] + ",..."
        parts.append(f"{text} @ epoch {epoch}")
    return "(" + "; ".join(parts) + ")" if parts else "(none)"


def _ranges(numbers: list[int]) -> str:
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
