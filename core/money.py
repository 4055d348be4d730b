"""Currencies and exact amounts in integer minor units.

Money travels through ray-rgs as ``int`` minor units (cents, satoshis, wei). Decimal
strings exist only at the wire edge: :func:`parse_amount` turns one into minor units and
:func:`format_amount` turns minor units back, both exactly. A ``float`` is never money:
it is rejected wherever an amount is expected, because 0.1 + 0.2 is not 0.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from core.errors import (
    AmountFormatError,
    AmountOverflowError,
    NegativeAmountError,
    PrecisionError,
    UnknownCurrencyError,
)

__all__ = [
    "CURRENCIES",
    "MAX_AMOUNT_MINOR",
    "Currency",
    "check_minor",
    "currency",
    "format_amount",
    "parse_amount",
    "to_minor_units",
]

# The ledger stores amounts as NUMERIC(38, 0): 38 decimal digits. ETH at 18 decimals
# would overflow a BIGINT at ~9.2 ETH, so a 64-bit column is not an option.
MAX_AMOUNT_MINOR = 10**38 - 1


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int  # minor units per major unit = 10 ** exponent

    @property
    def scale(self) -> int:
        return 10**self.exponent


CURRENCIES: MappingProxyType[str, Currency] = MappingProxyType(
    {
        c.code: c
        for c in (
            Currency("EUR", 2),
            Currency("USD", 2),
            Currency("GBP", 2),
            Currency("CAD", 2),
            Currency("SEK", 2),
            Currency("NOK", 2),
            Currency("BRL", 2),
            Currency("JPY", 0),
            Currency("KRW", 0),
            Currency("BTC", 8),
            Currency("USDT", 6),
            Currency("ETH", 18),
        )
    }
)

_DECIMAL_RE = re.compile(r"^(?P<sign>[+-]?)(?P<int>\d+)(?:\.(?P<frac>\d*))?$")


def currency(code: object) -> Currency:
    """The currency for an ISO-style code (case-sensitive, upper case)."""
    if not isinstance(code, str):
        raise UnknownCurrencyError(f"currency code must be a string, got {type(code).__name__}")
    try:
        return CURRENCIES[code]
    except KeyError:
        known = ", ".join(sorted(CURRENCIES))
        raise UnknownCurrencyError(f"unknown currency {code!r}; supported: {known}") from None


def check_minor(amount: object, *, allow_negative: bool = False, what: str = "amount") -> int:
    """Validate an amount already in minor units and return it as ``int``."""
    # bool is an int subclass; True is not one cent.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise AmountFormatError(
            f"{what} must be an integer number of minor units, got {type(amount).__name__}"
        )
    if amount < 0 and not allow_negative:
        raise NegativeAmountError(f"{what} must not be negative, got {amount}")
    if abs(amount) > MAX_AMOUNT_MINOR:
        raise AmountOverflowError(f"{what} {amount} exceeds the ledger's 38-digit limit")
    return amount


def parse_amount(text: object, cur: Currency | str, *, allow_negative: bool = False) -> int:
    """Parse a decimal string in major units ("63727092.34") into exact minor units.

    Accepts ``int`` too (whole major units) and ``Decimal``. Rejects floats, NaN,
    infinities, exponents, thousands separators and more decimals than the currency has.
    """
    cur = currency(cur) if isinstance(cur, str) else cur
    if isinstance(text, (bool, float)):
        raise AmountFormatError(
            f"amount must be a decimal string, not a {type(text).__name__} ({text!r}); "
            "floats cannot represent money exactly"
        )
    if isinstance(text, int):
        return check_minor(text * cur.scale, allow_negative=allow_negative)
    if isinstance(text, Decimal):
        if not text.is_finite():
            raise AmountFormatError(f"amount must be finite, got {text}")
        text = format(text, "f")
    if not isinstance(text, str):
        raise AmountFormatError(f"amount must be a decimal string, got {type(text).__name__}")
    match = _DECIMAL_RE.match(text.strip())
    if match is None:
        raise AmountFormatError(f"not a decimal amount: {text!r}")
    frac = (match["frac"] or "").rstrip("0")
    if len(frac) > cur.exponent:
        raise PrecisionError(
            f"{text!r} has {len(frac)} decimals; {cur.code} allows at most {cur.exponent}"
        )
    minor = int(match["int"]) * cur.scale + (int(frac.ljust(cur.exponent, "0")) if frac else 0)
    if match["sign"] == "-":
        minor = -minor
    return check_minor(minor, allow_negative=allow_negative)


def format_amount(minor: int, cur: Currency | str) -> str:
    """Format minor units as a decimal string with exactly the currency's decimals."""
    cur = currency(cur) if isinstance(cur, str) else cur
    minor = check_minor(minor, allow_negative=True)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), cur.scale)
    if cur.exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{cur.exponent}d}"


def to_minor_units(value: Decimal, cur: Currency | str) -> int:
    """Exact conversion of a wire ``Decimal`` (major units) to minor units."""
    cur = currency(cur) if isinstance(cur, str) else cur
    try:
        scaled = value.scaleb(cur.exponent)
    except InvalidOperation as exc:
        raise AmountFormatError(f"not a decimal amount: {value!r}") from exc
    if not scaled.is_finite():
        raise AmountFormatError(f"amount must be finite, got {value}")
    if scaled != scaled.to_integral_value():
        raise PrecisionError(f"{value} has more decimals than {cur.code} allows ({cur.exponent})")
    return check_minor(int(scaled), allow_negative=True)
