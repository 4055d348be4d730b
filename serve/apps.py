"""Serve application builders for a Ray cluster (KubeRay ``serveConfigV2``).

``serve.apps:wallet_app`` and ``serve.apps:operator_app`` are what ``ray-cluster.yaml``
imports. Serve calls each with its config entry's ``args`` (none are needed); everything
else comes from the environment, as for every ``rgs`` process (``core.config``:
``DATABASE_URL``, ``REDIS_URL``, ``RGS_SEED_KEY``, ``RGS_SHARDS``, ...).

Before binding its deployment, a builder makes sure the actors behind it run: the account
shards, the provider adapters, and, when a chain is configured, the chain notary and one
round scheduler per table. Serve builds applications in a short-lived task and Ray ends
an actor with its owner, so these actors are created by one detached ``BackendKeeper``
(named ``rgs-backend``) that owns them for as long as it lives. Both builders ask it, and
asking twice is harmless: every actor is found by name. Should the keeper itself die, its
actors go with it; Ray restarts the keeper, which starts them all again by itself (the
environment it was created with is its constructor's argument), and the shards claim their
partitions at new epochs, so nothing of the old ones can still write. The keeper keeps the
environment of the first build: a changed setting takes a new cluster (KubeRay's upgrade),
or ending the keeper for good (``ray.kill(handle, no_restart=True)``) before the next build.

Providers are the rows of the ``providers`` table: ``config`` holds ``base_path`` (default
``/wallet/{provider_id}``) and ``secrets`` (the dialect's: a Hub88 ``public_key_pem``, a
SoftSwiss ``auth_token``). A provider without ``secrets`` cannot be served and is skipped
with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg
import ray
from ray.serve import Application

from actors.shard import NAMESPACE, SHARD_PREFIX, ShardSet, start_shards
from core.config import Config, load_config
from core.dialects.base import ProviderSettings
from core.errors import ConfigError
from serve.operator_api import OperatorApi
from serve.wallet import WalletGateway

__all__ = [
    "KEEPER_NAME",
    "BackendKeeper",
    "config_from_environment",
    "operator_app",
    "operator_settings",
    "wallet_app",
    "wallet_routes",
]

log = logging.getLogger("rgs.apps")

KEEPER_NAME = "rgs-backend"
_ENSURE_TIMEOUT_S = 300.0


def config_from_environment(env: Mapping[str, str] | None = None) -> Config:
    """The configuration a cluster process runs with: ``$RGS_CONFIG`` (a TOML file), if
    set, under the environment. A cluster has no embedded services: the database URL and
    the seed key must be given."""
    env = os.environ if env is None else env
    path = env.get("RGS_CONFIG")
    text = None
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read RGS_CONFIG {path}: {exc.strerror}") from exc
    config = load_config(env, text, file_name=str(path))
    if not config.database_url:
        raise ConfigError("DATABASE_URL is not set: a cluster needs an external PostgreSQL")
    if not config.seed_key:
        raise ConfigError(
            "RGS_SEED_KEY is not set: every node must seal and open seeds with the same key"
        )
    return config


def _relevant_environment() -> dict[str, str]:
    names = ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "RGS_CONFIG")
    return {k: v for k, v in os.environ.items() if k.startswith("RGS_") or k in names}


async def _registered_providers(database_url: str) -> list[tuple[ProviderSettings, str]]:
    """Every provider with its secrets, and the base path it is served under."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT provider_id, dialect, operator_id, config FROM providers ORDER BY provider_id"
        )
    finally:
        await conn.close()
    found = []
    for row in rows:
        config = row["config"]
        config = json.loads(config) if isinstance(config, str) else dict(config)
        secrets = config.get("secrets")
        if not isinstance(secrets, dict):
            log.warning(
                "provider %s has no secrets in providers.config: not served", row["provider_id"]
            )
            continue
        settings = ProviderSettings(row["provider_id"], row["operator_id"], row["dialect"], secrets)
        found.append((settings, str(config.get("base_path") or f"/wallet/{row['provider_id']}")))
    return found


def wallet_routes(providers: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``WalletGateway``'s routes: base path -> provider id and dialect."""
    return {
        p["base_path"]: {"provider_id": p["provider_id"], "dialect": p["dialect"]}
        for p in providers
    }


def operator_settings(config: Config, shards: Mapping[str, Any]) -> dict[str, Any]:
    """``OperatorApi``'s settings (the same shape ``rgs up --demo`` passes)."""
    from storage.games import load_paytable_documents, load_tables

    if not config.redis_url:
        raise ConfigError("REDIS_URL is not set: the operator API keeps its rate limits in Redis")
    tables = load_tables(config.tables_file)
    documents = load_paytable_documents(config.paytables_dir)
    return {
        "database_url": config.database_url,
        "redis_url": config.redis_url,
        "seed_key_hex": config.seed_key,
        "shards": shards["shards"],
        "partitions": shards["partitions"],
        "shard_prefix": shards["prefix"],
        "tables": [t.to_mapping() for t in tables],
        "paytables": {t.paytable_set: documents[t.paytable_set] for t in tables},
        "ip_limit_per_min": config.api_ip_limit_per_min,
        "trust_forwarded_for": config.trust_forwarded_for,
        "token_ttl_s": config.api_token_ttl_s,
    }


@ray.remote(num_cpus=0, max_restarts=-1)
class BackendKeeper:
    """Owns the actors behind the Serve applications (see the module docstring)."""

    def __init__(self, env: dict[str, str], shard_prefix: str = SHARD_PREFIX) -> None:
        self._held: dict[Any, Any] = {}
        self._env = env
        self._shard_prefix = shard_prefix
        self._lock = threading.Lock()  # recovery and builders' calls take turns
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # Ray restarted us: the actors we owned ended with our old process, and no
            # build may come to ask for them again. Bring them back now.
            threading.Thread(target=self._recover, name="backend-recovery", daemon=True).start()

    def _recover(self) -> None:
        delay = 1.0
        while True:
            try:
                self.ensure()
                log.warning(
                    "backend keeper restarted: shards, adapters, notary and tables started again"
                )
                return
            except Exception as exc:  # the database may be away too: keep trying
                log.warning("backend keeper restarted; cannot start the backend yet: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _hold(self, *handles: Any) -> None:
        """Keep the first handle to each actor: the keeper created those, and Ray ends an
        actor once its creator's handles are gone. A later lookup by name (``get_if_exists``)
        returns another handle, which must not replace the first."""
        for handle in handles:
            self._held.setdefault(handle._actor_id, handle)

    def ensure(self) -> dict[str, Any]:
        """Start (or find) every backend actor; what the builders need to bind."""
        with self._lock:
            return self._ensure()

    def _ensure(self) -> dict[str, Any]:
        from serve.demo import start_adapters

        config = config_from_environment(self._env)
        database_url = str(config.database_url)
        shards: ShardSet = start_shards(config, database_url, prefix=self._shard_prefix)
        self._hold(*shards.handles)
        providers = asyncio.run(_registered_providers(database_url))
        self._hold(*start_adapters([p for p, _ in providers], database_url, shards))
        rounds = self._ensure_rounds(config, database_url, shards)
        return {
            "shards": {
                "shards": len(shards),
                "partitions": shards.partitions,
                "prefix": shards.prefix,
            },
            "providers": [{**asdict(p), "base_path": base} for p, base in providers],
            "notary": rounds,
        }

    def _ensure_rounds(self, config: Config, database_url: str, shards: ShardSet) -> str | None:
        if not (config.chain_rpc_url and config.chain_private_key):
            log.warning("no chain configured (RGS_CHAIN_RPC_URL): Keno tables do not run")
            return None
        from actors.chain_notary import NOTARY_NAME, start_notary
        from actors.round_scheduler import start_schedulers
        from storage.games import load_paytable_documents, load_tables

        self._hold(start_notary(config.chain_rpc_url, config.chain_private_key))
        tables = load_tables(config.tables_file)
        documents = load_paytable_documents(config.paytables_dir)
        self._hold(
            *start_schedulers(
                tables,
                documents,
                database_url,
                str(config.seed_key),
                len(shards),
                shards.partitions,
                shard_prefix=shards.prefix,
                redis_url=config.redis_url,
            )
        )
        return NOTARY_NAME


def _ensure_backend(args: Mapping[str, Any]) -> tuple[Config, dict[str, Any]]:
    config = config_from_environment()  # here too: a bad setting fails the build, not the keeper
    keeper = BackendKeeper.options(  # type: ignore[attr-defined]
        name=str(args.get("keeper", KEEPER_NAME)),
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
    ).remote(_relevant_environment(), str(args.get("shard_prefix", SHARD_PREFIX)))
    backend: dict[str, Any] = ray.get(keeper.ensure.remote(), timeout=_ENSURE_TIMEOUT_S)
    return config, backend


def wallet_app(args: dict[str, Any]) -> Application:
    """The seamless wallet (``/wallet``): one route per registered provider.

    ``args`` (optional): ``keeper`` and ``shard_prefix`` name the backend's actors.
    """
    config, backend = _ensure_backend(args)
    health = {"redis_url": config.redis_url, "notary": backend["notary"]}
    return WalletGateway.bind(wallet_routes(backend["providers"]), health)  # type: ignore[attr-defined,no-any-return]


def operator_app(args: dict[str, Any]) -> Application:
    """The operator API (``/api``). ``args`` as for :func:`wallet_app`."""
    config, backend = _ensure_backend(args)
    settings = {**operator_settings(config, backend["shards"]), "notary": backend["notary"]}
    return OperatorApi.bind(settings)  # type: ignore[attr-defined,no-any-return]
