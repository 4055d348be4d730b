"""Hub88 operator Wallet API conformance: signed requests through the in-memory wallet.

Every request is signed over its exact body bytes with a real RSA key, goes through
``MemoryWallet.handle`` (authenticate -> parse -> wallet rules -> render), and every
answer is compared field by field with what Hub88 expects.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.dialects.base import (
    Outcome,
    ParsedCall,
    PlayerRef,
    ProviderSettings,
    WireRequest,
    WireResponse,
)
from core.dialects.hub88 import (
    DIALECT,
    ENDPOINTS,
    KEY_PREFIX,
    SIGNATURE_HEADER,
    Hub88,
    Status,
    hub88_units_to_minor,
    minor_to_hub88_units,
)
from core.wallet import AccountStatus, CommandKind
from tests.memory_wallet import MemoryWallet

PLAYER = "player-0001"
TOKEN = "token-0001"
OTHER_PLAYER = "player-0002"
OTHER_TOKEN = "token-0002"
START_MINOR = 100_000  # 1,000.00 EUR
UNITS_PER_CENT = 1000  # Hub88 units are 1/100000 of a euro


@pytest.fixture(scope="module")
def hub88_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def settings(hub88_key: rsa.RSAPrivateKey) -> ProviderSettings:
    pem = hub88_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ProviderSettings("hub88-test", "op-demo", "hub88", {"public_key_pem": pem.decode()})


@pytest.fixture
def wallet() -> MemoryWallet:
    wallet = MemoryWallet()
    wallet.add_player(PLAYER, "EUR", START_MINOR, token=TOKEN)
    wallet.add_player(OTHER_PLAYER, "EUR", START_MINOR, token=OTHER_TOKEN)
    return wallet


_request_numbers = itertools.count(1)


def new_request_uuid() -> str:
    return f"00000000-0000-4000-8000-{next(_request_numbers):012d}"


def sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def wire(path: str, body: bytes, *, signature: str | None, method: str = "POST") -> WireRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return WireRequest(method, path, headers, body, received_at=1_700_000_000.0)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class Hub88Client:
    """Plays Hub88: signs each body with the provider key and sends it to the wallet."""

    def __init__(
        self, wallet: MemoryWallet, settings: ProviderSettings, key: rsa.RSAPrivateKey
    ) -> None:
        self.wallet = wallet
        self.settings = settings
        self.key = key

    async def send_bytes(
        self, path: str, body: bytes, *, signature: str | None = None
    ) -> WireResponse:
        request = wire(
            path, body, signature=sign(self.key, body) if signature is None else signature
        )
        return await self.wallet.handle(DIALECT, self.settings, request)

    async def send(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.send_bytes(path, encode(payload))
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def hub88(
    wallet: MemoryWallet, settings: ProviderSettings, hub88_key: rsa.RSAPrivateKey
) -> Hub88Client:
    return Hub88Client(wallet, settings, hub88_key)


def bet_body(transaction_uuid: str, amount: int, **changes: Any) -> dict[str, Any]:
    body = {
        "user": PLAYER,
        "transaction_uuid": transaction_uuid,
        "supplier_transaction_id": f"sup-{transaction_uuid}",
        "token": TOKEN,
        "supplier_user": f"cg_{PLAYER}",
        "round_closed": False,
        "round": "round-1",
        "reward_uuid": None,
        "request_uuid": new_request_uuid(),
        "is_free": False,
        "is_aggregated": False,
        "game_code": "rgs_keno",
        "currency": "EUR",
        "bet": "numbers:1,2,3",
        "amount": amount,
        "meta": {"selection": [1, 2, 3]},
    }
    body.update(changes)
    return body


def win_body(transaction_uuid: str, bet_uuid: str, amount: int, **changes: Any) -> dict[str, Any]:
    body = bet_body(
        transaction_uuid, amount, reference_transaction_uuid=bet_uuid, round_closed=True
    )
    body.update(changes)
    return body


def rollback_body(transaction_uuid: str, bet_uuid: str, **changes: Any) -> dict[str, Any]:
    body = {
        "user": PLAYER,
        "transaction_uuid": transaction_uuid,
        "supplier_transaction_id": f"sup-{transaction_uuid}",
        "token": TOKEN,
        "round_closed": True,
        "round": "round-1",
        "request_uuid": new_request_uuid(),
        "reference_transaction_uuid": bet_uuid,
        "game_code": "rgs_keno",
        "meta": None,
    }
    body.update(changes)
    return body


def answer(
    status: Status, request: dict[str, Any], balance_minor: int | None, currency: str = "EUR"
) -> dict[str, Any]:
    """The exact Hub88 answer: user, status, request_uuid echoed, then currency and balance."""
    expected: dict[str, Any] = {
        "user": request["user"],
        "status": status.value,
        "request_uuid": request["request_uuid"],
    }
    if balance_minor is not None:
        expected["currency"] = currency
        expected["balance"] = minor_to_hub88_units(balance_minor, currency)
    return expected


def early_refusal(
    status: Status, request_uuid: str | None, user: str | None = PLAYER
) -> dict[str, Any]:
    """A refusal before the wallet is reached: no currency, no balance."""
    expected: dict[str, Any] = {} if user is None else {"user": user}
    expected.update(status=status.value, request_uuid=request_uuid)
    return expected


# ------------------------------------------------------------------- the contract


def test_dialect_is_registered_under_its_name() -> None:
    assert isinstance(DIALECT, Hub88)
    assert DIALECT.name == "hub88"
    assert set(ENDPOINTS) == {
        "/user/info",
        "/user/balance",
        "/transaction/bet",
        "/transaction/win",
        "/transaction/rollback",
    }


# ------------------------------------------------------------------------ balance


async def test_user_info_names_the_player(hub88: Hub88Client) -> None:
    request = {"user": PLAYER, "request_uuid": new_request_uuid()}
    assert await hub88.send("/user/info", request) == answer(Status.OK, request, None)


async def test_user_balance_in_hub88_units(hub88: Hub88Client) -> None:
    request = {
        "user": PLAYER,
        "token": TOKEN,
        "request_uuid": new_request_uuid(),
        "game_code": "rgs_keno",
    }
    reply = await hub88.send("/user/balance", request)
    assert reply == answer(Status.OK, request, START_MINOR)
    assert reply["balance"] == 100_000_000  # 1,000.00 EUR x 100000


async def test_user_balance_by_token_alone_names_the_user(hub88: Hub88Client) -> None:
    request = {"token": TOKEN, "request_uuid": new_request_uuid(), "game_code": None}
    reply = await hub88.send("/user/balance", request)
    assert reply == {**answer(Status.OK, {**request, "user": PLAYER}, START_MINOR)}


async def test_user_balance_with_an_expired_or_unknown_token(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    wallet.expire(TOKEN)
    request = {
        "user": PLAYER,
        "token": TOKEN,
        "request_uuid": new_request_uuid(),
        "game_code": "rgs_keno",
    }
    assert await hub88.send("/user/balance", request) == answer(Status.TOKEN_EXPIRED, request, None)
    request = {**request, "token": "no-such-token", "request_uuid": new_request_uuid()}
    assert await hub88.send("/user/balance", request) == answer(Status.INVALID_TOKEN, request, None)


async def test_unknown_user(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    request = {"user": "nobody-here", "request_uuid": new_request_uuid()}
    assert await hub88.send("/user/info", request) == answer(Status.UNKNOWN, request, None)
    # a bet naming an unknown user with someone else's session is a token problem
    bet = bet_body("tx-unknown-user", 1000, user="nobody-here")
    assert await hub88.send("/transaction/bet", bet) == answer(Status.INVALID_TOKEN, bet, None)
    # a win does not check the token, so it is the user who is unknown
    win = win_body("tx-unknown-user-win", "tx-x", 1000, user="nobody-here", token="gone")
    assert await hub88.send("/transaction/win", win) == answer(Status.UNKNOWN, win, None)
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.balance(OTHER_PLAYER) == START_MINOR


# ---------------------------------------------------------------------------- bets


async def test_bet_debits_and_answers_the_new_balance(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    request = bet_body("tx-bet-1", 250 * UNITS_PER_CENT)  # 2.50 EUR
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.OK, request, START_MINOR - 250
    )
    assert wallet.balance(PLAYER) == START_MINOR - 250
    command = wallet.commands[-1]
    assert command.kind is CommandKind.BET
    assert command.idempotency_key == f"{KEY_PREFIX}tx-bet-1"
    assert (command.amount, command.currency) == (250, "EUR")
    assert (command.round_ref, command.game_ref) == ("round-1", "rgs_keno")


async def test_exact_repeat_returns_the_original_answer_and_debits_once(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    first = bet_body("tx-repeat", 1000 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/bet", first) == answer(
        Status.OK, first, START_MINOR - 1000
    )
    other = bet_body("tx-after", 500 * UNITS_PER_CENT)
    await hub88.send("/transaction/bet", other)
    # Hub88 retries with the same transaction but a fresh request_uuid: the original
    # answer (balance as it was then), echoing the retry's request_uuid.
    retry = {**first, "request_uuid": new_request_uuid()}
    assert await hub88.send("/transaction/bet", retry) == answer(
        Status.OK, retry, START_MINOR - 1000
    )
    assert wallet.balance(PLAYER) == START_MINOR - 1500


async def test_same_transaction_with_another_amount_is_a_duplicate(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    first = bet_body("tx-dup", 1000 * UNITS_PER_CENT)
    await hub88.send("/transaction/bet", first)
    for changed in (
        {"amount": 2000 * UNITS_PER_CENT},
        {"round": "round-2"},
        {"game_code": "other_game"},
    ):
        reuse = {**first, **changed, "request_uuid": new_request_uuid()}
        reply = await hub88.send("/transaction/bet", reuse)
        assert reply == answer(Status.DUPLICATE_TRANSACTION, reuse, START_MINOR - 1000)
    assert wallet.balance(PLAYER) == START_MINOR - 1000


async def test_not_enough_money_carries_the_real_balance(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    request = bet_body("tx-too-big", (START_MINOR + 1) * UNITS_PER_CENT)
    reply = await hub88.send("/transaction/bet", request)
    assert reply == answer(Status.NOT_ENOUGH_MONEY, request, START_MINOR)
    assert reply["balance"] == 100_000_000
    assert wallet.balance(PLAYER) == START_MINOR


async def test_wrong_currency(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    request = bet_body("tx-usd", 1000, currency="USD")
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.WRONG_CURRENCY, request, START_MINOR
    )
    # a currency we do not trade at all cannot even be converted
    request = bet_body("tx-xyz", 1000, currency="XYZ")
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.WRONG_CURRENCY, request, None
    )
    request = bet_body("tx-lower", 1000, currency="eur")
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.WRONG_CURRENCY, request, None
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_negative_amount_is_wrong_syntax(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    request = bet_body("tx-negative", -1000)
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.WRONG_SYNTAX, request, None
    )
    win = win_body("tx-negative-win", "tx-negative", -1000)
    assert await hub88.send("/transaction/win", win) == answer(Status.WRONG_SYNTAX, win, None)
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.commands == []


async def test_zero_bet_and_zero_win(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    bet = bet_body("tx-zero", 0, is_free=True)
    assert await hub88.send("/transaction/bet", bet) == answer(Status.OK, bet, START_MINOR)
    win = win_body("tx-zero-win", "tx-zero", 0)
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR)
    # the zero bet is resolved: a second win is refused
    again = win_body("tx-zero-win-2", "tx-zero", 500 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/win", again) == answer(Status.UNKNOWN, again, START_MINOR)
    assert wallet.balance(PLAYER) == START_MINOR


async def test_bet_with_an_expired_or_unknown_token_is_refused(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    wallet.expire(TOKEN)
    request = bet_body("tx-expired", 1000)
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.TOKEN_EXPIRED, request, None
    )
    request = bet_body("tx-bad-token", 1000, token="no-such-token")
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.INVALID_TOKEN, request, None
    )
    # somebody else's live session does not authorise this user
    request = bet_body("tx-other-token", 1000, token=OTHER_TOKEN)
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.INVALID_TOKEN, request, None
    )
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.balance(OTHER_PLAYER) == START_MINOR


async def test_disabled_user_cannot_bet_but_receives_wins(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    bet = bet_body("tx-before-lock", 1000 * UNITS_PER_CENT)
    await hub88.send("/transaction/bet", bet)
    wallet.accounts[PLAYER].status = AccountStatus.LOCKED
    refused = bet_body("tx-while-locked", 100 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/bet", refused) == answer(
        Status.USER_DISABLED, refused, START_MINOR - 1000
    )
    win = win_body("tx-win-while-locked", "tx-before-lock", 3000 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR + 2000)
    assert wallet.balance(PLAYER) == START_MINOR + 2000


async def test_locked_at_creation_is_disabled(
    settings: ProviderSettings, hub88_key: rsa.RSAPrivateKey
) -> None:
    wallet = MemoryWallet()
    wallet.add_player(PLAYER, "EUR", START_MINOR, token=TOKEN, locked=True)
    client = Hub88Client(wallet, settings, hub88_key)
    request = bet_body("tx-locked", 1000)
    assert await client.send("/transaction/bet", request) == answer(
        Status.USER_DISABLED, request, START_MINOR
    )
    assert wallet.balance(PLAYER) == START_MINOR


# ---------------------------------------------------------------------------- wins


async def test_win_credits_the_bet(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    win = win_body("tx-win", "tx-bet", 3500 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR + 2500)
    command = wallet.commands[-1]
    assert command.kind is CommandKind.WIN
    assert (command.idempotency_key, command.reference) == (
        f"{KEY_PREFIX}tx-win",
        f"{KEY_PREFIX}tx-bet",
    )


async def test_repeated_win_is_credited_once(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    win = win_body("tx-win", "tx-bet", 3500 * UNITS_PER_CENT)
    first = await hub88.send("/transaction/win", win)
    retry = {**win, "request_uuid": new_request_uuid()}
    assert await hub88.send("/transaction/win", retry) == {
        **first,
        "request_uuid": retry["request_uuid"],
    }
    assert wallet.balance(PLAYER) == START_MINOR + 2500
    # the same win id for a different bet is another transaction under a used id
    moved = {**win, "reference_transaction_uuid": "tx-other", "request_uuid": new_request_uuid()}
    assert await hub88.send("/transaction/win", moved) == answer(
        Status.DUPLICATE_TRANSACTION, moved, START_MINOR + 2500
    )


async def test_win_for_an_unknown_bet(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    win = win_body("tx-orphan-win", "tx-never-placed", 1000)
    assert await hub88.send("/transaction/win", win) == answer(
        Status.TRANSACTION_DOES_NOT_EXIST, win, START_MINOR
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_win_with_an_expired_or_unknown_token_is_accepted(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    await hub88.send(
        "/transaction/bet", bet_body("tx-bet-a", 1000 * UNITS_PER_CENT, round="round-a")
    )
    await hub88.send(
        "/transaction/bet", bet_body("tx-bet-b", 1000 * UNITS_PER_CENT, round="round-b")
    )
    wallet.expire(TOKEN)
    win = win_body("tx-win-a", "tx-bet-a", 1500 * UNITS_PER_CENT, round="round-a")
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR - 500)
    # a session the wallet has already forgotten, and no token at all
    win = win_body(
        "tx-win-b", "tx-bet-b", 1500 * UNITS_PER_CENT, round="round-b", token="forgotten"
    )
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR + 1000)
    rollback = rollback_body("tx-rb-none", "tx-none")
    del rollback["token"]
    assert await hub88.send("/transaction/rollback", rollback) == answer(
        Status.OK, rollback, START_MINOR + 1000
    )


async def test_win_after_win_is_refused(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    await hub88.send("/transaction/win", win_body("tx-win-1", "tx-bet", 2000 * UNITS_PER_CENT))
    second = win_body("tx-win-2", "tx-bet", 2000 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/win", second) == answer(
        Status.UNKNOWN, second, START_MINOR + 1000
    )
    assert wallet.balance(PLAYER) == START_MINOR + 1000


# ----------------------------------------------------------------------- rollbacks


async def test_rollback_refunds_the_bet(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    rollback = rollback_body("tx-rb", "tx-bet")
    assert await hub88.send("/transaction/rollback", rollback) == answer(
        Status.OK, rollback, START_MINOR
    )
    command = wallet.commands[-1]
    assert command.kind is CommandKind.ROLLBACK
    assert (command.idempotency_key, command.reference, command.currency) == (
        f"{KEY_PREFIX}tx-rb",
        f"{KEY_PREFIX}tx-bet",
        "EUR",
    )


async def test_repeated_rollback_refunds_once(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    await hub88.send("/transaction/rollback", rollback_body("tx-rb", "tx-bet"))
    retry = rollback_body("tx-rb", "tx-bet")
    assert await hub88.send("/transaction/rollback", retry) == answer(Status.OK, retry, START_MINOR)
    # a second rollback under a new id finds the bet already rolled back
    another = rollback_body("tx-rb-2", "tx-bet")
    assert await hub88.send("/transaction/rollback", another) == answer(
        Status.TRANSACTION_ROLLED_BACK, another, START_MINOR
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_rollback_of_an_unknown_bet_then_the_late_bet(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    rollback = rollback_body("tx-rb-first", "tx-late")
    assert await hub88.send("/transaction/rollback", rollback) == answer(
        Status.OK, rollback, START_MINOR
    )
    late = bet_body("tx-late", 1000 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/bet", late) == answer(
        Status.TRANSACTION_ROLLED_BACK, late, START_MINOR
    )
    retry = {**late, "request_uuid": new_request_uuid()}
    assert await hub88.send("/transaction/bet", retry) == answer(
        Status.TRANSACTION_ROLLED_BACK, retry, START_MINOR
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_win_after_rollback_is_refused(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    await hub88.send("/transaction/rollback", rollback_body("tx-rb", "tx-bet"))
    win = win_body("tx-win", "tx-bet", 5000 * UNITS_PER_CENT)
    assert await hub88.send("/transaction/win", win) == answer(
        Status.TRANSACTION_ROLLED_BACK, win, START_MINOR
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_rollback_after_win_is_refused(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-bet", 1000 * UNITS_PER_CENT))
    await hub88.send("/transaction/win", win_body("tx-win", "tx-bet", 0))
    rollback = rollback_body("tx-rb", "tx-bet")
    assert await hub88.send("/transaction/rollback", rollback) == answer(
        Status.UNKNOWN, rollback, START_MINOR - 1000
    )
    assert wallet.balance(PLAYER) == START_MINOR - 1000


async def test_two_open_rounds_resolve_independently(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    await hub88.send("/transaction/bet", bet_body("tx-a", 1000 * UNITS_PER_CENT, round="round-a"))
    await hub88.send("/transaction/bet", bet_body("tx-b", 2000 * UNITS_PER_CENT, round="round-b"))
    assert wallet.balance(PLAYER) == START_MINOR - 3000
    win = win_body("tx-win-b", "tx-b", 5000 * UNITS_PER_CENT, round="round-b")
    assert await hub88.send("/transaction/win", win) == answer(Status.OK, win, START_MINOR + 2000)
    rollback = rollback_body("tx-rb-a", "tx-a", round="round-a")
    assert await hub88.send("/transaction/rollback", rollback) == answer(
        Status.OK, rollback, START_MINOR + 3000
    )
    assert wallet.balance(PLAYER) == START_MINOR + 3000


# --------------------------------------------------------------------------- money


async def test_big_amount_round_trips_exactly(
    settings: ProviderSettings, hub88_key: rsa.RSAPrivateKey
) -> None:
    wallet = MemoryWallet()
    wallet.add_player(PLAYER, "EUR", 6_372_709_234, token=TOKEN)  # 63,727,092.34 EUR
    client = Hub88Client(wallet, settings, hub88_key)
    balance = {
        "user": PLAYER,
        "token": TOKEN,
        "request_uuid": new_request_uuid(),
        "game_code": "rgs_keno",
    }
    assert (await client.send("/user/balance", balance))["balance"] == 6_372_709_234_000
    bet = bet_body("tx-all-in", 6_372_709_234_000)
    assert await client.send("/transaction/bet", bet) == answer(Status.OK, bet, 0)
    assert wallet.balance(PLAYER) == 0
    win = win_body("tx-all-back", "tx-all-in", 6_372_709_234_000)
    reply = await client.send("/transaction/win", win)
    assert reply == answer(Status.OK, win, 6_372_709_234)
    assert reply["balance"] == 6_372_709_234_000
    assert wallet.balance(PLAYER) == 6_372_709_234


@pytest.mark.parametrize(
    ("currency", "units", "minor"),
    [
        ("EUR", 100_000, 100),  # 1.00 EUR
        ("EUR", 1000, 1),  # one cent
        ("EUR", 356_000, 356),  # Hub88's own example: 3.56 is 356000
        ("JPY", 100_000, 1),  # one yen
        ("USDT", 1, 10),  # 6 decimals: 1 unit = 10 micro-USDT
        ("BTC", 1, 1000),  # 8 decimals: 1 unit = 1000 satoshi
        ("BTC", 100_000, 100_000_000),  # 1 BTC
        ("ETH", 1, 10**13),  # 18 decimals: 1 unit = 10^13 wei
    ],
)
def test_hub88_units_scale_exactly(currency: str, units: int, minor: int) -> None:
    assert hub88_units_to_minor(units, currency) == minor
    assert minor_to_hub88_units(minor, currency) == units


@pytest.mark.parametrize(
    ("currency", "units"), [("EUR", 1), ("EUR", 999), ("EUR", 100_001), ("JPY", 99_999)]
)
def test_hub88_units_finer_than_the_minor_unit_do_not_convert(currency: str, units: int) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        hub88_units_to_minor(units, currency)


def test_balances_finer_than_a_hub88_unit_are_floored() -> None:
    assert minor_to_hub88_units(1500, "BTC") == 1  # never show more than the player has
    assert minor_to_hub88_units(999, "BTC") == 0


async def test_amount_finer_than_a_cent_is_refused(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    request = bet_body("tx-sub-cent", 1500)  # 0.015 EUR
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.WRONG_SYNTAX, request, None
    )
    assert wallet.balance(PLAYER) == START_MINOR


async def test_btc_account_in_hub88_units(
    settings: ProviderSettings, hub88_key: rsa.RSAPrivateKey
) -> None:
    wallet = MemoryWallet()
    wallet.add_player(PLAYER, "BTC", 100_001_500, token=TOKEN)  # 1.00001500 BTC
    client = Hub88Client(wallet, settings, hub88_key)
    bet = bet_body("tx-btc", 1, currency="BTC")  # 0.00001 BTC = 1000 satoshi
    reply = await client.send("/transaction/bet", bet)
    assert reply == {
        "user": PLAYER,
        "status": "RS_OK",
        "request_uuid": bet["request_uuid"],
        "currency": "BTC",
        "balance": 100_000,
    }  # 100_000_500 satoshi, floored to whole units
    assert wallet.balance(PLAYER) == 100_000_500


# ---------------------------------------------------------------------- signatures


async def test_bad_signatures_are_refused_and_change_nothing(
    hub88: Hub88Client, wallet: MemoryWallet, stranger_key: rsa.RSAPrivateKey
) -> None:
    bet = bet_body("tx-signed", 1000 * UNITS_PER_CENT)
    body = encode(bet)
    refused = early_refusal(Status.INVALID_SIGNATURE, bet["request_uuid"])
    # signed with a key that is not Hub88's
    reply = await hub88.send_bytes("/transaction/bet", body, signature=sign(stranger_key, body))
    assert (reply.status, reply.json()) == (200, refused)
    # no signature header at all
    no_header = wire("/transaction/bet", body, signature=None)
    reply = await hub88.wallet.handle(DIALECT, hub88.settings, no_header)
    assert (reply.status, reply.json()) == (200, refused)
    # a captured signature replayed over a changed body (a bigger bet)
    captured = sign(hub88.key, body)
    tampered_request = {**bet, "amount": 99_000 * UNITS_PER_CENT}
    reply = await hub88.send_bytes("/transaction/bet", encode(tampered_request), signature=captured)
    assert (reply.status, reply.json()) == (200, refused)
    # the same bytes with one added space are another body
    reply = await hub88.send_bytes("/transaction/bet", body + b" ", signature=captured)
    assert (reply.status, reply.json()) == (200, refused)
    # not base64, empty, and absurdly long
    for garbage in ("%%%not-base64%%%", "", "A" * 10_000):
        reply = await hub88.send_bytes("/transaction/bet", body, signature=garbage)
        assert (reply.status, reply.json()) == (200, refused)
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.commands == []
    # the untouched request with its genuine signature still goes through
    reply = await hub88.send_bytes("/transaction/bet", body, signature=captured)
    assert reply.json() == answer(Status.OK, bet, START_MINOR - 1000)


async def test_unreadable_public_key_refuses_everything(
    wallet: MemoryWallet, hub88_key: rsa.RSAPrivateKey
) -> None:
    broken = ProviderSettings("hub88-broken", "op-demo", "hub88", {"public_key_pem": "not a key"})
    request = {"user": PLAYER, "request_uuid": new_request_uuid()}
    client = Hub88Client(wallet, broken, hub88_key)
    reply = await client.send_bytes("/user/info", encode(request))
    assert reply.json() == early_refusal(Status.INVALID_SIGNATURE, request["request_uuid"])


async def test_bad_signature_on_an_unreadable_body(hub88: Hub88Client) -> None:
    reply = await hub88.send_bytes("/transaction/bet", b"{nope", signature="AAAA")
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.INVALID_SIGNATURE, None, user=None),
    )


# ----------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b"\xff\xfe\x00garbage",
        b'{"user": "a", "user": "b"}',
        b'{"amount": NaN}',
        b"[" * 100_000,
    ],
    ids=["empty", "truncated", "text", "array", "string", "binary", "repeated-key", "nan", "deep"],
)
async def test_malformed_bodies_are_wrong_syntax(
    hub88: Hub88Client, wallet: MemoryWallet, body: bytes
) -> None:
    reply = await hub88.send_bytes("/transaction/bet", body)
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.WRONG_SYNTAX, None, user=None),
    )
    assert wallet.commands == []


@pytest.mark.parametrize(
    "missing",
    ["user", "token", "request_uuid", "transaction_uuid", "round", "currency", "amount"],
)
async def test_missing_bet_fields_are_wrong_syntax(
    hub88: Hub88Client, wallet: MemoryWallet, missing: str
) -> None:
    request = bet_body("tx-missing", 1000)
    del request[missing]
    reply = await hub88.send("/transaction/bet", request)
    assert reply == early_refusal(
        Status.WRONG_SYNTAX, request.get("request_uuid"), user=request.get("user")
    )
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.commands == []


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("/transaction/win", win_body("tx-w", "tx-b", 1000), "reference_transaction_uuid"),
        ("/transaction/win", win_body("tx-w", "tx-b", 1000), "amount"),
        ("/transaction/rollback", rollback_body("tx-r", "tx-b"), "reference_transaction_uuid"),
        ("/transaction/rollback", rollback_body("tx-r", "tx-b"), "transaction_uuid"),
        ("/user/info", {"user": PLAYER, "request_uuid": "r-1"}, "user"),
        ("/user/balance", {"user": PLAYER, "token": TOKEN, "request_uuid": "r-2"}, "token"),
    ],
)
async def test_missing_fields_elsewhere_are_wrong_syntax(
    hub88: Hub88Client, wallet: MemoryWallet, path: str, body: dict[str, Any], missing: str
) -> None:
    request = {key: value for key, value in body.items() if key != missing}
    reply = await hub88.send(path, request)
    assert reply == early_refusal(
        Status.WRONG_SYNTAX, request["request_uuid"], user=request.get("user")
    )
    assert wallet.commands == []


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "100000"},
        {"amount": 1000.0},
        {"amount": True},
        {"amount": 2**63},
        {"amount": [1000]},
        {"currency": 978},
        {"transaction_uuid": 12345},
        {"round": {"id": 1}},
        {"round_closed": "yes"},
        {"is_free": 0},
        {"meta": "a string"},
        {"token": 42},
    ],
    ids=lambda changes: "-".join(f"{key}={type(value).__name__}" for key, value in changes.items()),
)
async def test_wrong_types_are_refused(
    hub88: Hub88Client, wallet: MemoryWallet, changes: dict[str, Any]
) -> None:
    request = {**bet_body("tx-types", 1000), **changes}
    reply = await hub88.send("/transaction/bet", request)
    assert reply == early_refusal(Status.WRONG_TYPES, request["request_uuid"])
    assert wallet.balance(PLAYER) == START_MINOR
    assert wallet.commands == []


async def test_wrong_type_of_user_and_request_uuid_are_not_echoed(hub88: Hub88Client) -> None:
    request = bet_body("tx-types", 1000, user=1234, request_uuid=5678)
    assert await hub88.send("/transaction/bet", request) == early_refusal(
        Status.WRONG_TYPES, None, user=None
    )


@pytest.mark.parametrize(
    "changes",
    [{"transaction_uuid": ""}, {"transaction_uuid": "x" * 123}, {"round": "r" * 129}, {"user": ""}],
    ids=["empty-id", "long-id", "long-round", "empty-user"],
)
async def test_ids_out_of_bounds_are_wrong_syntax(
    hub88: Hub88Client, wallet: MemoryWallet, changes: dict[str, Any]
) -> None:
    request = {**bet_body("tx-bounds", 1000), **changes}
    reply = await hub88.send("/transaction/bet", request)
    assert reply == early_refusal(
        Status.WRONG_SYNTAX, request["request_uuid"], user=request["user"]
    )
    assert wallet.commands == []


async def test_longest_transaction_uuid_fits_the_wallet_key(
    hub88: Hub88Client, wallet: MemoryWallet
) -> None:
    longest = "x" * (128 - len(KEY_PREFIX))
    request = bet_body(longest, 1000)
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.OK, request, START_MINOR - 1
    )


async def test_unknown_extra_fields_are_ignored(hub88: Hub88Client) -> None:
    request = bet_body("tx-extra", 1000, brand_new_field={"x": 1}, game_id=7)
    assert await hub88.send("/transaction/bet", request) == answer(
        Status.OK, request, START_MINOR - 1
    )


# ------------------------------------------------------------------ early refusals


async def test_unknown_path_and_wrong_method(hub88: Hub88Client, wallet: MemoryWallet) -> None:
    request = bet_body("tx-path", 1000)
    body = encode(request)
    signature = sign(hub88.key, body)
    reply = await hub88.wallet.handle(
        DIALECT, hub88.settings, wire("/transaction/jackpot", body, signature=signature)
    )
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.WRONG_SYNTAX, request["request_uuid"]),
    )
    reply = await hub88.wallet.handle(
        DIALECT, hub88.settings, wire("/transaction/bet", body, signature=signature, method="GET")
    )
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.WRONG_SYNTAX, request["request_uuid"]),
    )
    assert wallet.commands == []


def test_reject_answers_in_hub88_shape() -> None:
    request = bet_body("tx-reject", 1000)
    small = wire("/transaction/bet", encode(request), signature=None)
    for reason in ("unknown_path", "method_not_allowed"):
        reply = DIALECT.reject(small, reason)
        assert (reply.status, reply.json()) == (
            200,
            early_refusal(Status.WRONG_SYNTAX, request["request_uuid"]),
        )
    reply = DIALECT.reject(small, "internal")
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.UNKNOWN, request["request_uuid"]),
    )
    huge = wire(
        "/transaction/bet",
        b'{"request_uuid": "r", "pad": "' + b"x" * 2_000_000 + b'"}',
        signature=None,
    )
    reply = DIALECT.reject(huge, "body_too_large")
    assert (reply.status, reply.json()) == (
        200,
        early_refusal(Status.WRONG_SYNTAX, None, user=None),
    )


def test_unreachable_wallet_is_rs_error_unknown() -> None:
    call = ParsedCall(
        "bet", PlayerRef(PLAYER, TOKEN), "EUR", (), request_id="r-9", context={"user": PLAYER}
    )
    reply = DIALECT.render(call, Outcome((), None, None, None, error="unavailable"))
    assert (reply.status, reply.json()) == (
        200,
        {"user": PLAYER, "status": "RS_ERROR_UNKNOWN", "request_uuid": "r-9"},
    )
    reply = DIALECT.render(call, Outcome((), "EUR", 1234, PLAYER, error="player_blocked"))
    assert reply.json() == {
        "user": PLAYER,
        "status": "RS_ERROR_USER_DISABLED",
        "request_uuid": "r-9",
        "currency": "EUR",
        "balance": 1_234_000,
    }


def test_timestamp_window_does_not_apply(
    settings: ProviderSettings, hub88_key: rsa.RSAPrivateKey
) -> None:
    # Hub88 requests carry no timestamp: a correctly signed body is accepted whatever the
    # clock says (replays of an identical body are answered idempotently instead).
    body = encode({"user": PLAYER, "request_uuid": new_request_uuid()})
    request = WireRequest(
        "POST", "/user/info", {SIGNATURE_HEADER: sign(hub88_key, body)}, body, received_at=0.0
    )
    assert DIALECT.authenticate(request, settings) is None
