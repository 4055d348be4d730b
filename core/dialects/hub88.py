"""The Hub88 operator Wallet API: Hub88 calls us (the operator) on every spin.

What this module follows, from Hub88's public developer documentation (docs.hub88.io):

* Operator Wallet API reference,
  https://docs.hub88.io/developer-docs/operator-api-reference/wallet-api
  - Five POST endpoints the operator serves: ``/user/info``, ``/user/balance``,
    ``/transaction/bet``, ``/transaction/win``, ``/transaction/rollback``; every documented
    response is HTTP 200 with a JSON body, so business refusals travel in ``status``.
  - Every request carries ``X-Hub88-Signature``: an RSA-SHA256 signature of the request
    body made with Hub88's private key, checked with the matching public key. We verify
    PKCS#1 v1.5 over the raw bytes received, base64-decoded from the header.
  - ``/user/info`` sends ``user`` and ``request_uuid``; its answer names the user (plus
    optional profile fields: country, jurisdiction, birth date... which we do not hold).
  - ``/user/balance`` sends ``token``, ``request_uuid``, ``game_code`` and ``user`` (the
    user may be absent in demo play). Balance-carrying answers are
    ``{"user", "status", "request_uuid", "currency", "balance"}``.
  - Bets and wins send ``user``, ``token``, ``request_uuid``, ``transaction_uuid``,
    ``supplier_transaction_id``, ``round``, ``round_closed``, ``game_code``, ``currency``,
    ``amount``, ``is_free``, ``bet``, ``meta`` (and a few promo flags); a win also sends
    ``reference_transaction_uuid``, the bet it pays. A rollback sends ``transaction_uuid``,
    ``reference_transaction_uuid`` (the bet to undo), ``round``, ``token``, ``game_code``,
    ``meta`` and no amount or currency: it refunds the referenced bet.
  - ``request_uuid`` must be echoed unchanged. ``transaction_uuid`` identifies a money
    movement that must never be applied twice.
* Seamless Wallet response statuses (operator side),
  https://docs.hub88.io/developer-docs/operator-api-reference/operator-api-overview/seamless-wallet-response-statuses-operator-api
  - RS_OK; RS_ERROR_UNKNOWN (general, no specific code fits); RS_ERROR_INVALID_PARTNER;
    RS_ERROR_INVALID_TOKEN (token unknown; expiry has its own code); RS_ERROR_INVALID_GAME;
    RS_ERROR_WRONG_CURRENCY (transaction currency differs from the wallet's);
    RS_ERROR_NOT_ENOUGH_MONEY (must carry the actual balance); RS_ERROR_USER_DISABLED
    (user locked, no new bets); RS_ERROR_INVALID_SIGNATURE; RS_ERROR_TOKEN_EXPIRED (token
    validity must not be checked for wins and rollbacks, which may arrive after the
    session ended); RS_ERROR_WRONG_SYNTAX (request does not have the expected form);
    RS_ERROR_WRONG_TYPES (parameter types do not match); RS_ERROR_DUPLICATE_TRANSACTION
    (a transaction_uuid seen before with a different reference, amount, currency, round,
    user or game); RS_ERROR_TRANSACTION_DOES_NOT_EXIST (the bet a win references is
    unknown); RS_ERROR_TRANSACTION_ROLLED_BACK; RS_ERROR_LIMIT_REACHED.
  - A rollback whose bet cannot be found is answered RS_OK (Hub88's guidance as carried by
    operator integrations; it matches our wallet's remembered-rollback rule).
  - The stored copies of this table cut off after TRANSACTION_DOES_NOT_EXIST: the uses of
    TRANSACTION_ROLLED_BACK and LIMIT_REACHED below follow their names.
* Supplier-side Wallet API, https://docs.hub88.io/developer-docs/supplier-api-reference/wallet-api:
  requests are idempotent and a duplicate gets the same response as the original; a bet
  answered with any status except NOT_ENOUGH_MONEY or LIMIT_REACHED (or not answered) is
  rolled back by the supplier.
* Amounts (TransferWallet API reference, same units across the Wallet API):
  https://docs.hub88.io/developer-docs/operator-api-reference/transferwallet-api
  - Int64 integers of 1/100000 of the currency unit: $3.56 is 356000.

Decisions where the documentation leaves room (what a careful integrator would do):

* No timestamp: Hub88 requests carry none, so there is no freshness window
  (``ProviderSettings.timestamp_window_s`` is ignored). A replayed signature only verifies
  over the identical body, and an identical body is answered idempotently.
* Refusals are HTTP 200 with a status, including bad signatures, malformed bodies, unknown
  paths, wrong methods and oversized bodies: never a 4xx/5xx with a traceback. Such early
  refusals carry ``status`` and ``request_uuid`` (``null`` when it cannot be read) and the
  ``user`` when readable.
* Errors where the wallet knows the account also carry ``currency`` and ``balance``, not
  only RS_ERROR_NOT_ENOUGH_MONEY: harmless to Hub88 and useful to their support.
* Syntax vs types: a missing required field, a body that is not one JSON object (or has a
  repeated key, NaN, or cannot be decoded), an empty or over-long id, a negative amount,
  and an amount that is not a whole number of our minor units are RS_ERROR_WRONG_SYNTAX;
  a field of the wrong JSON type (a float, bool or string amount, an integer id...) or an
  integer beyond Int64 is RS_ERROR_WRONG_TYPES. Unknown extra fields are ignored (Hub88
  adds fields over time). A currency code we do not trade is RS_ERROR_WRONG_CURRENCY.
* A second resolution of a resolved bet (a win after its win, a rollback after its win)
  has no dedicated status: RS_ERROR_UNKNOWN, the documented catch-all. A win or late bet
  after a rollback, and a second rollback under a new transaction_uuid, are
  RS_ERROR_TRANSACTION_ROLLED_BACK. An unknown user is RS_ERROR_UNKNOWN (Hub88 defines no
  user-not-found status); an unreachable wallet is RS_ERROR_UNKNOWN, which makes Hub88
  retry (wins, rollbacks) or roll back (bets) exactly as for a network failure.
* ``is_free`` is recorded, and the amount is debited as sent: free bets through Hub88 carry
  amount 0 (as a Hub88 game supplier documents them), and we do not guess a debit other
  than the one Hub88 asks for.
* We keep no game catalogue, so RS_ERROR_INVALID_GAME is never produced; ``game_code`` is
  optional and goes to ``game_ref``. The token is required on balance and bet, optional on
  win and rollback (sent, but not checked there).
* Units: Hub88 units -> our minor units multiply for currencies with more than 5 decimals
  (1 unit = 1000 satoshi) and divide, exactly or not at all, for fewer (1 EUR cent = 1000
  units). Balances we render are floored to whole Hub88 units (a BTC balance of 1500
  satoshi shows as 1 unit): we never show more than the player has.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from core.dialects.base import (
    Intent,
    Outcome,
    ParsedCall,
    PlayerRef,
    ProviderSettings,
    WireRequest,
    WireResponse,
    json_response,
)
from core.errors import UnknownCurrencyError
from core.money import currency as currency_info
from core.strict_json import too_deep
from core.wallet import CommandKind, Result, ResultCode

__all__ = [
    "DIALECT",
    "ENDPOINTS",
    "HUB88_UNIT_EXPONENT",
    "KEY_PREFIX",
    "SIGNATURE_HEADER",
    "Hub88",
    "Status",
    "hub88_units_to_minor",
    "minor_to_hub88_units",
]

SIGNATURE_HEADER: Final = "x-hub88-signature"  # WireRequest header names are lower case
HUB88_UNIT_EXPONENT: Final = 5  # amounts are integers of 1/100000 of the currency unit
KEY_PREFIX: Final = "hub88:"  # namespaces Hub88's ids among every provider's keys
_INT64_MAX: Final = 2**63 - 1
_MAX_ID = 128 - len(KEY_PREFIX)  # a namespaced key must fit the wallet's 128 characters
_MAX_REF = 128  # round, game, user: stored as-is by the wallet
_MAX_TEXT = 1024  # tokens and the other strings we only carry
_MAX_SIGNATURE = 4096  # base64 of a 16384-bit RSA signature is ~2.7k characters
_ECHO_PARSE_LIMIT = 64 * 1024  # how much body an early refusal reads to echo request_uuid


class Status(enum.StrEnum):
    OK = "RS_OK"
    UNKNOWN = "RS_ERROR_UNKNOWN"
    INVALID_PARTNER = "RS_ERROR_INVALID_PARTNER"
    INVALID_TOKEN = "RS_ERROR_INVALID_TOKEN"
    INVALID_GAME = "RS_ERROR_INVALID_GAME"
    WRONG_CURRENCY = "RS_ERROR_WRONG_CURRENCY"
    NOT_ENOUGH_MONEY = "RS_ERROR_NOT_ENOUGH_MONEY"
    USER_DISABLED = "RS_ERROR_USER_DISABLED"
    INVALID_SIGNATURE = "RS_ERROR_INVALID_SIGNATURE"
    TOKEN_EXPIRED = "RS_ERROR_TOKEN_EXPIRED"
    WRONG_SYNTAX = "RS_ERROR_WRONG_SYNTAX"
    WRONG_TYPES = "RS_ERROR_WRONG_TYPES"
    DUPLICATE_TRANSACTION = "RS_ERROR_DUPLICATE_TRANSACTION"
    TRANSACTION_DOES_NOT_EXIST = "RS_ERROR_TRANSACTION_DOES_NOT_EXIST"
    TRANSACTION_ROLLED_BACK = "RS_ERROR_TRANSACTION_ROLLED_BACK"
    LIMIT_REACHED = "RS_ERROR_LIMIT_REACHED"


# path below the base path -> our endpoint name
ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "/user/info": "info",
        "/user/balance": "balance",
        "/transaction/bet": "bet",
        "/transaction/win": "win",
        "/transaction/rollback": "rollback",
    }
)

_RESULT_STATUS: Final[Mapping[ResultCode, Status]] = {
    ResultCode.OK: Status.OK,
    ResultCode.INSUFFICIENT_FUNDS: Status.NOT_ENOUGH_MONEY,
    ResultCode.DUPLICATE_MISMATCH: Status.DUPLICATE_TRANSACTION,
    ResultCode.UNKNOWN_REFERENCE: Status.TRANSACTION_DOES_NOT_EXIST,
    ResultCode.ALREADY_RESOLVED: Status.UNKNOWN,
    ResultCode.ROLLED_BACK: Status.TRANSACTION_ROLLED_BACK,
    ResultCode.ACCOUNT_LOCKED: Status.USER_DISABLED,
    ResultCode.CURRENCY_MISMATCH: Status.WRONG_CURRENCY,
    ResultCode.LIMIT_EXCEEDED: Status.LIMIT_REACHED,
    ResultCode.UNKNOWN_ACCOUNT: Status.UNKNOWN,
    ResultCode.BUSY: Status.UNKNOWN,
    ResultCode.UNAVAILABLE: Status.UNKNOWN,
}

_OUTCOME_ERROR_STATUS: Final[Mapping[str, Status]] = {
    "unknown_player": Status.UNKNOWN,
    "invalid_token": Status.INVALID_TOKEN,
    "expired_token": Status.TOKEN_EXPIRED,
    "player_blocked": Status.USER_DISABLED,
    "currency_mismatch": Status.WRONG_CURRENCY,
    "unavailable": Status.UNKNOWN,
}

# reject() reasons that mean "this is not a well-formed Hub88 request"
_SYNTAX_REASONS: Final = frozenset(
    {"body_too_large", "unknown_path", "method_not_allowed", "malformed", "bad_request"}
)


# ---------------------------------------------------------------------------- units


def hub88_units_to_minor(units: int, currency_code: str) -> int:
    """Exact minor units for an amount in Hub88 units; ValueError when not exact."""
    shift = currency_info(currency_code).exponent - HUB88_UNIT_EXPONENT
    if shift >= 0:
        return units * 10**shift
    whole, rest = divmod(units, 10**-shift)
    if rest:
        raise ValueError(
            f"{units} Hub88 units is not a whole number of {currency_code} minor units"
        )
    return whole


def minor_to_hub88_units(minor: int, currency_code: str) -> int:
    """Hub88 units for a balance, floored: never show more than the player holds."""
    shift = HUB88_UNIT_EXPONENT - currency_info(currency_code).exponent
    if shift >= 0:
        return minor * 10**shift
    return minor // 10**-shift


# ---------------------------------------------------------------------- signatures


@lru_cache(maxsize=32)
def _public_key(pem: str) -> rsa.RSAPublicKey | None:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _signature_holds(key: rsa.RSAPublicKey, header: str, body: bytes) -> bool:
    if len(header) > _MAX_SIGNATURE:
        return False
    try:
        signature = base64.b64decode(header.strip(), validate=True)
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# -------------------------------------------------------------------- request body


class _Refused(Exception):
    """A request we answer with ``status`` before it reaches the wallet."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.value)
        self.status = status


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The signature covers the bytes; two parsers that disagree on a repeated key would
    # read different requests from the same signed body.
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("repeated key")
    return found


def _json_object(body: bytes) -> dict[str, Any] | None:
    if too_deep(body):
        return None
    try:
        value = json.loads(
            body, object_pairs_hook=_no_repeated_keys, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


class _Kind(enum.Enum):
    ID = "id"  # transaction ids: namespaced into idempotency keys
    REF = "ref"  # user, round, game: handed to the wallet as they are
    TEXT = "text"  # strings we only carry (token, request_uuid...)
    AMOUNT = "amount"
    CURRENCY = "currency"
    BOOL = "bool"
    OBJECT = "object"


@dataclass(frozen=True)
class _Field:
    kind: _Kind
    required: bool = False


_REQ_ID = _Field(_Kind.ID, required=True)
_REQ_REF = _Field(_Kind.REF, required=True)
_REQ_TEXT = _Field(_Kind.TEXT, required=True)
_OPT_REF = _Field(_Kind.REF)
_OPT_TEXT = _Field(_Kind.TEXT)
_OPT_BOOL = _Field(_Kind.BOOL)
_OPT_OBJECT = _Field(_Kind.OBJECT)

_TRANSACTION_EXTRAS: Final[Mapping[str, _Field]] = {
    "supplier_transaction_id": _OPT_TEXT,
    "supplier_user": _OPT_TEXT,
    "reward_uuid": _OPT_TEXT,
    "bet": _OPT_TEXT,
    "round_closed": _OPT_BOOL,
    "is_free": _OPT_BOOL,
    "is_supplier_promo": _OPT_BOOL,
    "is_aggregated": _OPT_BOOL,
    "meta": _OPT_OBJECT,
}

_FIELDS: Final[Mapping[str, Mapping[str, _Field]]] = {
    "info": {"user": _REQ_REF, "request_uuid": _REQ_TEXT},
    "balance": {
        "user": _OPT_REF,
        "token": _REQ_TEXT,
        "request_uuid": _REQ_TEXT,
        "game_code": _OPT_REF,
    },
    "bet": {
        "user": _REQ_REF,
        "token": _REQ_TEXT,
        "request_uuid": _REQ_TEXT,
        "transaction_uuid": _REQ_ID,
        "round": _REQ_REF,
        "game_code": _OPT_REF,
        "currency": _Field(_Kind.CURRENCY, required=True),
        "amount": _Field(_Kind.AMOUNT, required=True),
        **_TRANSACTION_EXTRAS,
    },
    "win": {
        "user": _REQ_REF,
        "token": _OPT_TEXT,
        "request_uuid": _REQ_TEXT,
        "transaction_uuid": _REQ_ID,
        "reference_transaction_uuid": _REQ_ID,
        "round": _REQ_REF,
        "game_code": _OPT_REF,
        "currency": _Field(_Kind.CURRENCY, required=True),
        "amount": _Field(_Kind.AMOUNT, required=True),
        **_TRANSACTION_EXTRAS,
    },
    "rollback": {
        "user": _REQ_REF,
        "token": _OPT_TEXT,
        "request_uuid": _REQ_TEXT,
        "transaction_uuid": _REQ_ID,
        "reference_transaction_uuid": _REQ_ID,
        "round": _OPT_REF,
        "game_code": _OPT_REF,
        **_TRANSACTION_EXTRAS,
    },
}

_MAX_LENGTH: Final[Mapping[_Kind, int]] = {
    _Kind.ID: _MAX_ID,
    _Kind.REF: _MAX_REF,
    _Kind.TEXT: _MAX_TEXT,
}
_EXPECTED_TYPE: Final[Mapping[_Kind, type]] = {
    _Kind.ID: str,
    _Kind.REF: str,
    _Kind.TEXT: str,
    _Kind.CURRENCY: str,
    _Kind.BOOL: bool,
    _Kind.OBJECT: dict,
}


def _read_fields(body: Mapping[str, Any], fields: Mapping[str, _Field]) -> dict[str, Any]:
    """The endpoint's fields (absent or null optional ones as None), checked in three passes
    so the answer does not depend on field order: presence, then types, then values."""
    for name, spec in fields.items():
        if spec.required and body.get(name) is None:
            raise _Refused(Status.WRONG_SYNTAX)
    values: dict[str, Any] = {name: body.get(name) for name in fields}
    for name, value in values.items():
        if value is None:
            continue
        kind = fields[name].kind
        if kind is _Kind.AMOUNT:
            # bool is an int subclass, and true is not an amount; Hub88 amounts are Int64
            if isinstance(value, bool) or not isinstance(value, int) or value > _INT64_MAX:
                raise _Refused(Status.WRONG_TYPES)
        elif not isinstance(value, _EXPECTED_TYPE[kind]):
            raise _Refused(Status.WRONG_TYPES)
    for name, value in values.items():
        if value is None:
            continue
        kind = fields[name].kind
        limit = _MAX_LENGTH.get(kind)
        if limit is not None and not 0 < len(value) <= limit:
            raise _Refused(Status.WRONG_SYNTAX)
        if kind is _Kind.AMOUNT and value < 0:
            raise _Refused(Status.WRONG_SYNTAX)
    return values


def _minor_amount(units: int, currency_code: str) -> int:
    try:
        currency_info(currency_code)
    except UnknownCurrencyError:
        raise _Refused(Status.WRONG_CURRENCY) from None
    try:
        return hub88_units_to_minor(units, currency_code)
    except ValueError:
        raise _Refused(Status.WRONG_SYNTAX) from None


def _key(transaction_uuid: str) -> str:
    return f"{KEY_PREFIX}{transaction_uuid}"


# ------------------------------------------------------------------------ answers


def _answer(
    status: Status,
    request_uuid: object,
    *,
    user: object = None,
    currency_code: str | None = None,
    balance_minor: int | None = None,
) -> WireResponse:
    """One Hub88 answer, fields in the documented order. Always HTTP 200: Hub88 reads the
    outcome from ``status``."""
    payload: dict[str, Any] = {}
    if isinstance(user, str):
        payload["user"] = user
    payload["status"] = status.value
    payload["request_uuid"] = request_uuid if isinstance(request_uuid, str) else None
    if currency_code is not None and balance_minor is not None:
        try:
            units = minor_to_hub88_units(balance_minor, currency_code)
        except UnknownCurrencyError:
            pass  # an account in a currency we cannot scale: say nothing rather than wrong
        else:
            payload["currency"] = currency_code
            payload["balance"] = units
    return json_response(200, payload)


def _echo_fields(body: bytes) -> tuple[object, object]:
    """request_uuid and user of a request refused before parsing, when they can be read."""
    if len(body) > _ECHO_PARSE_LIMIT:
        return None, None
    parsed = _json_object(body)
    if parsed is None:
        return None, None
    return parsed.get("request_uuid"), parsed.get("user")


# ------------------------------------------------------------------------ dialect


class Hub88:
    """The Hub88 operator Wallet API as a pure dialect (see the module docstring)."""

    name = "hub88"

    def authenticate(self, request: WireRequest, settings: ProviderSettings) -> WireResponse | None:
        header = request.headers.get(SIGNATURE_HEADER)
        key = _public_key(settings.secrets.get("public_key_pem", ""))
        # No timestamp to check: Hub88 requests carry none (see the module docstring).
        if header is not None and key is not None and _signature_holds(key, header, request.body):
            return None
        request_uuid, user = _echo_fields(request.body)
        return _answer(Status.INVALID_SIGNATURE, request_uuid, user=user)

    def parse(self, request: WireRequest, settings: ProviderSettings) -> ParsedCall | WireResponse:
        endpoint = ENDPOINTS.get(request.path)
        if endpoint is None:
            return self.reject(request, "unknown_path")
        if request.method != "POST":
            return self.reject(request, "method_not_allowed")
        body = _json_object(request.body)
        if body is None:
            return _answer(Status.WRONG_SYNTAX, None)
        try:
            values = _read_fields(body, _FIELDS[endpoint])
            return _parsed_call(endpoint, values)
        except _Refused as refused:
            return _answer(refused.status, body.get("request_uuid"), user=body.get("user"))

    def render(self, call: ParsedCall, outcome: Outcome) -> WireResponse:
        user = call.context.get("user") or outcome.player_id
        if call.endpoint == "info":
            # The user/info answer is a profile, not a balance.
            status = (
                Status.OK
                if outcome.error is None
                else _OUTCOME_ERROR_STATUS.get(outcome.error, Status.UNKNOWN)
            )
            return _answer(status, call.request_id, user=user)
        if outcome.error is not None:
            return _answer(
                _OUTCOME_ERROR_STATUS.get(outcome.error, Status.UNKNOWN),
                call.request_id,
                user=user,
                currency_code=outcome.currency,
                balance_minor=outcome.balance,
            )
        if not call.intents:  # user/balance
            return _answer(
                Status.OK,
                call.request_id,
                user=user,
                currency_code=outcome.currency,
                balance_minor=outcome.balance,
            )
        if not outcome.results:
            return _answer(Status.UNKNOWN, call.request_id, user=user)
        # Hub88 calls hold one transaction each. A replay (same transaction, same content)
        # carries the original result, so the answer is the original one.
        result: Result = outcome.results[-1]
        return _answer(
            _RESULT_STATUS.get(result.code, Status.UNKNOWN),
            call.request_id,
            user=user,
            currency_code=result.currency or outcome.currency,
            balance_minor=result.balance if result.balance is not None else outcome.balance,
        )

    def reject(self, request: WireRequest, reason: str) -> WireResponse:
        status = Status.WRONG_SYNTAX if reason in _SYNTAX_REASONS else Status.UNKNOWN
        if reason == "body_too_large":
            return _answer(status, None)  # do not parse what we refused to read
        request_uuid, user = _echo_fields(request.body)
        return _answer(status, request_uuid, user=user)


def _parsed_call(endpoint: str, values: Mapping[str, Any]) -> ParsedCall:
    user: str | None = values.get("user")
    request_uuid: str = values["request_uuid"]
    context = {"user": user}
    if endpoint == "info":
        return ParsedCall(
            "info", PlayerRef(player_id=user), None, (), request_id=request_uuid, context=context
        )
    if endpoint == "balance":
        player = PlayerRef(player_id=user, token=values["token"])
        return ParsedCall("balance", player, None, (), request_id=request_uuid, context=context)

    transaction_uuid: str = values["transaction_uuid"]
    round_ref: str | None = values.get("round")
    game_ref: str | None = values.get("game_code")
    context_extra = {
        "supplier_transaction_id": values.get("supplier_transaction_id"),
        "round_closed": values.get("round_closed"),
        "is_free": values.get("is_free"),
    }
    if endpoint == "bet":
        currency_code: str | None = values["currency"]
        amount = _minor_amount(values["amount"], values["currency"])
        intent = Intent(CommandKind.BET, _key(transaction_uuid), amount, None, round_ref, game_ref)
        player = PlayerRef(player_id=user, token=values["token"], token_must_be_valid=True)
        transaction_ids: tuple[str, ...] = (transaction_uuid,)
    else:
        reference_uuid: str = values["reference_transaction_uuid"]
        transaction_ids = (transaction_uuid, reference_uuid)
        # Wins and rollbacks may arrive after the session ended: the token is not checked.
        player = PlayerRef(player_id=user, token=values.get("token"), token_must_be_valid=False)
        if endpoint == "win":
            currency_code = values["currency"]
            amount = _minor_amount(values["amount"], values["currency"])
            intent = Intent(
                CommandKind.WIN,
                _key(transaction_uuid),
                amount,
                _key(reference_uuid),
                round_ref,
                game_ref,
            )
        else:
            currency_code = None  # a rollback names no currency: the account's is used
            intent = Intent(
                CommandKind.ROLLBACK,
                _key(transaction_uuid),
                0,
                _key(reference_uuid),
                round_ref,
                game_ref,
            )
    return ParsedCall(
        endpoint,
        player,
        currency_code,
        (intent,),
        request_id=request_uuid,
        transaction_ids=transaction_ids,
        round_ref=round_ref,
        context={**context, **context_extra},
    )


DIALECT = Hub88()
