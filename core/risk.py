"""Per-operator risk limits on bets, and the betting-volume anomaly check.

Two limits refuse a bet before it is debited, each with a stable code the operator API
returns as is:

* ``stake_above_limit``: one ticket's stake is above ``max_bet_minor``;
* ``daily_volume_exceeded``: the player's stakes of the current UTC day, this one
  included, would go above ``daily_volume_minor``.

Both are minor units of the bet's currency, and the daily volume counts one currency at a
time (there are no exchange rates here). The defaults, 1,000,000 and 5,000,000, are the
B2B seed's "10,000 per ticket, 50,000 per player per day" in a 2-decimal currency; an
operator trading other currencies configures its own.

**Anomaly.** A player whose volume today rises beyond ``anomaly_sigma`` standard
deviations above the mean of their daily history is flagged (and suspended
automatically if the operator set ``auto_suspend``)::

    today > mean  and  (today - mean)^2 > sigma^2 * variance

with the population variance of the history. Everything is exact (``int`` and
``Fraction``): a float could put a boundary case on either side. With fewer than
``min_history_days`` days of history nothing is flagged: a new player has no "usual".
A history with no spread (the same volume every day, zero included) flags any day above
it; that is what "beyond 3 sigma" means when sigma is 0.

Limits are configured as a JSON object, parsed strictly like game tables
(:mod:`core.tables`): an unknown key, a float or boolean where an integer belongs, or a
value out of range raises :class:`~core.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

from core.errors import ConfigError
from core.money import MAX_AMOUNT_MINOR, check_minor

__all__ = [
    "DAILY_VOLUME_EXCEEDED",
    "MAX_SIGMA",
    "STAKE_ABOVE_LIMIT",
    "Anomaly",
    "RiskLimits",
    "check_bet",
    "volume_anomaly",
]

STAKE_ABOVE_LIMIT = "stake_above_limit"
DAILY_VOLUME_EXCEEDED = "daily_volume_exceeded"

#: A sigma above this is a typo (30 where 3 was meant), not a policy.
MAX_SIGMA = 100
_MAX_HISTORY_DAYS = 366


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sigma(value: object) -> int | Fraction:
    """``value`` as an exact sigma: an int, a Fraction, or a decimal/fraction string."""
    if isinstance(value, int) and not isinstance(value, bool):
        exact = Fraction(value)
    elif isinstance(value, Fraction):
        exact = value
    elif isinstance(value, str) and value.strip():
        try:
            exact = Fraction(value.strip())
        except (ValueError, ZeroDivisionError) as exc:
            raise ConfigError(
                f"anomaly_sigma: must be a number such as 3 or \"2.5\", got {_kind(value)}"
            ) from exc
    else:
        raise ConfigError(
            "anomaly_sigma: must be an integer or a decimal string such as \"2.5\" "
            f"(never a float), got {_kind(value)}"
        )
    if not 0 < exact <= MAX_SIGMA:
        raise ConfigError(f"anomaly_sigma: must be above 0 and at most {MAX_SIGMA}, got {exact}")
    # Whole numbers stay ints, so the JSON form of the default is 3, not "3".
    return exact.numerator if exact.denominator == 1 else exact


@dataclass(frozen=True)
class RiskLimits:
    """One operator's risk settings; validated on construction (:class:`ConfigError`)."""

    max_bet_minor: int = 1_000_000  # per ticket: 10,000.00
    daily_volume_minor: int = 5_000_000  # per player, currency and UTC day: 50,000.00
    anomaly_sigma: int | Fraction = 3
    min_history_days: int = 7
    auto_suspend: bool = False

    def __post_init__(self) -> None:
        for name in ("max_bet_minor", "daily_volume_minor"):
            value = getattr(self, name)
            if not _is_int(value):
                raise ConfigError(f"{name}: must be an integer number of minor units, got {_kind(value)}")
            if not 1 <= value <= MAX_AMOUNT_MINOR:
                raise ConfigError(f"{name}: must be at least 1 minor unit and fit the ledger, got {value}")
        object.__setattr__(self, "anomaly_sigma", _sigma(self.anomaly_sigma))
        days = self.min_history_days
        # Two days is the least history with a spread at all.
        if not _is_int(days) or not 2 <= days <= _MAX_HISTORY_DAYS:
            raise ConfigError(
                f"min_history_days: must be an integer in 2..{_MAX_HISTORY_DAYS}, got {_kind(days)}"
            )
        if not isinstance(self.auto_suspend, bool):
            raise ConfigError(f"auto_suspend: must be true or false, got {_kind(self.auto_suspend)}")

    @classmethod
    def from_mapping(cls, obj: object, *, where: str = "risk") -> RiskLimits:
        """Limits from a loaded JSON object; absent keys take the defaults."""
        if not isinstance(obj, Mapping):
            raise ConfigError(f"{where}: expected an object, got {_kind(obj)}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in obj if k not in known]
        if unknown:
            shown = ", ".join(json.dumps(k) if isinstance(k, str) else repr(k) for k in unknown)
            raise ConfigError(f"{where}: unknown key {shown} (expected: {', '.join(known)})")
        try:
            return cls(**dict(obj))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The JSON form; ``from_mapping(to_mapping())`` gives back equal limits.

        A fractional sigma is written as a string (``"5/2"``): JSON numbers are floats
        to most readers.
        """
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.anomaly_sigma, Fraction):
            out["anomaly_sigma"] = str(self.anomaly_sigma)
        return out


def check_bet(limits: RiskLimits, stake_minor: int, volume_today_minor: int) -> str | None:
    """The refusal code for a bet of ``stake_minor``, or None if the limits allow it.

    ``volume_today_minor`` is what the player already staked today in this currency,
    without this bet. Reaching the daily limit exactly is allowed; going above is not.
    """
    stake = check_minor(stake_minor, what="stake")
    volume = check_minor(volume_today_minor, what="today's volume")
    if stake > limits.max_bet_minor:
        return STAKE_ABOVE_LIMIT
    if volume + stake > limits.daily_volume_minor:
        return DAILY_VOLUME_EXCEEDED
    return None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A day's volume beyond ``sigma`` standard deviations of the player's history."""

    today_minor: int
    mean: Fraction  # of the history's daily volumes, minor units
    variance: Fraction  # population variance of the same
    sigma: int | Fraction
    history_days: int

    @property
    def sd_text(self) -> str:
        """The standard deviation in minor units, 2 decimals (for people, not decisions)."""
        return _decimal_text(_sqrt(self.variance))

    def to_detail(self) -> dict[str, Any]:
        """JSON-ready facts for the logged event; non-integers as decimal strings."""
        return {
            "today_minor": self.today_minor,
            "mean_minor": _decimal_text(Decimal(self.mean.numerator) / Decimal(self.mean.denominator)),
            "sd_minor": self.sd_text,
            "sigma": str(self.sigma),
            "history_days": self.history_days,
        }


def _sqrt(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return (Decimal(value.numerator) / Decimal(value.denominator)).sqrt()


def _decimal_text(value: Decimal) -> str:
    with localcontext() as ctx:
        ctx.prec = 60
        return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def volume_anomaly(
    history_daily_minor: Sequence[int],
    today_minor: int,
    sigma: int | Fraction = 3,
    min_history_days: int = 7,
) -> Anomaly | None:
    """An :class:`Anomaly` if ``today_minor`` is beyond ``sigma`` standard deviations
    above the mean of ``history_daily_minor`` (one volume per past day, idle days as 0),
    else None. Exactly at the threshold is not an anomaly. Fewer than
    ``min_history_days`` days of history: None.
    """
    exact_sigma = _sigma(sigma)
    today = check_minor(today_minor, what="today's volume")
    history = [check_minor(v, what="a daily volume") for v in history_daily_minor]
    n = len(history)
    if n < max(min_history_days, 1):
        return None
    total = sum(history)
    mean = Fraction(total, n)
    if today <= mean:
        return None
    # Population variance, exactly: (n * sum(x^2) - (sum x)^2) / n^2.
    variance = Fraction(n * sum(v * v for v in history) - total * total, n * n)
    if (today - mean) ** 2 <= Fraction(exact_sigma) ** 2 * variance:
        return None
    return Anomaly(today, mean, variance, exact_sigma, n)
