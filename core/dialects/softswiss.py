"""SoftSwiss GIS (the "Universal API" casino wallet): a game content provider calls us.

What this module follows. SoftSwiss's own GIS pages are not in our document store; the
protocol below is what several independent, public operator-side implementations of it
agree on, plus one public provider page that mirrors its terms (all read 2025):

* The terms and the two wallet endpoints: a Belatra "Universal API" single-wallet
  controller and a BGaming seamless controller (operator code, PHP), a Node
  ``SoftSwissPlayService`` and a Java BGaming aggregator (public code search); 7SoftTech's
  seamless API introduction, https://documentation.7softtech.net (same terms: casino, game
  provider, WALLET_URL, CASINO_ID, AUTH_TOKEN).
  - The casino (we) serves ``WALLET_URL/play`` and ``WALLET_URL/rollback``, both POST
    with a JSON object body. ``/play`` without actions (absent or empty) asks for the
    balance; with ``actions`` it carries the round's bets and wins.
  - Every request is signed: header ``X-REQUEST-SIGN`` holds the hex HMAC-SHA256 of the
    raw body keyed with the AUTH_TOKEN shared with the provider. A signature mismatch is
    answered HTTP 403 with error code 403.
  - ``/play`` top-level fields: ``user_id`` (the casino's player id), ``currency``,
    ``game`` (game identifier), ``game_id`` (the provider's round id), ``finished``
    (bool), optionally ``session_id``; each action is ``{"action": "bet" | "win",
    "action_id", "amount"}`` with ``amount`` an integer of currency subunits (cents for
    EUR). ``/rollback`` has the same top level; its actions are ``{"action": "rollback",
    "action_id", "original_action_id"}`` and carry no amount.
  - Success: HTTP 200, ``{"balance": <subunits>}`` for a balance request, else
    ``{"balance", "game_id", "transactions": [{"action_id", "tx_id", "processed_at"}]}``
    with one transaction per action, ``tx_id`` being the casino's id for it.
  - An ``action_id`` already processed is answered with its original transaction, not
    processed again.
  - Errors: ``{"code", "message"}`` plus ``"balance"`` where useful. Codes: 100 not enough
    funds (HTTP 412, with the balance), 101 player invalid, 105 player's own bet limit,
    106 max bet limit, 107 game forbidden to the player, 110 player disabled, 153 game not
    available in the player's country, 154 currency not allowed for the player, 155
    field already set; 400 bad request (badly formatted JSON), 403 forbidden (signature),
    404 not found, 405 game not available to the casino, 500 unknown error, 502 error in
    an external service, 503 service unavailable, 504 timed out. The same list appears in
    renatopag-ai/casino-softswiss, ``src/app/Helpers/Softswiss_helper.php``.
  - HTTP statuses: 403 for a bad signature (every source) and 412 (Precondition Failed)
    for code 100 (three implementations agree). For the other 1xx codes they differ (one
    answers every refusal 412, another 400 or 403); we answer all 1xx refusals 412.
  Note: an unknown or foreign currency is code 154; 153 is the country restriction.
* Amount units: subunits per currency (SoftSwiss publishes each currency's
  ``subunits_to_unit``). The stored material does not fix crypto subunits, so every
  currency we hold counts in our own minor unit (cent, satoshi, 1e-6 USDT, wei): the
  conversion is the identity. :data:`SUBUNIT_EXPONENTS` is the one place to change if a
  provider counts a currency more coarsely; the conversion stays exact.

Decisions where the material leaves room (what a careful integrator does):

* No timestamp: GIS requests carry none in the body or headers, so there is no freshness
  window (``ProviderSettings.timestamp_window_s`` does not apply). A replayed signature
  verifies only over the identical body, and an identical body is answered from the
  stored records, never processed twice.
* The player is named by ``user_id`` alone. ``session_id`` is accepted and ignored: GIS
  trusts the signed server-to-server call, and wins and rollbacks must reach a player
  whose session has ended.
* Linking wins to bets. GIS wins do not name their bet; the round (``game_id``) links
  them. Our wallet resolves one named bet, so a bet's wallet key is its round,
  ``softswiss:round:{game_id}``, and a win or rollback references that key: a win in the
  same request as the bet, or alone in a later request, resolves the bet of its
  ``game_id``. The bet's own ``action_id`` travels as the bet command's ``reference``,
  which the wallet ignores for bets but fingerprints, so a second, different bet in the
  same round is refused as a duplicate rather than mistaken for a retry. Wins and
  rollbacks are keyed by their own ``action_id`` (``softswiss:action:{action_id}``).
  Consequences, by the wallet rules: one bet and one resolution per ``game_id``; a
  ``/play`` holds at most one bet and one win, the bet first (anything else is HTTP 400
  before any money moves, which keeps the request all-or-nothing); a second win for a
  round is refused. Not detected: a provider reusing a bet's ``action_id`` for a bet in
  another round (that is a new round's bet; reused win and rollback ids are detected).
* ``/rollback`` undoes the round's bet. Several rollback actions in one request (a
  provider undoing a round's bet and win together) are one wallet rollback, keyed by the
  smallest rollback ``action_id`` so a retry in any order is the same command; each
  action is listed in the answer with that transaction. A rollback for a round we never
  saw is acknowledged and remembered, so the late bet of that round is refused. Limit: a
  rollback of a *win* cannot reverse it (our wallet rolls back bets only): if the round's
  bet was won the rollback is refused, as "rollback after win" requires.
* HTTP statuses for refusals GIS has no code for (same ``action_id`` with different
  content, win or rollback after the round was resolved, a bet for a rolled-back round):
  HTTP 400, code 400, with a message naming the rule. A win for an unknown round: HTTP
  404, code 404. A disabled player: 412/110. Wallet unavailable: HTTP 503, code 503 (the
  provider retries or rolls back; both are safe). Internal trouble: HTTP 500, code 500,
  a JSON body and never a traceback. Unknown path 404, wrong method 405, oversized body
  413, all with a GIS error body.
* ``tx_id`` is our ledger transaction id; a rollback that moved no money (unknown round)
  answers with its own wallet key, stable across retries. ``processed_at`` is the time we
  received the request (ISO 8601, UTC): a replay keeps the original ``tx_id`` and
  balance, its ``processed_at`` is the retry's.
* Refusal bodies carry ``balance`` when the wallet reported one and nothing of the
  request was undone (so it is the player's real balance); a currency refusal carries
  none, since our balance is in another currency.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

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
from core.money import CURRENCIES, MAX_AMOUNT_MINOR
from core.strict_json import too_deep
from core.wallet import CommandKind, Result, ResultCode

__all__ = [
    "DIALECT",
    "ENDPOINTS",
    "KEY_PREFIX",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "SUBUNIT_EXPONENTS",
    "GisError",
    "SoftSwiss",
    "action_key",
    "minor_to_subunits",
    "round_key",
    "sign",
    "subunits_to_minor",
]

SIGNATURE_HEADER: Final = "x-request-sign"  # WireRequest header names are lower case
KEY_PREFIX: Final = "softswiss:"  # namespaces SoftSwiss ids among every provider's keys
MAX_BODY_BYTES: Final = 64 * 1024  # the gateway's limit; a GIS call is a few hundred bytes

# path below the base path -> our endpoint name
ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType({"/play": "play", "/rollback": "rollback"})

# The wallet stores keys of at most 128 characters, and an all-or-nothing call that must
# undo its bet writes "<bet key>:undo".
_KEY_LIMIT: Final = 128 - len(":undo")
_MAX_REF: Final = 128  # game, user_id: stored as-is by the wallet
_MAX_CARRIED: Final = 1024  # session_id and other strings we only carry
_MAX_ROLLBACKS: Final = 16  # a round has a bet and a win; more is not a real request


def action_key(action_id: str) -> str:
    """The wallet key of a win or rollback action."""
    return f"{KEY_PREFIX}action:{action_id}"


def round_key(game_id: str) -> str:
    """The wallet key of a round's bet, which its win or rollback references."""
    return f"{KEY_PREFIX}round:{game_id}"


_MAX_ACTION_ID: Final = _KEY_LIMIT - len(action_key(""))
_MAX_GAME_ID: Final = _KEY_LIMIT - len(round_key(""))


def sign(body: bytes, auth_token: str) -> str:
    """The ``X-REQUEST-SIGN`` value for a body: hex HMAC-SHA256 keyed with the auth token."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- units

# Exponent of the provider's subunit per currency (subunits per unit = 10 ** exponent).
# Equal to our minor-unit exponent everywhere, so amounts pass through unchanged.
SUBUNIT_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {code: cur.exponent for code, cur in CURRENCIES.items()}
)


def _shift(currency_code: str) -> int:
    shift = CURRENCIES[currency_code].exponent - SUBUNIT_EXPONENTS[currency_code]
    assert shift >= 0, "a provider subunit finer than our minor unit cannot be held exactly"
    return shift


def subunits_to_minor(subunits: int, currency_code: str) -> int:
    """Exact minor units for an amount in the provider's subunits."""
    return subunits * 10 ** _shift(currency_code)


def minor_to_subunits(minor: int, currency_code: str) -> int:
    """A balance in the provider's subunits, rounded down: never more than the player has."""
    return minor // 10 ** _shift(currency_code)


# ---------------------------------------------------------------------------- errors


class GisError(enum.IntEnum):
    NOT_ENOUGH_FUNDS = 100
    PLAYER_INVALID = 101
    BET_LIMIT = 105
    PLAYER_DISABLED = 110
    CURRENCY_NOT_ALLOWED = 154
    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    UNKNOWN = 500
    UNAVAILABLE = 503


# code -> (HTTP status, message)
_ERRORS: Final[Mapping[GisError, tuple[int, str]]] = {
    GisError.NOT_ENOUGH_FUNDS: (412, "Player has not enough funds for this action."),
    GisError.PLAYER_INVALID: (412, "Unknown or invalid player."),
    GisError.BET_LIMIT: (412, "Player reached a personal bet limit."),
    GisError.PLAYER_DISABLED: (412, "Player is disabled: no new bets."),
    GisError.CURRENCY_NOT_ALLOWED: (412, "Currency is not allowed for this player."),
    GisError.BAD_REQUEST: (400, "Bad request."),
    GisError.FORBIDDEN: (403, "Forbidden: X-REQUEST-SIGN does not match the body."),
    GisError.NOT_FOUND: (404, "Not found."),
    GisError.UNKNOWN: (500, "Unknown error."),
    GisError.UNAVAILABLE: (503, "Service unavailable, retry later."),
}

# wallet refusal -> (GIS error, what to add to its message)
_RESULT_ERRORS: Final[Mapping[ResultCode, tuple[GisError, str]]] = {
    ResultCode.INSUFFICIENT_FUNDS: (GisError.NOT_ENOUGH_FUNDS, ""),
    ResultCode.ACCOUNT_LOCKED: (GisError.PLAYER_DISABLED, ""),
    ResultCode.LIMIT_EXCEEDED: (GisError.BET_LIMIT, ""),
    ResultCode.CURRENCY_MISMATCH: (GisError.CURRENCY_NOT_ALLOWED, ""),
    ResultCode.UNKNOWN_ACCOUNT: (GisError.PLAYER_INVALID, ""),
    ResultCode.UNKNOWN_REFERENCE: (GisError.NOT_FOUND, "No bet for this game_id."),
    ResultCode.ALREADY_RESOLVED: (
        GisError.BAD_REQUEST,
        "The bet of this game_id already has its win.",
    ),
    ResultCode.ROLLED_BACK: (GisError.BAD_REQUEST, "This game_id was rolled back."),
    ResultCode.DUPLICATE_MISMATCH: (
        GisError.BAD_REQUEST,
        "This action_id (or a bet for this game_id) was already processed with different content.",
    ),
    ResultCode.BUSY: (GisError.UNAVAILABLE, ""),
    ResultCode.UNAVAILABLE: (GisError.UNAVAILABLE, ""),
}

# Outcome.error words -> GIS error. GIS has no session errors: we never pass a token.
_OUTCOME_ERRORS: Final[Mapping[str, GisError]] = {
    "unknown_player": GisError.PLAYER_INVALID,
    "invalid_token": GisError.PLAYER_INVALID,
    "expired_token": GisError.PLAYER_INVALID,
    "player_blocked": GisError.PLAYER_DISABLED,
    "currency_mismatch": GisError.CURRENCY_NOT_ALLOWED,
    "unavailable": GisError.UNAVAILABLE,
}


def _error(
    error: GisError,
    detail: str = "",
    *,
    balance: int | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> WireResponse:
    http_status, message = _ERRORS[error]
    payload: dict[str, Any] = {"code": int(error), "message": f"{message} {detail}".strip()}
    if balance is not None:
        payload["balance"] = balance
    response = json_response(status or http_status, payload)
    if headers:
        return WireResponse(response.status, response.body, {**response.headers, **headers})
    return response


class _Refused(Exception):
    """A request the dialect refuses while parsing: the GIS error to answer with."""

    def __init__(self, error: GisError, detail: str = "") -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


# ---------------------------------------------------------------------------- dialect


class SoftSwiss:
    """The SoftSwiss GIS casino wallet as a pure dialect (see the module docstring)."""

    name = "softswiss"

    def authenticate(self, request: WireRequest, settings: ProviderSettings) -> WireResponse | None:
        # Route first: an unknown path or method is the same answer signed or not.
        refused = _route(request)
        if refused is not None:
            return refused
        # No timestamp to check: GIS requests carry none (see the module docstring).
        header = request.headers.get(SIGNATURE_HEADER)
        auth_token = settings.secrets.get("auth_token")
        if header is not None and auth_token and _signature_holds(header, request.body, auth_token):
            return None
        return _error(GisError.FORBIDDEN)

    def parse(self, request: WireRequest, settings: ProviderSettings) -> ParsedCall | WireResponse:
        refused = _route(request)
        if refused is not None:
            return refused
        try:
            body = _json_object(request.body)
            processed_at = _iso_utc(request.received_at)
            if ENDPOINTS[request.path] == "play":
                return _parse_play(body, processed_at)
            return _parse_rollback(body, processed_at)
        except _Refused as refusal:
            return _error(refusal.error, refusal.detail)

    def render(self, call: ParsedCall, outcome: Outcome) -> WireResponse:
        if outcome.error is not None:
            return _error(_OUTCOME_ERRORS.get(outcome.error, GisError.UNKNOWN))
        currency_code = outcome.currency
        if currency_code not in CURRENCIES:
            return _error(GisError.UNKNOWN, "The player's account has no known currency.")
        assert currency_code is not None
        if not call.intents:
            if outcome.balance is None:
                return _error(GisError.UNKNOWN, "The wallet reported no balance.")
            return json_response(
                200, {"balance": minor_to_subunits(outcome.balance, currency_code)}
            )

        results = list(outcome.results)
        refused_at = next((i for i, r in enumerate(results) if r.code is not ResultCode.OK), None)
        if refused_at is not None:
            return _refusal(call, results, refused_at, currency_code)
        if len(results) != len(call.intents) or outcome.balance is None:
            return _error(GisError.UNKNOWN, "The wallet did not run every action.")
        processed_at = call.context["processed_at"]
        transactions = [
            {
                "action_id": action_id,
                "tx_id": _tx_id(results[index], call.intents[index]),
                "processed_at": processed_at,
            }
            for action_id, index in call.context["transactions"]
        ]
        return json_response(
            200,
            {
                "balance": minor_to_subunits(outcome.balance, currency_code),
                "game_id": call.round_ref,
                "transactions": transactions,
            },
        )

    def reject(self, request: WireRequest, reason: str) -> WireResponse:
        words = reason.lower().replace("_", " ").replace("-", " ")
        if "large" in words or "too big" in words:
            return _error(
                GisError.BAD_REQUEST, f"Body larger than {MAX_BODY_BYTES} bytes.", status=413
            )
        if "path" in words or "not found" in words:
            return _error(GisError.NOT_FOUND, f"No wallet endpoint {request.path[:_MAX_REF]!r}.")
        if "method" in words:
            return _method_not_allowed(request)
        if any(w in words for w in ("unavailable", "busy", "overload", "timeout", "timed out")):
            return _error(GisError.UNAVAILABLE)
        if any(w in words for w in ("malformed", "bad request", "syntax", "invalid")):
            return _error(GisError.BAD_REQUEST)
        return _error(GisError.UNKNOWN)


DIALECT: Final = SoftSwiss()


# ---------------------------------------------------------------------------- parsing


def _route(request: WireRequest) -> WireResponse | None:
    if request.path not in ENDPOINTS:
        return _error(GisError.NOT_FOUND, f"No wallet endpoint {request.path[:_MAX_REF]!r}.")
    if request.method != "POST":
        return _method_not_allowed(request)
    if len(request.body) > MAX_BODY_BYTES:
        return _error(GisError.BAD_REQUEST, f"Body larger than {MAX_BODY_BYTES} bytes.", status=413)
    return None


def _method_not_allowed(request: WireRequest) -> WireResponse:
    return _error(
        GisError.BAD_REQUEST,
        f"Method {request.method[:16]!r} not allowed; use POST.",
        status=405,
        headers={"allow": "POST"},
    )


def _signature_holds(header: str, body: bytes, auth_token: str) -> bool:
    given = header.strip().lower()
    # compare_digest on str needs ASCII; a non-ASCII header cannot be our hex digest anyway
    return given.isascii() and hmac.compare_digest(given, sign(body, auth_token))


def _iso_utc(timestamp: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (ValueError, OverflowError, OSError):
        moment = datetime.now(tz=UTC)  # received_at is ours; never fail a call over it
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_object(body: bytes) -> dict[str, Any]:
    if too_deep(body):
        raise _Refused(GisError.BAD_REQUEST, "The body is not valid JSON.")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or encoding, huge ints, deep nesting
        raise _Refused(GisError.BAD_REQUEST, "The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise _Refused(GisError.BAD_REQUEST, "The body must be a JSON object.")
    return value


def _text(source: Mapping[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    value = source.get(name)
    if value is None:
        if required:
            raise _Refused(GisError.BAD_REQUEST, f"{name} is required.")
        return None
    if not isinstance(value, str) or not value:
        raise _Refused(GisError.BAD_REQUEST, f"{name} must be a non-empty string.")
    if len(value) > limit:
        raise _Refused(GisError.BAD_REQUEST, f"{name} is longer than {limit} characters.")
    return value


def _required_text(source: Mapping[str, Any], name: str, limit: int) -> str:
    value = _text(source, name, limit)
    assert value is not None
    return value


def _player(body: Mapping[str, Any]) -> PlayerRef:
    user_id = _required_text(body, "user_id", _MAX_CARRIED)
    # "~" opens our house accounts' ids; no provider may name one.
    if len(user_id) > _MAX_REF or user_id.startswith("~"):
        raise _Refused(GisError.PLAYER_INVALID, "user_id is not a player id of this casino.")
    return PlayerRef(player_id=user_id)


def _currency(body: Mapping[str, Any]) -> str:
    code = _required_text(body, "currency", 16)
    if code not in CURRENCIES:
        raise _Refused(GisError.CURRENCY_NOT_ALLOWED, f"{code!r} is not a currency of this wallet.")
    return code


def _amount(action: Mapping[str, Any], currency_code: str) -> int:
    value = action.get("amount")
    if value is None:
        raise _Refused(GisError.BAD_REQUEST, "amount is required.")
    # bool is an int subclass, and a float is never money
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused(GisError.BAD_REQUEST, "amount must be an integer number of subunits.")
    if value < 0:
        raise _Refused(GisError.BAD_REQUEST, "amount must not be negative.")
    minor = subunits_to_minor(value, currency_code)
    if minor > MAX_AMOUNT_MINOR:
        raise _Refused(GisError.BAD_REQUEST, "amount is larger than the wallet can hold.")
    return minor


def _common(body: Mapping[str, Any]) -> tuple[PlayerRef, str, dict[str, Any]]:
    """The top-level fields both endpoints share, checked; the carried ones as context."""
    player = _player(body)
    currency_code = _currency(body)
    finished = body.get("finished")
    if finished is not None and not isinstance(finished, bool):
        raise _Refused(GisError.BAD_REQUEST, "finished must be true or false.")
    session_id = _text(body, "session_id", _MAX_CARRIED, required=False)
    return player, currency_code, {"finished": finished, "session_id": session_id}


def _actions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    actions = body.get("actions")
    if actions is None:
        return []
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise _Refused(GisError.BAD_REQUEST, "actions must be a list of objects.")
    return actions


def _action_ids(actions: list[dict[str, Any]]) -> list[str]:
    ids = [_required_text(a, "action_id", _MAX_ACTION_ID) for a in actions]
    if len(set(ids)) != len(ids):
        raise _Refused(GisError.BAD_REQUEST, "action_id values repeat within the request.")
    return ids


def _parse_play(body: Mapping[str, Any], processed_at: str) -> ParsedCall:
    player, currency_code, context = _common(body)
    actions = _actions(body)
    game = _text(body, "game", _MAX_REF, required=bool(actions))
    game_id = _text(body, "game_id", _MAX_GAME_ID, required=bool(actions))
    if not actions:
        return ParsedCall("balance", player, currency_code, (), round_ref=game_id, context=context)
    assert game_id is not None

    kinds = [a.get("action") for a in actions]
    for kind in kinds:
        if kind not in ("bet", "win"):
            raise _Refused(GisError.BAD_REQUEST, "action must be 'bet' or 'win' on /play.")
    # One bet and one resolution per round (see the module docstring): refusing any other
    # shape here, before money moves, keeps the request all-or-nothing.
    if kinds not in (["bet"], ["win"], ["bet", "win"]):
        raise _Refused(
            GisError.BAD_REQUEST,
            "A request carries at most one bet and one win for its game_id, the bet first.",
        )
    ids = _action_ids(actions)
    bet_key = round_key(game_id)
    intents: list[Intent] = []
    for kind, action_id, action in zip(kinds, ids, actions, strict=True):
        amount = _amount(action, currency_code)
        if kind == "bet":
            # The reference is not used to find anything: it puts the bet's action_id in
            # the wallet's fingerprint of the command (see the module docstring).
            intents.append(
                Intent(CommandKind.BET, bet_key, amount, action_key(action_id), game_id, game)
            )
        else:
            intents.append(
                Intent(CommandKind.WIN, action_key(action_id), amount, bet_key, game_id, game)
            )
    context.update(
        game_id=game_id,
        processed_at=processed_at,
        transactions=tuple((action_id, index) for index, action_id in enumerate(ids)),
    )
    return ParsedCall(
        "play",
        player,
        currency_code,
        tuple(intents),
        transaction_ids=tuple(ids),
        round_ref=game_id,
        atomic=True,
        context=context,
    )


def _parse_rollback(body: Mapping[str, Any], processed_at: str) -> ParsedCall:
    player, currency_code, context = _common(body)
    game = _text(body, "game", _MAX_REF, required=False)
    game_id = _required_text(body, "game_id", _MAX_GAME_ID)
    actions = _actions(body)
    if not actions:
        raise _Refused(
            GisError.BAD_REQUEST, "actions is required and must not be empty on /rollback."
        )
    if len(actions) > _MAX_ROLLBACKS:
        raise _Refused(
            GisError.BAD_REQUEST, f"At most {_MAX_ROLLBACKS} rollback actions per request."
        )
    if any(a.get("action") != "rollback" for a in actions):
        raise _Refused(GisError.BAD_REQUEST, "action must be 'rollback' on /rollback.")
    ids = _action_ids(actions)
    originals = [_required_text(a, "original_action_id", _MAX_CARRIED) for a in actions]
    # One wallet rollback for the round; the smallest id keys it so that a retry listing
    # the same actions in another order is the same command.
    intent = Intent(
        CommandKind.ROLLBACK, action_key(min(ids)), 0, round_key(game_id), game_id, game
    )
    context.update(
        game_id=game_id,
        processed_at=processed_at,
        original_action_ids=tuple(originals),
        transactions=tuple((action_id, 0) for action_id in ids),
    )
    return ParsedCall(
        "rollback",
        player,
        currency_code,
        (intent,),
        transaction_ids=tuple(ids),
        round_ref=game_id,
        atomic=True,
        context=context,
    )


# ---------------------------------------------------------------------------- rendering


def _tx_id(result: Result, intent: Intent) -> str:
    # A rollback of a round we never saw writes no ledger transaction; its key is stable.
    return str(result.tx_id) if result.tx_id is not None else intent.key


def _refusal(
    call: ParsedCall, results: list[Result], refused_at: int, currency_code: str
) -> WireResponse:
    result = results[refused_at]
    error, detail = _RESULT_ERRORS.get(result.code, (GisError.UNKNOWN, ""))
    # An all-or-nothing call undoes the bets it ran before the refusal, so the balance the
    # refusal saw is no longer the player's: report one only when nothing ran before.
    undone = any(
        intent.kind is CommandKind.BET and earlier.code is ResultCode.OK
        for intent, earlier in zip(call.intents[:refused_at], results[:refused_at], strict=True)
    )
    balance = None
    if result.balance is not None and not undone and error is not GisError.CURRENCY_NOT_ALLOWED:
        balance = minor_to_subunits(result.balance, currency_code)
    return _error(error, detail, balance=balance)
