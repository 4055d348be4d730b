"""``rgs up --demo``: provision a demo operator, one provider per dialect and funded players.

Everything a person needs to try the wallet is written to ``<state>/demo.json``:
the base URL, the database URL, the operator's credentials, each provider's base path
and signing secret (Hub88: an RSA private key; SoftSwiss: the auth token), and players
with balances and session tokens.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg
import ray
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.provider_adapter import ProviderAdapter, adapter_name
from actors.router import ShardRouter
from actors.shard import NAMESPACE, ShardSet
from core.config import Config
from core.dialects.base import ProviderSettings
from core.operator_auth import PURPOSE_CREDENTIALS, CredentialVault, derive_key
from core.seeds import parse_key
from core.wallet import Command, CommandKind, ResultCode
from storage.callbacks import CallbackStore
from storage.operators import OperatorStore
from storage.sessions import SessionStore

__all__ = ["DEMO_OPERATOR", "provision_demo", "start_adapters"]

DEMO_OPERATOR = "demo-operator"
DEMO_PLAYERS = 20
DEMO_FUNDS_MINOR = 100_000_000  # 1,000,000.00 EUR


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def _existing(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


async def provision_demo(
    config: Config, database_url: str, shards: ShardSet, base_url: str, seed_key_hex: str
) -> tuple[Path, dict[str, Any], list[ProviderSettings]]:
    """Create (or reuse, on a restart) the demo operator, providers and players."""
    path = config.state_dir / "demo.json"
    previous = _existing(path)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        callbacks = CallbackStore(pool)
        sessions = SessionStore(pool)
        if previous and previous.get("database_url") == database_url:
            hub88_private = previous["providers"]["hub88"]["private_key_pem"]
            hub88_public = previous["providers"]["hub88"]["public_key_pem"]
            soft_token = previous["providers"]["softswiss"]["auth_token"]
        else:
            hub88_private, hub88_public = _rsa_pair()
            soft_token = secrets.token_hex(32)
        operator = await _operator_credentials(pool, seed_key_hex, base_url)
        providers = [
            ProviderSettings("hub88", DEMO_OPERATOR, "hub88", {"public_key_pem": hub88_public}),
            ProviderSettings("softswiss", DEMO_OPERATOR, "softswiss", {"auth_token": soft_token}),
        ]
        for provider in providers:
            await callbacks.register_provider(
                provider.provider_id, provider.dialect, provider.operator_id, {"base_path": f"/wallet/{provider.provider_id}"}
            )
        router = ShardRouter(shards.handles, shards.partitions)
        try:
            players = [f"player-{i:02d}" for i in range(1, DEMO_PLAYERS + 1)]
            opened = await router.execute_many([Command(CommandKind.OPEN, DEMO_OPERATOR, p, "EUR") for p in players])
            funded = await router.execute_many(
                [Command(CommandKind.TRANSFER_IN, DEMO_OPERATOR, p, "EUR", f"demo-funding-{p}", DEMO_FUNDS_MINOR) for p in players]
            )
        finally:
            router.close()
        bad = [r for r in (*opened, *funded) if r.code is not ResultCode.OK]
        if bad:
            raise RuntimeError(f"demo provisioning failed: {bad[0]}")
        player_entries = []
        for player, result in zip(players, funded, strict=True):
            token = await sessions.issue(DEMO_OPERATOR, player)
            player_entries.append(
                {"player_id": player, "currency": "EUR", "balance_minor": result.balance, "session_token": token}
            )
    finally:
        await pool.close()
    demo = {
        "base_url": base_url,
        "database_url": database_url,
        "operator": operator,
        "providers": {
            "hub88": {
                "provider_id": "hub88",
                "base_path": "/wallet/hub88",
                "private_key_pem": hub88_private,
                "public_key_pem": hub88_public,
                "game_code": "rgs_keno_80",
            },
            "softswiss": {
                "provider_id": "softswiss",
                "base_path": "/wallet/softswiss",
                "auth_token": soft_token,
                "game": "rgs:keno80",
            },
        },
        "players": player_entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(demo, indent=2))
    path.chmod(0o600)  # it holds signing secrets
    return path, demo, providers


async def _operator_credentials(pool: asyncpg.Pool, seed_key_hex: str, base_url: str) -> dict[str, Any]:
    """The demo operator's API credentials: made once, read back (unsealed) on restarts."""
    vault = CredentialVault(derive_key(parse_key(seed_key_hex), PURPOSE_CREDENTIALS))
    store = OperatorStore(pool)
    found = await store.credentials(DEMO_OPERATOR, vault)
    if found is None:
        client_id, client_secret = await store.create_operator(DEMO_OPERATOR, "Demo operator", vault=vault)
    else:
        client_id, client_secret = found.client_id, found.secret.decode("ascii")
    return {
        "operator_id": DEMO_OPERATOR,
        "client_id": client_id,
        "client_secret": client_secret,
        # the secret that signs requests (X-Signature); one secret, named as the demo
        # file's contract names it
        "hmac_secret": client_secret,
        "api_base_url": f"{base_url}/api",
        "signing": "X-Signature = hex HMAC-SHA256(client_secret, timestamp + '.' + METHOD + '.' + path_with_query + '.' + body)",
    }


def start_adapters(providers: list[ProviderSettings], database_url: str, shards: ShardSet) -> list[Any]:
    handles = []
    for provider in providers:
        handles.append(
            ProviderAdapter.options(  # type: ignore[attr-defined]
                name=adapter_name(provider.provider_id), namespace=NAMESPACE, get_if_exists=True, max_concurrency=10_000
            ).remote(asdict(provider), database_url, len(shards), shards.partitions, shards.prefix)
        )
    ray.get([h.ready.remote() for h in handles], timeout=120)
    return handles
