"""Request bodies of the operator API: strict (unknown fields and wrong types are errors).

Amounts are integer minor units with their currency; a float, a string or a boolean
where an integer belongs is refused rather than coerced, so nobody's 10.5 becomes 10.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

__all__ = [
    "BetRequest",
    "PlayerRequest",
    "RollbackRequest",
    "SessionRequest",
    "TokenRequest",
    "TransferRequest",
    "describe_validation_error",
]

PlayerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^~\s][^\s]*$")]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=5, pattern=r"^[A-Z]{3,5}$")]
Amount = Annotated[int, Field(gt=0, lt=10**38)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TokenRequest(_Strict):
    grant_type: Literal["client_credentials"]
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PlayerRequest(_Strict):
    player_id: PlayerId
    currency: Currency


class SessionRequest(_Strict):
    player_id: PlayerId
    provider_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    ttl_s: Annotated[int, Field(ge=60, le=86_400)] = 3_600


class TransferRequest(_Strict):
    player_id: PlayerId
    currency: Currency
    amount: Amount


class BetRequest(_Strict):
    player_id: PlayerId
    currency: Currency
    picks: Annotated[list[int], Field(min_length=1, max_length=10)]
    stake: Amount
    table_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    round_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class RollbackRequest(_Strict):
    ticket_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line naming each bad field: ``picks: ...; stake: ...``."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        elif error.get("type") == "json_invalid":
            message = "body is not valid JSON"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()
