"""``core.risk``: per-operator bet limits and the exact 3-sigma volume anomaly check."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.errors import AmountFormatError, ConfigError, MoneyError
from core.risk import (
    DAILY_VOLUME_EXCEEDED,
    STAKE_ABOVE_LIMIT,
    Anomaly,
    RiskLimits,
    check_bet,
    volume_anomaly,
)

# -- limits ---------------------------------------------------------------------------


def test_defaults_are_the_b2b_seed_in_cents() -> None:
    limits = RiskLimits()
    assert limits.max_bet_minor == 10_000_00
    assert limits.daily_volume_minor == 50_000_00
    assert limits.anomaly_sigma == 3
    assert limits.min_history_days == 7
    assert limits.auto_suspend is False


def test_check_bet_boundaries() -> None:
    limits = RiskLimits(max_bet_minor=1000, daily_volume_minor=5000)
    assert check_bet(limits, 1000, 0) is None
    assert check_bet(limits, 1001, 0) == STAKE_ABOVE_LIMIT
    assert check_bet(limits, 1000, 4000) is None  # reaching the limit exactly is fine
    assert check_bet(limits, 1, 4999) is None
    assert check_bet(limits, 1, 5000) == DAILY_VOLUME_EXCEEDED
    assert check_bet(limits, 1000, 4001) == DAILY_VOLUME_EXCEEDED
    # Both broken: the per-ticket limit is reported (it is about this bet alone).
    assert check_bet(limits, 2000, 5000) == STAKE_ABOVE_LIMIT


def test_check_bet_with_defaults() -> None:
    assert check_bet(RiskLimits(), 10_000_00, 40_000_00) is None
    assert check_bet(RiskLimits(), 10_000_01, 0) == "stake_above_limit"
    assert check_bet(RiskLimits(), 1, 50_000_00) == "daily_volume_exceeded"


@pytest.mark.parametrize(("stake", "volume"), [(1.0, 0), (True, 0), (-1, 0), (1, -5), (1, 2.5), ("1", 0)])
def test_check_bet_refuses_non_integer_money(stake: object, volume: object) -> None:
    with pytest.raises(MoneyError):
        check_bet(RiskLimits(), stake, volume)  # type: ignore[arg-type]


def test_mapping_round_trip() -> None:
    limits = RiskLimits(max_bet_minor=500, daily_volume_minor=9000, anomaly_sigma=Fraction(5, 2),
                        min_history_days=14, auto_suspend=True)
    mapping = limits.to_mapping()
    assert mapping == {"max_bet_minor": 500, "daily_volume_minor": 9000, "anomaly_sigma": "5/2",
                       "min_history_days": 14, "auto_suspend": True}
    assert RiskLimits.from_mapping(mapping) == limits
    assert RiskLimits.from_mapping(RiskLimits().to_mapping()) == RiskLimits()
    assert RiskLimits().to_mapping()["anomaly_sigma"] == 3


def test_from_mapping_fills_defaults_and_accepts_decimal_sigma() -> None:
    assert RiskLimits.from_mapping({}) == RiskLimits()
    limits = RiskLimits.from_mapping({"anomaly_sigma": "2.5", "auto_suspend": True})
    assert limits.anomaly_sigma == Fraction(5, 2)
    assert limits.auto_suspend is True
    # Whole sigmas become ints whatever their spelling.
    assert RiskLimits.from_mapping({"anomaly_sigma": "4"}).anomaly_sigma == 4
    assert isinstance(RiskLimits(anomaly_sigma=Fraction(8, 2)).anomaly_sigma, int)


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"max_bet": 5}, "unknown key"),
        ({"max_bet_minor": 1000.0}, "max_bet_minor"),
        ({"max_bet_minor": True}, "max_bet_minor"),
        ({"max_bet_minor": "1000"}, "max_bet_minor"),
        ({"max_bet_minor": 0}, "max_bet_minor"),
        ({"daily_volume_minor": -1}, "daily_volume_minor"),
        ({"daily_volume_minor": 10**38}, "daily_volume_minor"),
        ({"anomaly_sigma": 2.5}, "anomaly_sigma"),
        ({"anomaly_sigma": 0}, "anomaly_sigma"),
        ({"anomaly_sigma": "-1"}, "anomaly_sigma"),
        ({"anomaly_sigma": "nan"}, "anomaly_sigma"),
        ({"anomaly_sigma": "three"}, "anomaly_sigma"),
        ({"anomaly_sigma": "1/0"}, "anomaly_sigma"),
        ({"anomaly_sigma": 101}, "anomaly_sigma"),
        ({"anomaly_sigma": None}, "anomaly_sigma"),
        ({"min_history_days": 1}, "min_history_days"),
        ({"min_history_days": 7.0}, "min_history_days"),
        ({"auto_suspend": "yes"}, "auto_suspend"),
        ({"auto_suspend": 1}, "auto_suspend"),
    ],
)
def test_from_mapping_is_strict(mapping: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as exc:
        RiskLimits.from_mapping(mapping, where="operator 'op-1' risk")
    assert "operator 'op-1' risk" in str(exc.value)


def test_from_mapping_needs_an_object() -> None:
    with pytest.raises(ConfigError):
        RiskLimits.from_mapping([1, 2])


# -- anomaly --------------------------------------------------------------------------

# mean 5, population variance 25, sd 5: 3 sigma above the mean is exactly 20.
EVEN = [0, 0, 0, 0, 10, 10, 10, 10]


def test_anomaly_boundary_is_strict() -> None:
    assert volume_anomaly(EVEN, 20) is None  # exactly at mean + 3 sd
    found = volume_anomaly(EVEN, 21)
    assert found == Anomaly(today_minor=21, mean=Fraction(5), variance=Fraction(25), sigma=3, history_days=8)
    assert found.sd_text == "5.00"
    assert found.to_detail() == {"today_minor": 21, "mean_minor": "5.00", "sd_minor": "5.00", "sigma": "3",
                                 "history_days": 8}


def test_anomaly_with_fractional_sigma() -> None:
    # 5 + 2.5 * 5 = 17.5
    assert volume_anomaly(EVEN, 17, sigma=Fraction(5, 2)) is None
    assert volume_anomaly(EVEN, 18, sigma=Fraction(5, 2)) is not None
    assert volume_anomaly(EVEN, 18, sigma="2.5") is not None  # type: ignore[arg-type]
    # 5 + 1 * 5 = 10
    assert volume_anomaly(EVEN, 10, sigma=1) is None
    assert volume_anomaly(EVEN, 11, sigma=1) is not None


def test_anomaly_with_irrational_sd() -> None:
    history = [0, 0, 0, 1, 1, 1, 1]  # mean 4/7, variance 12/49: 3 sd ~ 1.4846, threshold ~ 2.0560
    assert volume_anomaly(history, 2) is None
    found = volume_anomaly(history, 3)
    assert found is not None
    assert found.mean == Fraction(4, 7)
    assert found.variance == Fraction(12, 49)
    assert found.sd_text == "0.49"


def test_anomaly_is_exact_where_floats_are_not() -> None:
    big = 10**20
    history = [big, big + 2] * 4  # mean big + 1, sd 1: threshold big + 4
    assert float(big + 4) == float(big + 5)  # a float cannot tell these apart
    assert volume_anomaly(history, big + 4) is None
    assert volume_anomaly(history, big + 5) is not None


def test_not_enough_history() -> None:
    assert volume_anomaly(EVEN[:6], 1000, min_history_days=7) is None
    assert volume_anomaly(EVEN[:7], 1000, min_history_days=7) is not None
    assert volume_anomaly([], 1000, min_history_days=7) is None
    assert volume_anomaly(EVEN, 1000, min_history_days=9) is None


def test_below_or_at_the_mean_is_never_an_anomaly() -> None:
    history = [100, 0, 100, 0, 100, 0, 100]
    assert volume_anomaly(history, 0) is None
    assert volume_anomaly([7] * 10, 7) is None


def test_flat_history_flags_any_rise() -> None:
    # sd 0: anything above the mean is beyond 3 sd (the module doc says why).
    assert volume_anomaly([100] * 7, 100) is None
    assert volume_anomaly([100] * 7, 101) is not None
    assert volume_anomaly([0] * 7, 1) is not None


def test_anomaly_refuses_bad_input() -> None:
    with pytest.raises(AmountFormatError):
        volume_anomaly([1.5] * 7, 10)  # type: ignore[list-item]
    with pytest.raises(MoneyError):
        volume_anomaly([1] * 7, -1)
    with pytest.raises(ConfigError):
        volume_anomaly([1] * 7, 10, sigma=2.5)  # type: ignore[arg-type]


def _reference(history: list[int], today: int, sigma: Fraction) -> bool | None:
    """today > mean + sigma * sd, in 100-digit decimals (an independent formulation);
    None for a near tie, where rounding could decide either way."""
    with localcontext() as ctx:
        ctx.prec = 100
        n = Decimal(len(history))
        mean = sum(Decimal(v) for v in history) / n
        variance = sum((Decimal(v) - mean) ** 2 for v in history) / n
        sd = variance.sqrt()
        threshold = mean + Decimal(sigma.numerator) / Decimal(sigma.denominator) * sd
        if abs(Decimal(today) - threshold) < Decimal("1e-60"):
            return None
        return Decimal(today) > threshold


@given(
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=7, max_size=40),
    st.integers(min_value=0, max_value=10**10),
    st.sampled_from([Fraction(3), Fraction(2), Fraction(5, 2), Fraction(1, 3)]),
)
@settings(max_examples=300)
def test_anomaly_agrees_with_a_high_precision_reference(history: list[int], today: int, sigma: Fraction) -> None:
    expected = _reference(history, today, sigma)
    assume(expected is not None)  # exact ties are tested above, with known answers
    assert (volume_anomaly(history, today, sigma=sigma) is not None) == expected


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=7, max_size=30),
    st.integers(min_value=-1, max_value=2),
    st.sampled_from([Fraction(3), Fraction(5, 2)]),
)
@settings(max_examples=300)
def test_anomaly_agrees_with_the_reference_next_to_the_threshold(
    history: list[int], delta: int, sigma: Fraction
) -> None:
    with localcontext() as ctx:
        ctx.prec = 100
        n = Decimal(len(history))
        mean = sum(Decimal(v) for v in history) / n
        sd = (sum((Decimal(v) - mean) ** 2 for v in history) / n).sqrt()
        threshold = mean + Decimal(sigma.numerator) / Decimal(sigma.denominator) * sd
    today = int(threshold) + delta
    assume(today >= 0)
    expected = _reference(history, today, sigma)
    assume(expected is not None)
    assert (volume_anomaly(history, today, sigma=sigma) is not None) == expected
