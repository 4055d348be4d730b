"""Conformance tests for the SoftSwiss GIS dialect, run through the in-memory wallet.

Every request is signed here with HMAC-SHA256 over the exact body bytes, independently
of the module's own ``sign``, and every answer is checked field by field with its HTTP
status. The wallet behind them applies the real rules (``core.wallet.decide``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dialects.base import Outcome, ProviderSettings, WireRequest, WireResponse
from core.dialects.softswiss import DIALECT, ENDPOINTS, action_key, round_key
from core.wallet import AccountStatus
from tests.memory_wallet import MemoryWallet

AUTH_TOKEN = "gis-test-auth-token"
SETTINGS = ProviderSettings("softswiss-test", "op-demo", "softswiss", {"auth_token": AUTH_TOKEN})
RECEIVED_AT = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PROCESSED_AT = "2023-11-14T22:13:20.000Z"
START = 100_000  # 1,000.00 EUR in cents

NO_FUNDS = "Player has not enough funds for this action."
INVALID_PLAYER = "Unknown or invalid player."
DISABLED = "Player is disabled: no new bets."
CURRENCY = "Currency is not allowed for this player."
FORBIDDEN = "Forbidden: X-REQUEST-SIGN does not match the body."
ROLLED_BACK = "Bad request. This game_id was rolled back."
ALREADY_WON = "Bad request. The bet of this game_id already has its win."
DUPLICATE = "Bad request. This action_id (or a bet for this game_id) was already processed with different content."
NO_BET = "Not found. No bet for this game_id."


# ---------------------------------------------------------------------------- helpers


def hmac_hex(body: bytes, token: str = AUTH_TOKEN) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def request(
    path: str,
    payload: Any,
    *,
    method: str = "POST",
    token: str | None = AUTH_TOKEN,
    signature: str | None = None,
) -> WireRequest:
    body = payload if isinstance(payload, bytes) else encode(payload)
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-request-sign"] = signature
    elif token is not None:
        headers["x-request-sign"] = hmac_hex(body, token)
    return WireRequest(method, path, headers, body, RECEIVED_AT)


def play_body(
    actions: Any = None,
    *,
    user: str = "alice",
    currency: str = "EUR",
    game_id: Any = "round-1",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": user, "currency": currency, "game": "keno-10"}
    if actions is not None:
        body.update(game_id=game_id, finished=False, actions=actions)
    body.update(extra)
    return body


def bet(action_id: str, amount: Any) -> dict[str, Any]:
    return {"action": "bet", "action_id": action_id, "amount": amount}


def win(action_id: str, amount: Any) -> dict[str, Any]:
    return {"action": "win", "action_id": action_id, "amount": amount}


def rollback_body(
    *pairs: tuple[str, str], user: str = "alice", game_id: str = "round-1"
) -> dict[str, Any]:
    actions = [{"action": "rollback", "action_id": a, "original_action_id": o} for a, o in pairs]
    return {
        "user_id": user,
        "currency": "EUR",
        "game": "keno-10",
        "game_id": game_id,
        "finished": True,
        "actions": actions,
    }


def tx(action_id: str, tx_id: str) -> dict[str, str]:
    return {"action_id": action_id, "tx_id": tx_id, "processed_at": PROCESSED_AT}


def expect(response: WireResponse, status: int, body: dict[str, Any]) -> None:
    assert (response.status, response.json()) == (status, body)
    assert response.headers["content-type"] == "application/json"


def error(code: int, message: str, balance: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if balance is not None:
        body["balance"] = balance
    return body


@pytest.fixture
def wallet() -> MemoryWallet:
    w = MemoryWallet()
    w.add_player("alice", "EUR", START)
    return w


async def play(wallet: MemoryWallet, payload: Any, **kw: Any) -> WireResponse:
    return await wallet.handle(DIALECT, SETTINGS, request("/play", payload, **kw))


async def rollback(wallet: MemoryWallet, payload: Any, **kw: Any) -> WireResponse:
    return await wallet.handle(DIALECT, SETTINGS, request("/rollback", payload, **kw))


# ---------------------------------------------------------------------------- balance, bet, win


async def test_balance_without_actions(wallet: MemoryWallet) -> None:
    expect(await play(wallet, play_body()), 200, {"balance": START})
    # an empty list is no actions too, and a session_id is carried, not required
    expect(await play(wallet, play_body(actions=[], session_id="s-1")), 200, {"balance": START})


async def test_bet_debits_and_lists_the_transaction(wallet: MemoryWallet) -> None:
    response = await play(wallet, play_body([bet("b1", 1_000)]))
    expect(
        response, 200, {"balance": 99_000, "game_id": "round-1", "transactions": [tx("b1", "1")]}
    )
    assert wallet.balance("alice") == 99_000
    command = wallet.commands[-1]
    assert (command.idempotency_key, command.reference, command.round_ref, command.game_ref) == (
        round_key("round-1"),
        action_key("b1"),
        "round-1",
        "keno-10",
    )


async def test_bet_and_win_in_one_request(wallet: MemoryWallet) -> None:
    response = await play(wallet, play_body([bet("b1", 1_000), win("w1", 2_500)], finished=True))
    expect(
        response,
        200,
        {"balance": 101_500, "game_id": "round-1", "transactions": [tx("b1", "1"), tx("w1", "2")]},
    )
    assert wallet.balance("alice") == 101_500


async def test_exact_repeat_returns_the_original_transactions(wallet: MemoryWallet) -> None:
    payload = play_body([bet("b1", 1_000), win("w1", 2_500)])
    first = await play(wallet, payload)
    again = await play(wallet, payload)
    expect(
        again,
        200,
        {"balance": 101_500, "game_id": "round-1", "transactions": [tx("b1", "1"), tx("w1", "2")]},
    )
    assert again.body == first.body
    assert wallet.balance("alice") == 101_500  # debited and credited once


async def test_same_action_id_with_another_amount_is_refused(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    expect(await play(wallet, play_body([bet("b1", 2_000)])), 400, error(400, DUPLICATE, 99_000))
    # a second, different bet in the same round is not mistaken for a retry
    expect(await play(wallet, play_body([bet("b2", 1_000)])), 400, error(400, DUPLICATE, 99_000))
    await play(wallet, play_body([win("w1", 500)]))
    expect(await play(wallet, play_body([win("w1", 700)])), 400, error(400, DUPLICATE, 99_500))
    assert wallet.balance("alice") == 99_500


async def test_insufficient_funds_carries_the_balance(wallet: MemoryWallet) -> None:
    expect(await play(wallet, play_body([bet("b1", START + 1)])), 412, error(100, NO_FUNDS, START))
    assert wallet.balance("alice") == START


async def test_a_refused_bet_refuses_the_whole_request(wallet: MemoryWallet) -> None:
    response = await play(wallet, play_body([bet("b1", START + 1), win("w1", 50_000)]))
    expect(response, 412, error(100, NO_FUNDS, START))
    assert wallet.balance("alice") == START  # the win did not land either
    # the provider's next round, with fresh ids, goes through
    response = await play(wallet, play_body([bet("b2", 1_000), win("w2", 500)], game_id="round-2"))
    expect(
        response,
        200,
        {"balance": 99_500, "game_id": "round-2", "transactions": [tx("b2", "1"), tx("w2", "2")]},
    )


async def test_a_refused_win_undoes_the_bet_of_the_same_request(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000), win("w1", 0)]))
    # w1 reused with another amount: refused, so the new bet of round-2 is undone
    response = await play(
        wallet, play_body([bet("b2", 2_000), win("w1", 9_000)], game_id="round-2")
    )
    expect(response, 400, error(400, DUPLICATE))  # no balance: the one the win saw was undone
    assert wallet.balance("alice") == 99_000
    response = await play(
        wallet, play_body([bet("b3", 2_000), win("w3", 9_000)], game_id="round-3")
    )
    expect(
        response,
        200,
        {"balance": 106_000, "game_id": "round-3", "transactions": [tx("b3", "5"), tx("w3", "6")]},
    )


async def test_wrong_currency(wallet: MemoryWallet) -> None:
    expect(
        await play(wallet, play_body([bet("b1", 1_000)], currency="USD")), 412, error(154, CURRENCY)
    )
    expect(await play(wallet, play_body(currency="USD")), 412, error(154, CURRENCY))
    for code in ("XYZ", "eur"):
        expect(
            await play(wallet, play_body([bet("b2", 1_000)], currency=code)),
            412,
            error(154, f"{CURRENCY} {code!r} is not a currency of this wallet."),
        )
    assert wallet.balance("alice") == START


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-1, "amount must not be negative."),
        (10.0, "amount must be an integer number of subunits."),
        (0.1, "amount must be an integer number of subunits."),
        (True, "amount must be an integer number of subunits."),
        ("1000", "amount must be an integer number of subunits."),
        (None, "amount is required."),
        (10**40, "amount is larger than the wallet can hold."),
    ],
)
async def test_bad_amounts_are_refused(wallet: MemoryWallet, amount: Any, message: str) -> None:
    expect(
        await play(wallet, play_body([bet("b1", amount)])),
        400,
        error(400, f"Bad request. {message}"),
    )
    expect(
        await play(wallet, play_body([win("w1", amount)])),
        400,
        error(400, f"Bad request. {message}"),
    )
    assert wallet.balance("alice") == START
    assert wallet.commands == []  # refused before the wallet was asked anything


async def test_zero_bet_and_zero_win(wallet: MemoryWallet) -> None:
    expect(
        await play(wallet, play_body([bet("b1", 0)])),
        200,
        {"balance": START, "game_id": "round-1", "transactions": [tx("b1", "1")]},
    )
    expect(
        await play(wallet, play_body([win("w1", 0)], finished=True)),
        200,
        {"balance": START, "game_id": "round-1", "transactions": [tx("w1", "2")]},
    )


async def test_win_in_a_later_request_resolves_the_bet_of_its_game_id(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    expect(
        await play(wallet, play_body([win("w1", 3_000)], finished=True)),
        200,
        {"balance": 102_000, "game_id": "round-1", "transactions": [tx("w1", "2")]},
    )


async def test_repeated_win_is_credited_once(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    payload = play_body([win("w1", 3_000)])
    first = await play(wallet, payload)
    again = await play(wallet, payload)
    expect(again, 200, {"balance": 102_000, "game_id": "round-1", "transactions": [tx("w1", "2")]})
    assert again.body == first.body
    assert wallet.balance("alice") == 102_000
    # a second win for the round, under a new id, is refused: one resolution per bet
    expect(await play(wallet, play_body([win("w2", 3_000)])), 400, error(400, ALREADY_WON, 102_000))


async def test_win_for_an_unknown_bet(wallet: MemoryWallet) -> None:
    expect(
        await play(wallet, play_body([win("w1", 3_000)], game_id="never-bet")),
        404,
        error(404, NO_BET, START),
    )
    assert wallet.balance("alice") == START


async def test_disabled_player_cannot_bet_but_gets_the_win(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    wallet.accounts["alice"].status = AccountStatus.LOCKED
    expect(
        await play(wallet, play_body([bet("b2", 1_000)], game_id="round-2")),
        412,
        error(110, DISABLED, 99_000),
    )
    expect(
        await play(wallet, play_body([win("w1", 4_000)], session_id="ended")),
        200,
        {"balance": 103_000, "game_id": "round-1", "transactions": [tx("w1", "2")]},
    )
    expect(
        await rollback(wallet, rollback_body(("rb2", "b2"), game_id="round-2")),
        200,
        {"balance": 103_000, "game_id": "round-2", "transactions": [tx("rb2", action_key("rb2"))]},
    )


async def test_unknown_user(wallet: MemoryWallet) -> None:
    expect(await play(wallet, play_body(user="mallory")), 412, error(101, INVALID_PLAYER))
    expect(
        await play(wallet, play_body([bet("b1", 1_000)], user="mallory")),
        412,
        error(101, INVALID_PLAYER),
    )
    expect(
        await play(wallet, play_body(user="~house")),
        412,
        error(101, f"{INVALID_PLAYER} user_id is not a player id of this casino."),
    )
    assert wallet.commands == []


# ---------------------------------------------------------------------------- rollbacks


async def test_rollback_refunds_the_bet(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    expect(
        await rollback(wallet, rollback_body(("rb1", "b1"))),
        200,
        {"balance": START, "game_id": "round-1", "transactions": [tx("rb1", "2")]},
    )
    command = wallet.commands[-1]
    assert (command.idempotency_key, command.reference) == (action_key("rb1"), round_key("round-1"))


async def test_repeated_rollback_refunds_once(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    first = await rollback(wallet, rollback_body(("rb1", "b1")))
    again = await rollback(wallet, rollback_body(("rb1", "b1")))
    expect(again, 200, {"balance": START, "game_id": "round-1", "transactions": [tx("rb1", "2")]})
    assert again.body == first.body
    assert wallet.balance("alice") == START
    # another rollback id for the same round: already rolled back
    expect(
        await rollback(wallet, rollback_body(("rb2", "b1"))), 400, error(400, ROLLED_BACK, START)
    )


async def test_rollback_of_an_unknown_round_then_the_late_bet(wallet: MemoryWallet) -> None:
    expect(
        await rollback(wallet, rollback_body(("rb1", "b1"))),
        200,
        {"balance": START, "game_id": "round-1", "transactions": [tx("rb1", action_key("rb1"))]},
    )
    expect(
        await play(wallet, play_body([bet("b1", 1_000), win("w1", 5_000)])),
        400,
        error(400, ROLLED_BACK, START),
    )
    assert wallet.balance("alice") == START


async def test_win_after_rollback_is_refused(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    await rollback(wallet, rollback_body(("rb1", "b1")))
    expect(await play(wallet, play_body([win("w1", 5_000)])), 400, error(400, ROLLED_BACK, START))
    assert wallet.balance("alice") == START


async def test_rollback_after_win_is_refused(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000), win("w1", 5_000)]))
    expect(
        await rollback(wallet, rollback_body(("rb1", "b1"))), 400, error(400, ALREADY_WON, 104_000)
    )
    expect(
        await rollback(wallet, rollback_body(("rb2", "b1"), ("rb3", "w1"))),
        400,
        error(400, ALREADY_WON, 104_000),
    )
    assert wallet.balance("alice") == 104_000


async def test_rollback_of_a_rounds_actions_together_is_one_refund(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    # the provider undoes the bet and a win we never received, in one request
    response = await rollback(wallet, rollback_body(("rb-b", "b1"), ("rb-w", "w1")))
    expected = {
        "balance": START,
        "game_id": "round-1",
        "transactions": [tx("rb-b", "2"), tx("rb-w", "2")],
    }
    expect(response, 200, expected)
    # a retry listing them the other way round is the same command
    response = await rollback(wallet, rollback_body(("rb-w", "w1"), ("rb-b", "b1")))
    expect(response, 200, {**expected, "transactions": [tx("rb-w", "2"), tx("rb-b", "2")]})
    assert wallet.balance("alice") == START


async def test_two_open_rounds_are_resolved_independently(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)], game_id="round-1"))
    await play(wallet, play_body([bet("b2", 3_000)], game_id="round-2"))
    assert wallet.balance("alice") == 96_000
    expect(
        await play(wallet, play_body([win("w2", 5_000)], game_id="round-2")),
        200,
        {"balance": 101_000, "game_id": "round-2", "transactions": [tx("w2", "3")]},
    )
    expect(
        await rollback(wallet, rollback_body(("rb1", "b1"), game_id="round-1")),
        200,
        {"balance": 102_000, "game_id": "round-1", "transactions": [tx("rb1", "4")]},
    )


async def test_63_727_092_34_eur_is_exact() -> None:
    wallet = MemoryWallet()
    wallet.add_player("alice", "EUR", 6_372_709_234)
    response = await play(wallet, play_body())
    expect(response, 200, {"balance": 6_372_709_234})
    assert response.body == b'{"balance":6372709234}'
    expect(
        await play(wallet, play_body([bet("b1", 6_372_709_234)])),
        200,
        {"balance": 0, "game_id": "round-1", "transactions": [tx("b1", "1")]},
    )
    expect(
        await play(wallet, play_body([win("w1", 6_372_709_234)])),
        200,
        {"balance": 6_372_709_234, "game_id": "round-1", "transactions": [tx("w1", "2")]},
    )


async def test_crypto_subunits_pass_through_exactly() -> None:
    wallet = MemoryWallet()
    wallet.add_player("satoshi", "ETH", 12 * 10**18 + 1)  # 12.000000000000000001 ETH in wei
    body = play_body([bet("b1", 10**18)], user="satoshi", currency="ETH")
    expect(
        await play(wallet, body),
        200,
        {"balance": 11 * 10**18 + 1, "game_id": "round-1", "transactions": [tx("b1", "1")]},
    )


# ---------------------------------------------------------------------------- signatures


async def test_bad_signatures_are_refused(wallet: MemoryWallet) -> None:
    payload = play_body([bet("b1", 1_000)])
    body = encode(payload)
    refused = error(403, FORBIDDEN)
    expect(await play(wallet, payload, token="someone-elses-token"), 403, refused)
    expect(await play(wallet, payload, token=None), 403, refused)
    expect(await play(wallet, payload, signature=""), 403, refused)
    expect(await play(wallet, payload, signature="é" * 64), 403, refused)
    # a signature seen on the wire, replayed over a changed body
    changed = encode(play_body([bet("b1", 99_000)]))
    expect(await play(wallet, changed, signature=hmac_hex(body)), 403, refused)
    # a signature over the parsed-and-re-encoded JSON is not one over the bytes sent
    spaced = json.dumps(payload, indent=2).encode()
    expect(await play(wallet, spaced, signature=hmac_hex(body)), 403, refused)
    no_token = ProviderSettings("softswiss-test", "op-demo", "softswiss", {})
    expect(
        await wallet.handle(DIALECT, no_token, request("/play", payload, token="")), 403, refused
    )
    assert wallet.balance("alice") == START
    assert wallet.commands == []
    # the same bytes, signed right (upper-case hex is the same digest), go through
    expect(
        await play(wallet, spaced, signature=hmac_hex(spaced).upper()),
        200,
        {"balance": 99_000, "game_id": "round-1", "transactions": [tx("b1", "1")]},
    )


async def test_rollback_needs_a_signature_too(wallet: MemoryWallet) -> None:
    await play(wallet, play_body([bet("b1", 1_000)]))
    expect(
        await rollback(wallet, rollback_body(("rb1", "b1")), token="wrong"),
        403,
        error(403, FORBIDDEN),
    )
    assert wallet.balance("alice") == 99_000


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/play", b"{not json", "The body is not valid JSON."),
        ("/play", b"", "The body is not valid JSON."),
        ("/play", b"\xff\xfe\x00", "The body is not valid JSON."),
        ("/play", b"[" * 100_000 + b"]" * 100_000, None),  # larger than the body limit
        ("/play", b"[" * 30_000 + b"]" * 30_000, "The body is not valid JSON."),  # nesting too deep
        ("/play", b'{"amount": ' + b"9" * 5_000 + b"}", "The body is not valid JSON."),
        ("/play", b"[]", "The body must be a JSON object."),
        ("/play", encode({"currency": "EUR"}), "user_id is required."),
        ("/play", encode({"user_id": 7, "currency": "EUR"}), "user_id must be a non-empty string."),
        (
            "/play",
            encode({"user_id": "", "currency": "EUR"}),
            "user_id must be a non-empty string.",
        ),
        ("/play", encode({"user_id": "alice"}), "currency is required."),
        (
            "/play",
            encode({"user_id": "alice", "currency": 978}),
            "currency must be a non-empty string.",
        ),
        ("/play", encode(play_body(finished="yes")), "finished must be true or false."),
        ("/play", encode(play_body(session_id=5)), "session_id must be a non-empty string."),
        (
            "/play",
            encode(play_body(actions={"action": "bet"})),
            "actions must be a list of objects.",
        ),
        ("/play", encode(play_body(actions=["bet"])), "actions must be a list of objects."),
        (
            "/play",
            encode(play_body([{"action": "refund", "action_id": "x", "amount": 1}])),
            "action must be 'bet' or 'win' on /play.",
        ),
        (
            "/play",
            encode(play_body([{"action_id": "x", "amount": 1}])),
            "action must be 'bet' or 'win' on /play.",
        ),
        ("/play", encode(play_body([{"action": "bet", "amount": 1}])), "action_id is required."),
        (
            "/play",
            encode(play_body([{"action": "bet", "action_id": 12, "amount": 1}])),
            "action_id must be a non-empty string.",
        ),
        (
            "/play",
            encode(play_body([bet("b" * 200, 1)])),
            "action_id is longer than 106 characters.",
        ),
        ("/play", encode({**play_body([bet("b1", 1)]), "game_id": None}), "game_id is required."),
        (
            "/play",
            encode(play_body([bet("b1", 1)], game_id=17)),
            "game_id must be a non-empty string.",
        ),
        (
            "/play",
            encode(play_body([bet("b1", 1)], game_id="g" * 200)),
            "game_id is longer than 107 characters.",
        ),
        ("/play", encode({**play_body([bet("b1", 1)]), "game": None}), "game is required."),
        (
            "/play",
            encode(play_body([bet("b1", 1), bet("b1", 1)])),
            "A request carries at most one bet and one win for its game_id, the bet first.",
        ),
        (
            "/play",
            encode(play_body([bet("b1", 1), bet("b2", 1)])),
            "A request carries at most one bet and one win for its game_id, the bet first.",
        ),
        (
            "/play",
            encode(play_body([win("w1", 1), win("w2", 1)])),
            "A request carries at most one bet and one win for its game_id, the bet first.",
        ),
        (
            "/play",
            encode(play_body([win("w1", 1), bet("b1", 1)])),
            "A request carries at most one bet and one win for its game_id, the bet first.",
        ),
        (
            "/play",
            encode(play_body([bet("x", 1), win("x", 1)])),
            "action_id values repeat within the request.",
        ),
        (
            "/rollback",
            encode({**rollback_body(("rb1", "b1")), "actions": []}),
            "actions is required and must not be empty on /rollback.",
        ),
        (
            "/rollback",
            encode({**rollback_body(("rb1", "b1")), "game_id": None}),
            "game_id is required.",
        ),
        (
            "/rollback",
            encode({**rollback_body(), "actions": [bet("b1", 1)]}),
            "action must be 'rollback' on /rollback.",
        ),
        (
            "/rollback",
            encode({**rollback_body(), "actions": [{"action": "rollback", "action_id": "rb1"}]}),
            "original_action_id is required.",
        ),
        (
            "/rollback",
            encode(rollback_body(*[(f"rb{i}", f"b{i}") for i in range(17)])),
            "At most 16 rollback actions per request.",
        ),
        (
            "/rollback",
            encode(rollback_body(("rb1", "b1"), ("rb1", "b2"))),
            "action_id values repeat within the request.",
        ),
    ],
)
async def test_malformed_requests_get_a_400(
    wallet: MemoryWallet, path: str, body: bytes, message: str | None
) -> None:
    response = await wallet.handle(DIALECT, SETTINGS, request(path, body))
    if message is None:
        expect(response, 413, error(400, "Bad request. Body larger than 65536 bytes."))
    else:
        expect(response, 400, error(400, f"Bad request. {message}"))
    assert wallet.balance("alice") == START
    assert wallet.commands == []


async def test_unknown_paths_and_wrong_methods(wallet: MemoryWallet) -> None:
    payload = play_body([bet("b1", 1_000)])
    response = await wallet.handle(DIALECT, SETTINGS, request("/freespins", payload))
    expect(response, 404, error(404, "Not found. No wallet endpoint '/freespins'."))
    response = await wallet.handle(DIALECT, SETTINGS, request("/play", payload, method="GET"))
    expect(response, 405, error(400, "Bad request. Method 'GET' not allowed; use POST."))
    assert response.headers["allow"] == "POST"
    # routing comes before the signature: unsigned requests get the same answers
    response = await wallet.handle(DIALECT, SETTINGS, request("/nope", payload, token=None))
    expect(response, 404, error(404, "Not found. No wallet endpoint '/nope'."))
    assert wallet.commands == []
    assert sorted(ENDPOINTS) == ["/play", "/rollback"]


@pytest.mark.parametrize(
    ("reason", "status", "body"),
    [
        ("body too large", 413, error(400, "Bad request. Body larger than 65536 bytes.")),
        ("body_too_large", 413, error(400, "Bad request. Body larger than 65536 bytes.")),
        ("unknown_path", 404, error(404, "Not found. No wallet endpoint '/play'.")),
        (
            "method_not_allowed",
            405,
            error(400, "Bad request. Method 'POST' not allowed; use POST."),
        ),
        ("wallet unavailable", 503, error(503, "Service unavailable, retry later.")),
        ("malformed", 400, error(400, "Bad request.")),
        ("internal error", 500, error(500, "Unknown error.")),
    ],
)
def test_reject_answers_in_the_gis_shape(reason: str, status: int, body: dict[str, Any]) -> None:
    expect(DIALECT.reject(request("/play", b"{}"), reason), status, body)


def test_unavailable_wallet_is_a_retryable_503() -> None:
    call = DIALECT.parse(request("/play", play_body([bet("b1", 1_000)])), SETTINGS)
    assert not isinstance(call, WireResponse)
    outcome = Outcome((), None, None, None, error="unavailable")
    expect(DIALECT.render(call, outcome), 503, error(503, "Service unavailable, retry later."))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(
    [
        "user_id",
        "currency",
        "game",
        "game_id",
        "finished",
        "session_id",
        "actions",
        "action",
        "action_id",
        "amount",
        "original_action_id",
    ]
)
_action = st.dictionaries(
    st.sampled_from(["action", "action_id", "amount", "original_action_id"]),
    st.sampled_from(["bet", "win", "rollback", "b1", 0, 5, -1, 1.5, None]) | _json_values,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(["/play", "/rollback"]),
    base=st.dictionaries(_fields, _json_values, max_size=6),
    actions=st.lists(_action, max_size=3) | _json_values,
)
def test_parse_never_raises(path: str, base: dict[str, Any], actions: Any) -> None:
    body = {
        "user_id": "alice",
        "currency": "EUR",
        "game": "g",
        "game_id": "r",
        **base,
        "actions": actions,
    }
    parsed = DIALECT.parse(request(path, body), SETTINGS)
    if isinstance(parsed, WireResponse):
        assert parsed.status in (400, 412)
        assert set(parsed.json()) == {"code", "message"}
    else:
        assert all(len(i.key) <= 123 and i.amount >= 0 for i in parsed.intents)
