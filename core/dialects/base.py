"""The contract between a dialect module and the provider adapter that runs it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.wallet import CommandKind, Result

__all__ = [
    "Dialect",
    "Intent",
    "Outcome",
    "ParsedCall",
    "PlayerRef",
    "ProviderSettings",
    "WireRequest",
    "WireResponse",
    "json_response",
]


@dataclass(frozen=True)
class WireRequest:
    method: str  # upper case
    path: str  # below the dialect's base path, e.g. "/transaction/bet"
    headers: Mapping[str, str]  # names lower case
    body: bytes  # raw, exactly as received (signatures are over these bytes)
    received_at: float  # unix seconds


@dataclass(frozen=True)
class WireResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, payload: Any) -> WireResponse:
    return WireResponse(status, json.dumps(payload, separators=(",", ":")).encode())


@dataclass(frozen=True)
class ProviderSettings:
    """One configured provider: its id, our operator it serves, and dialect secrets."""

    provider_id: str
    operator_id: str
    dialect: str
    # dialect-specific: e.g. {"public_key_pem": ...} (Hub88), {"auth_token": ...} (SoftSwiss)
    secrets: Mapping[str, str]
    timestamp_window_s: float = 120.0


@dataclass(frozen=True)
class PlayerRef:
    """How a request names its player: by id, by session token, or both."""

    player_id: str | None = None
    token: str | None = None
    # Hub88 does not check the token on wins and rollbacks: a player whose session ended
    # must still receive the win of a bet placed while it was valid.
    token_must_be_valid: bool = True


@dataclass(frozen=True)
class Intent:
    """One wallet command, before the player's operator/id are resolved."""

    kind: CommandKind
    key: str = ""  # the idempotency key (the provider's transaction id, namespaced)
    amount: int = 0  # minor units of ``currency``
    reference: str | None = None
    round_ref: str | None = None
    game_ref: str | None = None


@dataclass(frozen=True)
class ParsedCall:
    """A request the dialect understood."""

    endpoint: str  # e.g. "bet", "win", "rollback", "balance", "play"
    player: PlayerRef
    currency: str | None  # the currency the request is in (None when it names none)
    intents: tuple[Intent, ...]  # run in order; all-or-nothing where the dialect says so
    request_id: str | None = None  # echoed where the dialect echoes one
    transaction_ids: tuple[str, ...] = ()  # the provider's own ids, for reconciliation
    round_ref: str | None = None
    atomic: bool = False  # roll back earlier intents if a later one is refused
    context: Mapping[str, Any] = field(default_factory=dict)  # dialect-private, for render


@dataclass(frozen=True)
class Outcome:
    """What the wallet did with a parsed call, handed back to the dialect to render."""

    results: Sequence[Result]  # one per intent that ran (may be fewer if refused early)
    currency: str | None  # the player's account currency
    balance: int | None  # the player's balance after, in minor units
    player_id: str | None
    # set instead of results when the call could not reach the wallet
    error: str | None = None  # "unknown_player" | "invalid_token" | "expired_token"
    #                           | "player_blocked" | "currency_mismatch" | "unavailable"


class Dialect(Protocol):
    name: str

    def authenticate(self, request: WireRequest, settings: ProviderSettings) -> WireResponse | None:
        """None when the signature (and timestamp, where the dialect has one) hold;
        otherwise the dialect's exact refusal."""

    def parse(self, request: WireRequest, settings: ProviderSettings) -> ParsedCall | WireResponse:
        """What the request asks, or the dialect's exact error for a malformed one."""

    def render(self, call: ParsedCall, outcome: Outcome) -> WireResponse:
        """The dialect's exact answer for what happened."""

    def reject(self, request: WireRequest, reason: str) -> WireResponse:
        """The dialect's answer for a request refused before parsing (body too large,
        unknown path, wrong method, internal trouble): never a 500 with a traceback."""


