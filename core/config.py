"""Typed configuration, from environment variables and an optional TOML file.

Precedence: environment > file > defaults. Everything is validated at start-up and a bad
value stops the process with a message naming the setting, where it came from and what
is allowed. Parsing is pure: the caller passes the environment and the file's text.

File keys are the field names below (``shards = 4``); environment variables are
``RGS_<FIELD>`` (``RGS_SHARDS=4``), except the conventional ``DATABASE_URL``,
``REDIS_URL`` and ``RAY_ADDRESS``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError

__all__ = ["Config", "load_config"]

_CONVENTIONAL_ENV = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "ray_address": "RAY_ADDRESS",
}


@dataclass(frozen=True)
class Config:
    # where embedded services keep their data and `rgs up --demo` writes demo.json
    state_dir: Path = Path(".rgs")
    # external services; None selects the embedded default
    database_url: str | None = None
    redis_url: str | None = None
    chain_rpc_url: str | None = None
    chain_private_key: str | None = field(default=None, repr=False)
    # seconds between the embedded dev chain's empty blocks (the salt of a round is the
    # first block at or after its close, so this bounds how long a draw waits)
    chain_block_time_s: float = 1.0
    # AES-256-GCM key (64 hex chars) sealing server seeds at rest; None: generated once
    # into <state_dir>/seed.key (fine for one machine; production passes RGS_SEED_KEY)
    seed_key: str | None = field(default=None, repr=False)
    # Keno tables (JSON or TOML list) and extra paytable sets; None: the shipped defaults
    tables_file: Path | None = None
    paytables_dir: Path | None = None
    ray_address: str | None = None
    # account shards
    shards: int = 2
    partitions: int = 64
    group_commit_max: int = 500
    mailbox_capacity: int = 1000
    max_active_accounts: int = 100_000
    idle_passivate_s: float = 300.0
    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # operator API: requests per minute from one client IP, over all operators (a flood
    # guard; each operator has its own, lower limit), and whether to take the client IP
    # from X-Forwarded-For (only behind a proxy that sets it: anyone can send the header)
    api_ip_limit_per_min: int = 120_000
    trust_forwarded_for: bool = False
    api_token_ttl_s: int = 900

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "postgres"

    def validate(self) -> Config:
        _require(1 <= self.shards <= 1024, "shards", self.shards, "an integer in 1..1024")
        _require(1 <= self.partitions <= 65536, "partitions", self.partitions, "an integer in 1..65536")
        _require(
            self.partitions >= self.shards,
            "partitions",
            self.partitions,
            f"at least the number of shards ({self.shards})",
        )
        _require(1 <= self.group_commit_max <= 100_000, "group_commit_max", self.group_commit_max, "1..100000")
        _require(1 <= self.mailbox_capacity <= 1_000_000, "mailbox_capacity", self.mailbox_capacity, "1..1000000")
        _require(self.max_active_accounts >= 1, "max_active_accounts", self.max_active_accounts, ">= 1")
        _require(self.idle_passivate_s > 0, "idle_passivate_s", self.idle_passivate_s, "> 0")
        _require(0 <= self.http_port <= 65535, "http_port", self.http_port, "a TCP port 0..65535")
        _require(1 <= self.api_ip_limit_per_min <= 100_000_000, "api_ip_limit_per_min", self.api_ip_limit_per_min, "1..100000000")
        _require(60 <= self.api_token_ttl_s <= 86_400, "api_token_ttl_s", self.api_token_ttl_s, "60..86400 seconds")
        _require(0.05 <= self.chain_block_time_s <= 60, "chain_block_time_s", self.chain_block_time_s, "0.05..60 seconds")
        if self.seed_key is not None:
            text = self.seed_key.strip().lower()
            if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
                raise ConfigError("setting seed_key is invalid: must be 64 hex characters (a 256-bit key)")
        if self.chain_private_key and not self.chain_rpc_url:
            raise ConfigError("chain_private_key is set but chain_rpc_url is not; set both or neither")
        for name in ("database_url", "redis_url"):
            value = getattr(self, name)
            if value is not None and "://" not in value:
                raise ConfigError(f"{name} must be a URL like scheme://host/..., got {value!r}")
        return self


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"setting {name}={value!r} is invalid: must be {allowed}")


def _coerce(name: str, raw: Any, target: Any, source: str) -> Any:
    if raw is None:
        return None
    kind = target if isinstance(target, type) else None
    text = str(target).replace(" | None", "")
    try:
        if kind is bool or text == "bool":
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if text in ("int",) or kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if text in ("float",) or kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if text in ("Path",) or kind is Path:
            return Path(str(raw))
        value = str(raw)
        return value if value != "" else None
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name} from {source}: {raw!r} is not a valid {text.replace(' | None', '')}"
        ) from None


def load_config(
    env: Mapping[str, str] | None = None,
    file_text: str | None = None,
    *,
    file_name: str = "config file",
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build and validate a :class:`Config` (overrides > environment > file > defaults)."""
    env = env or {}
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(Config)}
    if file_text is not None:
        try:
            data = tomllib.loads(file_text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_name} is not valid TOML: {exc}") from exc
        data = data.get("rgs", data)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{file_name}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for name, raw in data.items():
            values[name] = _coerce(name, raw, known[name].type, file_name)
    for name, fld in known.items():
        env_name = _CONVENTIONAL_ENV.get(name, f"RGS_{name.upper()}")
        if env_name in env and env[env_name] != "":
            values[name] = _coerce(name, env[env_name], fld.type, f"${env_name}")
    for name, raw in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f"unknown setting {name}")
        if raw is not None:
            values[name] = _coerce(name, raw, known[name].type, "the command line")
    return dataclasses.replace(Config(), **values).validate()
