from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import (
    AmountFormatError,
    AmountOverflowError,
    MoneyError,
    NegativeAmountError,
    PrecisionError,
    UnknownCurrencyError,
)
from core.money import (
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    check_minor,
    currency,
    format_amount,
    parse_amount,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("code", "exponent"), [("EUR", 2), ("USD", 2), ("BTC", 8), ("USDT", 6), ("ETH", 18)]
)
def test_minor_unit_exponents(code: str, exponent: int) -> None:
    assert currency(code).exponent == exponent


def test_the_seed_amount_round_trips_exactly() -> None:
    minor = parse_amount("63727092.34", "EUR")
    assert minor == 6_372_709_234
    assert format_amount(minor, "EUR") == "63727092.34"


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("0", "EUR", 0),
        ("0.01", "EUR", 1),
        ("1.1", "EUR", 110),
        ("1.10", "EUR", 110),
        ("1.100000", "EUR", 110),  # trailing zeros are not extra precision
        ("0.00000001", "BTC", 1),
        ("1", "ETH", 10**18),
        ("123456789.123456789012345678", "ETH", 123456789123456789012345678),
        ("7", "JPY", 7),
        ("+5.5", "USD", 550),
    ],
)
def test_parse(text: str, code: str, minor: int) -> None:
    assert parse_amount(text, code) == minor


def test_parse_negative_only_when_allowed() -> None:
    with pytest.raises(NegativeAmountError, match="must not be negative"):
        parse_amount("-1.00", "EUR")
    assert parse_amount("-1.00", "EUR", allow_negative=True) == -100


@pytest.mark.parametrize("bad", [0.1, 1.0, float("nan"), float("inf"), True])
def test_floats_and_bools_are_never_money(bad: object) -> None:
    with pytest.raises(AmountFormatError):
        parse_amount(bad, "EUR")


@pytest.mark.parametrize("bad", ["NaN", "inf", "1e5", "1,000.00", "", " ", "1.2.3", "abc", "0x10", ".5"])
def test_garbage_strings(bad: str) -> None:
    with pytest.raises(AmountFormatError, match="not a decimal amount"):
        parse_amount(bad, "EUR")


def test_decimal_nan_rejected() -> None:
    with pytest.raises(AmountFormatError, match="finite"):
        parse_amount(Decimal("NaN"), "EUR")


def test_too_many_decimals() -> None:
    with pytest.raises(PrecisionError, match="EUR allows at most 2"):
        parse_amount("1.001", "EUR")
    with pytest.raises(PrecisionError):
        parse_amount("0.000000001", "BTC")


def test_overflow() -> None:
    with pytest.raises(AmountOverflowError, match="38-digit"):
        parse_amount("1" + "0" * 21, "ETH")  # 10**39 wei
    with pytest.raises(AmountOverflowError):
        check_minor(MAX_AMOUNT_MINOR + 1)
    assert check_minor(MAX_AMOUNT_MINOR) == MAX_AMOUNT_MINOR


def test_unknown_currency() -> None:
    with pytest.raises(UnknownCurrencyError, match="unknown currency 'XXX'"):
        currency("XXX")
    with pytest.raises(UnknownCurrencyError):
        currency("eur")


def test_check_minor_types() -> None:
    for bad in (1.0, "100", True, None, Decimal(1)):
        with pytest.raises(AmountFormatError):
            check_minor(bad)


def test_money_errors_are_value_errors_with_one_root() -> None:
    assert issubclass(MoneyError, ValueError)


def test_to_minor_units_from_wire_decimal() -> None:
    assert to_minor_units(Decimal("12.34"), "EUR") == 1234
    with pytest.raises(PrecisionError):
        to_minor_units(Decimal("12.345"), "EUR")


def test_format_pads_and_signs() -> None:
    assert format_amount(5, "EUR") == "0.05"
    assert format_amount(-5, "EUR") == "-0.05"
    assert format_amount(1, "ETH") == "0.000000000000000001"
    assert format_amount(42, "JPY") == "42"


@given(
    code=st.sampled_from(sorted(CURRENCIES)),
    minor=st.integers(min_value=-MAX_AMOUNT_MINOR, max_value=MAX_AMOUNT_MINOR),
)
def test_round_trip_property(code: str, minor: int) -> None:
    assert parse_amount(format_amount(minor, code), code, allow_negative=True) == minor
