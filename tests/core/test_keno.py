"""``core.keno``: exact Keno mathematics against published figures and brute force.

The published vectors are a copy of ``shared/vectors/keno_paytables.json`` kept in
``tests/data/keno_paytables.json`` (Michigan Lottery Club Keno, 20 of 80).

What "reproduces" means here: the exact computed figure (a ``Fraction``) rounded half-up
to 2 decimals equals the published figure (read with ``Decimal(str(x))``), which implies
``abs(rounded - published) <= 0.01``; both are asserted.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import (
    AmountFormatError,
    NegativeAmountError,
    PaytableError,
    ProtocolError,
)
from core.keno import (
    GAME_80_20,
    MAX_SPOTS,
    KenoGame,
    Paytable,
    PaytableSet,
    Published,
    count_hits,
    parse_multiplier,
    parse_paytables,
    validate_picks,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "keno_paytables.json"
VECTORS: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
SPOTS_IN_VECTORS = sorted(int(s) for s in VECTORS["paytables"])


def round_half_up_2(value: Fraction) -> Decimal:
    """Exact rounding of a Fraction to 2 decimals, ties away from zero (values are >= 0)."""
    hundredths = math.floor(value * 100 + Fraction(1, 2))
    return Decimal(hundredths) / 100


def copy_vectors() -> dict[str, Any]:
    return json.loads(json.dumps(VECTORS))


@pytest.fixture(scope="module")
def parsed() -> tuple[PaytableSet, dict[int, Published]]:
    return parse_paytables(VECTORS, name="michigan")


# ----------------------------------------------------------------- published vectors


def test_vectors_cover_4_to_10_spots(parsed: tuple[PaytableSet, dict[int, Published]]) -> None:
    tables, published = parsed
    assert tables.spots == (4, 5, 6, 7, 8, 9, 10)
    assert tables.game == GAME_80_20
    assert tables.name == "michigan"
    assert set(published) == set(tables.spots)


@pytest.mark.parametrize("spots", SPOTS_IN_VECTORS)
def test_published_rtp_reproduces(
    spots: int, parsed: tuple[PaytableSet, dict[int, Published]]
) -> None:
    tables, published = parsed
    stated = published[spots].rtp_percent
    assert stated == Decimal(str(VECTORS["paytables"][str(spots)]["rtp_percent"]))
    computed = round_half_up_2(tables.for_spots(spots).rtp() * 100)
    assert computed == stated
    assert abs(computed - stated) <= Decimal("0.01")


@pytest.mark.parametrize("spots", SPOTS_IN_VECTORS)
def test_published_overall_odds_reproduce(
    spots: int, parsed: tuple[PaytableSet, dict[int, Published]]
) -> None:
    tables, published = parsed
    stated = published[spots].overall_odds_1_in
    assert stated == Decimal(str(VECTORS["paytables"][str(spots)]["overall_odds_1_in"]))
    table = tables.for_spots(spots)
    computed = round_half_up_2(table.overall_odds())
    assert computed == stated
    assert abs(computed - stated) <= Decimal("0.01")
    assert table.overall_odds() == 1 / table.hit_frequency()


def test_ten_spot_zero_catch_counts_as_a_win(
    parsed: tuple[PaytableSet, dict[int, Published]],
) -> None:
    table = parsed[0].for_spots(10)
    probs = table.probabilities()
    assert table.multiplier(0) == 5
    assert table.hit_frequency() == probs[0] + sum(probs[5:])


def test_catch_10_of_10_fact() -> None:
    stated = VECTORS["facts"]["p_catch_10_of_10"]
    assert stated == "1 in 8911711.18"
    p10 = GAME_80_20.hit_probabilities(10)[10]
    assert p10 == Fraction(math.comb(20, 10), math.comb(80, 10))
    assert round_half_up_2(1 / p10) == Decimal(stated.removeprefix("1 in "))


def test_exact_rtp_of_the_4_spot_table(parsed: tuple[PaytableSet, dict[int, Published]]) -> None:
    # P(2,3,4 of 4) = C(20,h)*C(60,4-h)/C(80,4); pays 1, 5, 72.
    total = math.comb(80, 4)
    expected = Fraction(
        1 * math.comb(20, 2) * math.comb(60, 2) + 5 * math.comb(20, 3) * 60 + 72 * math.comb(20, 4),
        total,
    )
    assert parsed[0].for_spots(4).rtp() == expected


# ----------------------------------------------------------------- probabilities


@pytest.mark.parametrize(
    "game", [GAME_80_20, KenoGame(pool=10, drawn=4), KenoGame(pool=40, drawn=10)]
)
def test_probabilities_sum_to_exactly_one(game: KenoGame) -> None:
    for spots in range(1, game.max_spots + 1):
        probs = game.hit_probabilities(spots)
        assert len(probs) == spots + 1
        assert all(isinstance(p, Fraction) and p >= 0 for p in probs)
        assert sum(probs) == 1


def test_probabilities_of_a_tiny_game_by_hand() -> None:
    # 2 of 4, 2 spots: C(4,2) = 6 draws; 0 hits 1/6, 1 hit 4/6, 2 hits 1/6.
    assert KenoGame(pool=4, drawn=2).hit_probabilities(2) == (
        Fraction(1, 6),
        Fraction(4, 6),
        Fraction(1, 6),
    )


def test_hit_probabilities_rejects_bad_spots() -> None:
    for spots in (0, -1, 81, True, 2.0):
        with pytest.raises(PaytableError):
            GAME_80_20.hit_probabilities(spots)  # type: ignore[arg-type]


def test_game_label_parse_and_limits() -> None:
    assert GAME_80_20.label == "20 of 80"
    assert KenoGame.parse("20 of 80") == GAME_80_20
    assert KenoGame.parse(" 4 OF 10 ") == KenoGame(pool=10, drawn=4)
    assert GAME_80_20.max_spots == MAX_SPOTS == 10
    assert KenoGame(pool=10, drawn=4).max_spots == 4


@pytest.mark.parametrize(
    ("pool", "drawn"), [(0, 0), (1, 1), (80, 0), (80, 80), (80, 81), (True, 1), (80, 20.0)]
)
def test_invalid_games_rejected(pool: Any, drawn: Any) -> None:
    with pytest.raises(PaytableError, match="keno game"):
        KenoGame(pool=pool, drawn=drawn)


@pytest.mark.parametrize("text", ["20/80", "of 80", "20 of", "twenty of eighty", "", "80 of 20"])
def test_bad_game_strings_rejected(text: str) -> None:
    with pytest.raises(PaytableError):
        KenoGame.parse(text)


# ----------------------------------------------------------------- brute force

SMALL = KenoGame(pool=10, drawn=4)
SMALL_DRAWS = list(itertools.combinations(range(1, SMALL.pool + 1), SMALL.drawn))


def brute_force(table: Paytable) -> tuple[Fraction, Fraction, Fraction]:
    """(rtp, hit frequency, variance) of ``table`` by enumerating every draw of its game."""
    game = table.game
    draws = list(itertools.combinations(range(1, game.pool + 1), game.drawn))
    picks = range(1, table.spots + 1)
    returns = [table.multiplier(count_hits(picks, draw)) for draw in draws]
    n = len(draws)
    mean = Fraction(sum(returns), n)
    variance = sum(((r - mean) ** 2 for r in returns), Fraction(0)) / n
    return mean, Fraction(sum(1 for r in returns if r > 0), n), variance


def test_small_game_has_210_draws() -> None:
    assert len(SMALL_DRAWS) == math.comb(10, 4) == 210


def test_rtp_equals_brute_force_for_a_fixed_small_table() -> None:
    table = Paytable.of(4, {4: 40, 3: "2.5", 2: 1}, game=SMALL)
    rtp, hit_frequency, variance = brute_force(table)
    assert table.rtp() == rtp
    assert table.hit_frequency() == hit_frequency
    assert table.variance() == variance
    assert table.sd() == pytest.approx(math.sqrt(variance))
    # with a cap the cap is what pays
    capped = Paytable.of(4, {4: 40, 3: "2.5", 2: 1}, max_win_multiplier=10, game=SMALL)
    assert capped.multiplier(4) == 10
    assert capped.rtp() == brute_force(capped)[0] < table.rtp()


@settings(max_examples=60, deadline=None)
@given(
    spots=st.integers(min_value=1, max_value=4),
    raw_pays=st.lists(st.integers(min_value=0, max_value=500), min_size=5, max_size=5),
    cents=st.integers(min_value=0, max_value=99),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=300)),
)
def test_rtp_equals_brute_force_property(
    spots: int, raw_pays: list[int], cents: int, cap: int | None
) -> None:
    pays: dict[int, str | int] = {h: raw_pays[h] for h in range(spots + 1)}
    pays[spots] = f"{raw_pays[spots] + 1}.{cents:02d}"  # always something positive to win
    table = Paytable.of(spots, pays, max_win_multiplier=cap, game=SMALL)
    rtp, hit_frequency, variance = brute_force(table)
    assert table.rtp() == rtp
    assert table.hit_frequency() == hit_frequency
    assert table.variance() == variance
    distribution = table.payout_distribution()
    assert sum(p for _, p in distribution) == 1
    assert sum(m * p for m, p in distribution) == rtp


def test_payout_distribution_merges_equal_multipliers() -> None:
    table = Paytable.of(4, {2: 1, 3: 1, 4: 10}, game=SMALL)
    probs = table.probabilities()
    assert table.payout_distribution() == (
        (Fraction(0), probs[0] + probs[1]),
        (Fraction(1), probs[2] + probs[3]),
        (Fraction(10), probs[4]),
    )


def test_payout_distribution_of_published_tables(
    parsed: tuple[PaytableSet, dict[int, Published]],
) -> None:
    for spots in parsed[0].spots:
        table = parsed[0].for_spots(spots)
        dist = table.payout_distribution()
        assert [m for m, _ in dist] == sorted({m for m, _ in dist})
        assert sum(p for _, p in dist) == 1
        assert sum(m * p for m, p in dist) == table.rtp()
        second = sum(m * m * p for m, p in dist)
        assert table.variance() == second - table.rtp() ** 2
        assert table.max_multiplier() == dist[-1][0]


def test_unreachable_pays_leave_distribution_clean() -> None:
    # 4 of 6, 4 spots: at least 2 hits always (only 2 numbers are not drawn).
    game = KenoGame(pool=6, drawn=4)
    assert game.hit_probabilities(4)[:2] == (0, 0)
    table = Paytable.of(4, {0: 100, 4: 3}, game=game)
    assert [m for m, _ in table.payout_distribution()] == [0, 3]
    with pytest.raises(PaytableError, match="nothing pays"):
        Paytable.of(4, {0: 100, 1: 50}, game=game)


# ----------------------------------------------------------------- payouts


def test_payout_floors_to_minor_units() -> None:
    table = Paytable.of(4, {4: "2.5", 3: "1.05", 2: 1})
    assert table.payout(3, 4) == 7  # 7.5 -> 7
    assert table.payout(100, 4) == 250
    assert table.payout(99, 3) == 103  # 103.95 -> 103
    assert table.payout(1, 3) == 1  # 1.05 -> 1
    assert table.payout(100, 1) == 0
    assert table.payout(100, 0) == 0
    assert table.multiplier(3) == Fraction(21, 20)


def test_payout_caps() -> None:
    table = Paytable.of(4, {4: 72, 3: 5, 2: 1}, max_win_multiplier=50)
    assert table.multiplier(4) == 50
    assert table.multiplier(3) == 5
    assert table.payout(100, 4) == 5_000
    assert table.payout(100, 4, max_win_minor=1_234) == 1_234
    assert table.payout(100, 3, max_win_minor=1_234) == 500
    assert table.payout(100, 3, max_win_minor=500) == 500
    assert table.payout(100, 3, max_win_minor=0) == 0
    assert table.max_multiplier() == 50


@pytest.mark.parametrize(
    ("stake", "error"),
    [
        (0, NegativeAmountError),
        (-100, NegativeAmountError),
        (True, AmountFormatError),
        (100.0, AmountFormatError),
        ("100", AmountFormatError),
        (Decimal(100), AmountFormatError),
    ],
)
def test_payout_rejects_bad_stakes(stake: Any, error: type[Exception]) -> None:
    table = Paytable.of(4, {4: 72})
    with pytest.raises(error, match="stake"):
        table.payout(stake, 4)


@pytest.mark.parametrize(
    ("cap", "error"),
    [(-1, NegativeAmountError), (1.5, AmountFormatError), (False, AmountFormatError)],
)
def test_payout_rejects_bad_max_win(cap: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_win_minor"):
        Paytable.of(4, {4: 72}).payout(100, 4, max_win_minor=cap)


@pytest.mark.parametrize("hits", [-1, 5, True, 2.0])
def test_multiplier_rejects_impossible_hits(hits: Any) -> None:
    with pytest.raises(PaytableError, match=re.escape("hits must be an integer in 0..4")):
        Paytable.of(4, {4: 72}).multiplier(hits)


# ----------------------------------------------------------------- table validation


@pytest.mark.parametrize(
    ("spots", "pays", "match"),
    [
        (0, {0: 1}, "spots must be in 1..10"),
        (11, {11: 1}, "spots must be in 1..10"),
        (-3, {0: 1}, "spots must be in 1..10"),
        (4, {5: 1}, "paytable for 4 spots: pay for 5 hits but only 4 spots"),
        (4, {-1: 1}, "hits cannot be negative"),
        (4, {4: -1}, "must be >= 0"),
        (4, {4: "-0.5"}, "must be >= 0"),
        (4, {4: 0, 3: 0}, "nothing pays"),
        (4, {}, "nothing pays"),
        (4, {4: 2.5}, "is a float"),
        (4, {4: 2.0}, "is a float"),
        (4, {4: True}, "boolean"),
        (4, {4: "1e3"}, "not a plain decimal"),
        (4, {4: "NaN"}, "not a plain decimal"),
        (4, {4: Decimal("NaN")}, "not a finite number"),
        (4, {4: None}, "expected an integer or decimal string"),
        (4, {"4": 1}, "not an integer"),
        (4, {True: 1}, "not an integer"),
        (True, {1: 1}, "spots must be an integer"),
    ],
)
def test_invalid_paytables_rejected(spots: Any, pays: Any, match: str) -> None:
    with pytest.raises(PaytableError, match=re.escape(match)):
        Paytable(spots=spots, pays=pays)


def test_spots_beyond_drawn_rejected() -> None:
    with pytest.raises(PaytableError, match="more spots than the 4 numbers drawn"):
        Paytable.of(5, {5: 1}, game=SMALL)


@pytest.mark.parametrize("cap", [0, -1, 2.0, "x"])
def test_bad_max_win_multiplier_rejected(cap: Any) -> None:
    with pytest.raises(PaytableError, match="max_win_multiplier"):
        Paytable(spots=4, pays={4: Fraction(72)}, max_win_multiplier=cap)


def test_paytable_is_immutable_hashable_and_normalised() -> None:
    table = Paytable(spots=4, pays={4: 72, 3: 5, 2: 1, 1: 0})  # type: ignore[dict-item]
    assert dict(table.pays) == {2: 1, 3: 5, 4: 72}
    assert list(table.pays) == [2, 3, 4]
    assert all(isinstance(v, Fraction) for v in table.pays.values())
    with pytest.raises(TypeError):
        table.pays[4] = Fraction(1)  # type: ignore[index]
    with pytest.raises(AttributeError):
        table.spots = 5  # type: ignore[misc]
    assert table == Paytable.of(4, {2: "1", 3: "5.00", 4: 72})
    assert hash(table) == hash(Paytable.of(4, {2: "1", 3: "5.00", 4: 72}))
    assert table.probabilities() == GAME_80_20.hit_probabilities(4)


def test_parse_multiplier() -> None:
    assert parse_multiplier(3) == 3
    assert parse_multiplier("2.50") == Fraction(5, 2)
    assert parse_multiplier(Decimal("0.1")) == Fraction(1, 10)
    assert parse_multiplier(Fraction(1, 3)) == Fraction(1, 3)
    with pytest.raises(PaytableError, match=r"^here: 0\.1 is a float"):
        parse_multiplier(0.1, where="here")


# ----------------------------------------------------------------- sets


def test_paytable_set_for_spots(parsed: tuple[PaytableSet, dict[int, Published]]) -> None:
    tables = parsed[0]
    assert tables.for_spots(10).spots == 10
    for spots in (1, 3, 11, 0):
        with pytest.raises(
            PaytableError, match=re.escape(f"no table for {spots} spots; it offers 4, 5, 6")
        ):
            tables.for_spots(spots)


def test_paytable_set_validation() -> None:
    four = Paytable.of(4, {4: 72})
    with pytest.raises(PaytableError, match="holds the table for 4 spots"):
        PaytableSet(name="x", tables={5: four})
    with pytest.raises(PaytableError, match="at least one"):
        PaytableSet(name="x", tables={})
    with pytest.raises(PaytableError, match="different games"):
        PaytableSet(name="x", tables={4: four, 3: Paytable.of(3, {3: 1}, game=SMALL)})
    with pytest.raises(PaytableError, match="name"):
        PaytableSet(name="", tables={4: four})


# ----------------------------------------------------------------- parsing


def test_parse_defaults_and_optional_fields() -> None:
    tables, published = parse_paytables(
        {"paytables": {"3": {"pays": {"3": "26.5", "2": 1}, "max_win_multiplier": "20"}}}
    )
    assert tables.name == "default"
    assert tables.game == GAME_80_20
    table = tables.for_spots(3)
    assert table.multiplier(3) == 20
    assert table.max_win_multiplier == 20
    assert published == {3: Published(None, None)}


def test_parse_accepts_int_keys_and_custom_games() -> None:
    tables, _ = parse_paytables({"game": "4 of 10", "paytables": {2: {"pays": {2: 5}}}})
    assert tables.game == SMALL
    assert tables.for_spots(2).game == SMALL


def test_parse_published_figures() -> None:
    _, published = parse_paytables(
        {"paytables": {"1": {"pays": {"1": 3}, "rtp_percent": "75", "overall_odds_1_in": 4}}}
    )
    assert published[1] == Published(rtp_percent=Decimal(75), overall_odds_1_in=Decimal(4))


def _with(path: list[str], value: Any, *, delete: bool = False) -> dict[str, Any]:
    doc = copy_vectors()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with(["paytables", "4", "pays", "5"], 1), 'paytables["4"].pays["5"]: pay for 5 hits but only 4 spots'),
        (_with(["paytables", "4", "pays", "4"], -72), 'paytables["4"].pays["4"]: must be >= 0'),
        (_with(["paytables", "4", "pays", "4"], 72.0), 'paytables["4"].pays["4"]: 72.0 is a float'),
        (_with(["paytables", "4", "pays", "4"], "72 "), 'paytables["4"].pays["4"]: "72 " is not a plain decimal'),
        (_with(["paytables", "4", "pays"], {"4": 0, "3": 0}), 'paytables["4"]: paytable for 4 spots: nothing pays'),
        (_with(["paytables", "4", "pays"], [72]), 'paytables["4"].pays: expected an object'),
        (_with(["paytables", "4", "pays"], None, delete=True), 'paytables["4"]: missing "pays"'),
        (_with(["paytables", "4", "pays", "x"], 1), 'paytables["4"].pays["x"]: hit count string "x" is not a whole number'),
        (_with(["paytables", "4", "pays", "03"], 1), 'paytables["4"].pays["03"]: hit count'),
        (_with(["paytables", "4", "payz"], {}), 'paytables["4"]: unknown key "payz"'),
        (_with(["paytables", "4", "rtp_percent"], "high"), 'paytables["4"].rtp_percent: expected a number'),
        (_with(["paytables", "4", "rtp_percent"], float("nan")), 'paytables["4"].rtp_percent: nan is not a finite number'),
        (_with(["paytables", "4", "rtp_percent"], True), 'paytables["4"].rtp_percent: expected a number'),
        (_with(["paytables", "4", "overall_odds_1_in"], 0.5), 'paytables["4"].overall_odds_1_in: must be >= 1'),
        (_with(["paytables", "4", "max_win_multiplier"], 0), 'paytables["4"]: paytable for 4 spots: max_win_multiplier must be > 0'),
        (_with(["paytables", "4", "max_win_multiplier"], 50.5), 'paytables["4"].max_win_multiplier: 50.5 is a float'),
        (_with(["paytables", "0"], {"pays": {"0": 1}}), 'paytables["0"]: paytable for 0 spots: spots must be in 1..10'),
        (_with(["paytables", "11"], {"pays": {"11": 1}}), 'paytables["11"]: paytable for 11 spots: spots must be in 1..10'),
        (_with(["paytables", "ten"], {"pays": {"1": 1}}), 'paytables["ten"]: spot count string "ten" is not a whole number'),
        (_with(["paytables", "4"], [1, 2]), 'paytables["4"]: expected an object, got array'),
        (_with(["paytables"], {}), "paytables: no paytable given"),
        (_with(["paytables"], [1]), "paytables: expected an object keyed by spots"),
        (_with(["paytables"], None, delete=True), 'paytable document: missing "paytables"'),
        (_with(["game"], "20 from 80"), 'game: expected "DRAWN of POOL"'),
        (_with(["game"], "5 of 80"), 'paytables["10"]: paytable for 10 spots: more spots than the 5 numbers drawn'),
        (_with(["version"], 2), 'paytable document: unknown key "version"'),
        (_with(["source"], 7), "source: expected a string"),
        (_with(["facts"], "x"), "facts: expected an object"),
    ],
)  # fmt: skip
def test_parse_rejects_with_location(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PaytableError) as info:
        parse_paytables(doc)
    assert str(info.value).startswith(message), str(info.value)


def test_parse_rejects_duplicate_spot_and_hit_keys() -> None:
    with pytest.raises(PaytableError, match='paytables\\["4"\\]: a second paytable for 4 spots'):
        parse_paytables({"paytables": {4: {"pays": {4: 1}}, "4": {"pays": {4: 1}}}})
    with pytest.raises(PaytableError, match=r'pays\["4"\]: a second pay for 4 hits'):
        parse_paytables({"paytables": {"4": {"pays": {4: 1, "4": 2}}}})


def test_parse_rejects_non_mapping_documents() -> None:
    docs: list[Any] = [[], "x", None, 3]
    for doc in docs:
        with pytest.raises(PaytableError, match="paytable document: expected an object"):
            parse_paytables(doc)


# ----------------------------------------------------------------- picks


def test_validate_picks_sorts_and_accepts_1_to_10() -> None:
    assert validate_picks([80, 1, 40]) == (1, 40, 80)
    assert validate_picks(range(1, 11)) == tuple(range(1, 11))
    assert validate_picks((7,)) == (7,)
    assert validate_picks([3, 1], SMALL, max_spots=4) == (1, 3)


@pytest.mark.parametrize(
    ("picks", "match"),
    [
        ([], "no picks"),
        ([1, 2, 2], "pick 2 is chosen twice"),
        ([0], "pick 0 is out of range 1..80"),
        ([81], "pick 81 is out of range 1..80"),
        ([-5], "out of range"),
        ([True], "boolean"),
        ([1, False], "boolean"),
        ([1.0], "not an integer"),
        (["5"], "not an integer"),
        (list(range(1, 12)), "11 picks: choose at most 10"),
        ("12", "must be a list"),
        (5, "must be a list"),
        ({1: 1}, "must be a list"),
        (None, "must be a list"),
    ],
)
def test_validate_picks_rejects(picks: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(match)):
        validate_picks(picks)


def test_validate_picks_respects_game_and_max_spots() -> None:
    with pytest.raises(ProtocolError, match=re.escape("out of range 1..10")):
        validate_picks([11], SMALL)
    with pytest.raises(ProtocolError, match="at most 3"):
        validate_picks([1, 2, 3, 4], max_spots=3)
    with pytest.raises(ProtocolError, match="max_spots"):
        validate_picks([1], max_spots=0)


def test_count_hits() -> None:
    drawn = list(range(1, 21))
    assert count_hits((1, 2, 30), drawn) == 2
    assert count_hits((21, 22), drawn) == 0
    assert count_hits(range(11, 21), drawn) == 10


def test_settle_a_ticket_end_to_end(parsed: tuple[PaytableSet, dict[int, Published]]) -> None:
    picks = validate_picks([5, 3, 1, 2, 4])
    drawn = [1, 2, 3, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76]
    hits = count_hits(picks, drawn)
    assert hits == 3
    assert parsed[0].for_spots(len(picks)).payout(250, hits) == 500
