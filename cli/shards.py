"""``rgs shards``: the account shards of a running stack.

``rgs shards rebalance --shards N`` moves partitions between shard actors while traffic
flows (see ``actors.rebalance``): shards are added or removed, no command fails. ``rgs
shards list`` shows who owns what. Both join the running Ray (``--address``, else
``RAY_ADDRESS``, else the local one ``rgs up`` started) and its PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail, load_cli_config
from core.config import Config

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("shards", help="the account shards of a running stack: list, rebalance")
    shards_sub = parser.add_subparsers(
        dest="shards_command", metavar="ACTION", parser_class=type(parser)
    )
    shards_sub.required = True

    rebalance = shards_sub.add_parser(
        "rebalance", help="move partitions so that N shard actors own them, while traffic flows"
    )
    rebalance.add_argument(
        "--shards", type=int, required=True, metavar="N", help="shard actors wanted"
    )
    rebalance.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a shard may take to answer what it holds for a partition it gives away (default 10)",
    )
    _common(rebalance)
    rebalance.set_defaults(handler=_rebalance)

    listing = shards_sub.add_parser(
        "list", help="the shard actors running and the partitions each owns"
    )
    _common(listing)
    listing.set_defaults(handler=_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else the local rgs up's)",
    )
    parser.add_argument(
        "--database-url", default=None, help="default: DATABASE_URL or the embedded server"
    )
    add_config_flag(parser)
    add_json_flag(parser)


def _rebalance(args: argparse.Namespace) -> int:
    from actors.errors import ActorError
    from actors.rebalance import rebalance
    from storage.database import resolve_database

    config = load_cli_config(args)
    if args.shards < 1:
        fail(f"rgs shards rebalance: --shards must be at least 1, not {args.shards}")
    if args.grace <= 0:
        fail("rgs shards rebalance: --grace must be positive")
    _join_ray(args.address, config)
    _check_partitions(config)
    url, server = resolve_database(args.database_url or config.database_url, config.pg_data_dir)

    def progress(line: str) -> None:
        print(f"rgs shards: {line}", file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        report = asyncio.run(
            rebalance(config, url, args.shards, grace_s=args.grace, progress=progress)
        )
    except ActorError as exc:
        fail(f"rgs shards rebalance: {exc}")
    finally:
        if server is not None:
            server.stop()
    if args.json:
        emit_json(report.to_json())
    else:
        print(
            f"moved {len(report.moved)} partition(s) in {report.move_seconds:.3f} s "
            f"(rebalance {report.seconds:.2f} s); {report.shards_before} -> {report.shards_after} shard(s), "
            f"layout v{report.version_before} -> v{report.version_after}"
        )
        for name in report.added:
            print(f"  added    {name}")
        for name in report.removed:
            print(f"  removed  {name}")
        for name, parts in report.ownership.items():
            print(f"  {name:<24} {len(parts):>4} partition(s)  {_ranges(parts)}")
        for error in report.errors:
            print(f"  problem: {error}")
    return 0 if report.ok else 1


def _list(args: argparse.Namespace) -> int:
    import ray

    from actors.shard import NAMESPACE, SHARD_PREFIX, live_shards

    config = load_cli_config(args)
    _join_ray(args.address, config)
    names = live_shards(SHARD_PREFIX)
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            info = _ready(name, NAMESPACE, 30)
            rows.append(
                {
                    "name": name,
                    "pid": info["pid"],
                    "partitions": sorted(int(p) for p in info["epochs"]),
                }
            )
        except (ray.exceptions.RayError, TimeoutError, ValueError) as exc:
            rows.append({"name": name, "error": str(exc).strip().splitlines()[-1][:200]})
    if args.json:
        emit_json({"shards": rows})
        return 0
    if not rows:
        print(f"no shard actors named {SHARD_PREFIX}N are running")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<24} unreachable: {row['error']}")
        else:
            print(
                f"{row['name']:<24} pid {row['pid']:<8} {len(row['partitions']):>4} partition(s)  {_ranges(row['partitions'])}"
            )
    return 0


def _ready(name: str, namespace: str, timeout: float) -> dict[str, Any]:
    import ray

    ref: Any = ray.get_actor(name, namespace=namespace).ready.remote()
    info: dict[str, Any] = ray.get(ref, timeout=timeout)
    return info


def _ranges(parts: list[int]) -> str:
    """``[0, 2, 4, 6]`` as ``0,2,4,6``; long lists shortened."""
    text = ",".join(str(p) for p in parts)
    return text if len(text) <= 60 else text[:57] + "..."


def _join_ray(address: str | None, config: Config) -> None:
    import ray

    if ray.is_initialized():  # called from a process already on the cluster (tests, scripts)
        return
    target = address or os.environ.get("RAY_ADDRESS") or config.ray_address
    if target is None and (target := _stack_address(config)) is not None:
        _local_token_mode()
    target = target or "auto"
    try:
        ray.init(
            address=target,
            namespace="rgs",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        fail(
            f"rgs shards: no running Ray at {target} ({str(exc).strip().splitlines()[0][:200]}); "
            "start the stack with 'rgs up' or pass --address (a cluster with token authentication "
            "also needs RAY_AUTH_MODE=token and its token)"
        )


def _local_token_mode() -> None:
    """Join a local Ray the way its starter did: with token authentication.

    A local cluster started by ``ray.init`` (``rgs up``) uses token authentication since
    Ray 2.59, with the token Ray keeps for local use; a client must be in token mode too.
    The documented switch, ``RAY_AUTH_MODE=token``, is read when Ray is imported, which
    every ``rgs`` command has done by now, so Ray's own helper that turns it on (if the
    user has not chosen a mode and a local token exists) is called instead. It is private
    Ray API: if it moves, ``RAY_AUTH_MODE=token rgs shards ...`` still works.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    with contextlib.suppress(Exception):
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _stack_address(config: Config) -> str | None:
    """The Ray address a local ``rgs up`` with this state folder wrote down, if it runs."""
    try:
        return (config.state_dir / "ray-address").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _check_partitions(config: Config) -> None:
    """The shards' partition count, not the local configuration's, is the truth."""
    import ray

    from actors.shard import NAMESPACE, SHARD_PREFIX, live_shards

    names = live_shards(SHARD_PREFIX)
    if not names:
        fail(
            f"rgs shards: no shard actors named {SHARD_PREFIX}N are running; start the stack with 'rgs up'"
        )
    try:
        info = _ready(names[0], NAMESPACE, 60)
    except (ray.exceptions.RayError, TimeoutError, ValueError) as exc:
        fail(f"rgs shards: {names[0]} does not answer: {str(exc).strip().splitlines()[-1][:200]}")
    if info.get("partitions", config.partitions) != config.partitions:
        fail(
            f"rgs shards: the running shards have {info['partitions']} partitions, this configuration says "
            f"{config.partitions}; use the configuration the stack was started with (--config or the environment)"
        )
