"""``rgs up``: start the whole stack on embedded defaults (or external services) and stay up.

Ray: local, or ``RAY_ADDRESS``. PostgreSQL: embedded under the state folder, or
``DATABASE_URL``. Everything this command started is stopped on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from actors.shard import SHARD_PREFIX, ShardSet, start_shards
from cli.base import add_config_flag, fail, load_cli_config
from core.config import Config
from storage.database import migrate, resolve_database
from storage.embedded import EmbeddedPostgres
from storage.redis_store import redact_redis_url, resolve_redis

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("up", help="start ray-rgs and stay up until Ctrl-C")
    add_config_flag(parser)
    parser.add_argument("--shards", type=int, default=None, help="account shard actors")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also serve the wallet over HTTP with a demo operator, providers and funded players "
        "(written to <state>/demo.json)",
    )
    parser.add_argument(
        "--no-rounds", action="store_true", help="do not run Keno tables (no chain, no notary, no schedulers)"
    )
    parser.add_argument(
        "--exit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this long (for scripts and smoke tests)",
    )
    parser.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    config = load_cli_config(args, shards=args.shards)
    if args.demo:
        _check_port_free(config.http_host, config.http_port)  # before starting anything
    stop_requested = _install_stop_handlers()
    started: list[tuple[str, Any]] = []
    try:
        _say(f"state folder  {config.state_dir.absolute()}")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        url, server = resolve_database(config.database_url, config.pg_data_dir)
        if server is not None:
            started.append(("embedded PostgreSQL", server))
        applied = asyncio.run(migrate(url))
        where = f"embedded, data in {config.pg_data_dir}" if server else "external DATABASE_URL"
        _say(f"postgres      {url} ({where}); {len(applied)} migration(s) applied")

        ray = _start_ray(config)
        started.append(("Ray", ray))
        # Ray's core worker installs its own SIGTERM handler (which aborts the process):
        # take SIGTERM back so it stops what we started, like Ctrl-C.
        stop_requested = _install_stop_handlers(stop_requested)
        context = ray.get_runtime_context()
        _say(f"ray           {'joined ' + config.ray_address if config.ray_address else 'local'}"
             f" (node {context.get_node_id()[:12]}, namespace {context.namespace}, address {context.gcs_address})")
        # Where other rgs commands (rgs shards ...) find this stack's Ray by default.
        _ray_address_file(config).write_text(context.gcs_address + "\n", encoding="utf-8")
        started.append(("Ray address file", _Stoppable(lambda: _ray_address_file(config).unlink(missing_ok=True))))
        redis_url, redis_server = resolve_redis(config.redis_url, config.state_dir / "redis")
        if redis_server is not None:
            started.append(("embedded Redis", _Stoppable(redis_server.stop)))
        _say(f"redis         {redact_redis_url(redis_url)} ({'embedded' if redis_server else 'external REDIS_URL'})")
        shards = start_shards(config, url)
        started.append(("account shards", shards))
        _say(f"shards        {len(shards)} x AccountShard ({SHARD_PREFIX}0..{len(shards) - 1}), "
             f"{config.partitions} partitions, group commit up to {config.group_commit_max} commands")
        games = _Games(config)
        if not args.no_rounds:
            started.extend(_start_rounds(config, url, shards, redis_url, games))
        if args.demo:
            # Held here for as long as we run: Ray stops an actor once no handle is left.
            started.append(("provider adapters", _Actors(_start_demo(config, url, shards, redis_url, games))))
            started.append(("Serve", _ServeStopper()))
        _say("up. Ctrl-C stops everything started here.")
        deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
        while not stop_requested():
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        _stop_all(started)
    return 0


def _start_ray(config: Config) -> Any:
    import os

    import ray

    # Serve's proxy as measured here: the default collapses under concurrency, these two
    # settings reach 2-3k req/s. Read by processes Ray starts, so set before ray.init.
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")

    ray.init(
        address=config.ray_address,
        namespace="rgs",
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    return ray


def _ray_address_file(config: Config) -> Any:
    return config.state_dir / "ray-address"


def _stop_all(started: list[tuple[str, Any]]) -> None:
    for name, thing in reversed(started):
        with contextlib.suppress(Exception):
            _say(f"stopping {name}")
            if isinstance(thing, EmbeddedPostgres):
                thing.stop()
            elif isinstance(thing, ShardSet):
                _drain(thing)
            else:
                thing.shutdown()
    _say("stopped")


class _Actors:
    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    def shutdown(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle, no_restart=True)


class _ServeStopper:
    def shutdown(self) -> None:
        from ray import serve

        serve.shutdown()


def _check_port_free(host: str, port: int) -> None:
    """Serve's proxy only logs a bind failure and keeps going; say it plainly instead."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(
                f"rgs up: cannot serve HTTP on {host}:{port} ({exc.strerror}); stop what holds it "
                "or choose another port with RGS_HTTP_PORT=..."
            )


def _start_demo(config: Config, database_url: str, shards: ShardSet, redis_url: str, games: _Games) -> list[Any]:
    from ray import serve

    from serve.demo import provision_demo, start_adapters
    from serve.operator_api import OperatorApi
    from serve.wallet import WalletGateway

    base_url = f"http://{config.http_host}:{config.http_port}"
    path, demo, providers = asyncio.run(provision_demo(config, database_url, shards, base_url, games.seed_key))
    adapters = start_adapters(providers, database_url, shards)
    serve.start(http_options={"host": config.http_host, "port": config.http_port, "request_timeout_s": 10})
    routes = {f"/wallet/{p.provider_id}": {"provider_id": p.provider_id, "dialect": p.dialect} for p in providers}
    serve.run(WalletGateway.bind(routes), name="wallet", route_prefix="/wallet")  # type: ignore[attr-defined]
    _say(f"wallet        {base_url}/wallet/hub88 (Hub88), {base_url}/wallet/softswiss (SoftSwiss GIS)")
    settings = {
        "database_url": database_url,
        "redis_url": redis_url,
        "seed_key_hex": games.seed_key,
        "shards": len(shards),
        "partitions": shards.partitions,
        "shard_prefix": shards.prefix,
        "tables": [t.to_mapping() for t in games.tables],
        "paytables": {t.paytable_set: games.documents[t.paytable_set] for t in games.tables},
        "ip_limit_per_min": config.api_ip_limit_per_min,
        "trust_forwarded_for": config.trust_forwarded_for,
        "token_ttl_s": config.api_token_ttl_s,
    }
    serve.run(OperatorApi.bind(settings), name="operator", route_prefix="/api")  # type: ignore[attr-defined]
    _say(f"operator API  {base_url}/api (OpenAPI at {base_url}/api/openapi.json; WebSocket {base_url}/api/ws/rounds)")
    _say(f"demo          {len(demo['players'])} players funded with 1,000,000.00 EUR; credentials in {path}")
    return adapters


class _Games:
    """Tables, paytables and the seed key, loaded and validated once."""

    def __init__(self, config: Config) -> None:
        from storage.games import load_paytable_documents, load_tables
        from storage.keys import seed_key_hex

        self.tables = load_tables(config.tables_file)
        self.documents = load_paytable_documents(config.paytables_dir)
        self.seed_key = seed_key_hex(config)
        for table in self.tables:
            if table.paytable_set not in self.documents:
                fail(f"rgs up: table {table.table_id} plays paytable set {table.paytable_set!r}, which does not exist"
                     f" (known: {', '.join(sorted(self.documents))})")


class _Stoppable:
    def __init__(self, stop: Any) -> None:
        self._stop = stop

    def shutdown(self) -> None:
        self._stop()


def _start_rounds(config: Config, database_url: str, shards: ShardSet, redis_url: str, games: _Games) -> list[tuple[str, Any]]:
    """The chain (embedded dev chain unless chain_rpc_url), the notary, one scheduler per table."""
    from actors.chain_notary import start_notary
    from actors.round_scheduler import start_schedulers

    started: list[tuple[str, Any]] = []
    tables, documents, key = games.tables, games.documents, games.seed_key
    if config.chain_rpc_url:
        if not config.chain_private_key:
            fail("rgs up: chain_rpc_url is set but chain_private_key is not: the notary signs its own transactions")
        rpc_url, private_key = config.chain_rpc_url, config.chain_private_key
        _say(f"chain         {rpc_url} (external)")
    else:
        from storage.embedded_chain import EmbeddedChain

        chain = EmbeddedChain(config.state_dir / "chain", block_time_s=config.chain_block_time_s)
        chain.start()
        # Not stopped with the rest: the dev chain holds every round's commitment and
        # reveal in memory, so stopping it would make past rounds unverifiable. It is
        # reused by the next `rgs up`; `rgs chain stop` ends it.
        rpc_url, private_key = chain.url, chain.private_key
        _say(
            f"chain         {rpc_url} (embedded eth-tester dev chain, pid {chain.pid}; stays up after"
            " Ctrl-C so past rounds stay verifiable; 'rgs chain stop' ends it)"
        )
    notary = start_notary(rpc_url, private_key)
    started.append(("chain notary", _Actors([notary])))
    handles = start_schedulers(tables, documents, database_url, key, len(shards), shards.partitions, redis_url=redis_url)
    started.append(("round schedulers", _Actors(handles)))
    for table in tables:
        _say(
            f"table         {table.table_id}: a round every {table.period_ms / 1000:g} s, bets close"
            f" {table.close_offset_ms / 1000:g} s before the draw, paytables {table.paytable_set},"
            f" {', '.join(table.currencies)}"
        )
    return started


def _drain(shards: ShardSet) -> None:
    """Answer what is queued and flush the journal before the shard processes go.

    Every shard of the set alive now is drained, found by name: a live rebalance
    (``rgs shards rebalance``) may have added shards this process never held a handle to.
    Killing comes after, as ``ray.kill`` skips the shards' graceful-exit hook.
    """
    try:
        outcomes = shards.drain_all(timeout=30)
    except Exception as exc:  # still kill them: fencing covers whatever was not flushed
        outcomes = [{"name": "shards", "error": str(exc)}]
    for outcome in outcomes:
        if "error" in outcome:
            _say(f"  {outcome['name']}: not drained ({outcome['error']})")
        else:
            _say(f"  {outcome['name']}: drained, {int(outcome.get('commands', 0))} command(s) committed in this run")
    shards.stop()


def _install_stop_handlers(previous: Any = None) -> Any:
    requested = False

    def handler(signum: int, frame: object) -> None:
        nonlocal requested
        requested = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: requested or (previous is not None and previous())


def _say(line: str) -> None:
    print(f"rgs up: {line}", file=sys.stdout, flush=True)
