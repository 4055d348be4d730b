"""Ticket books: the file format, validation as one-line errors, synthetic books."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.keno import PaytableSet
from sims import SimulationError
from sims.book import (
    load_book,
    number_weights,
    parse_spot_mix,
    parse_stake_distribution,
    synthetic_book,
)

from .conftest import PAYTABLES_FILE, SMALL_BOOK_FILE


def write_book(tmp_path: Path, **document: object) -> Path:
    base: dict[str, object] = {
        "currency": "EUR",
        "paytables": str(PAYTABLES_FILE),
        "tickets": [{"picks": [1, 2, 3, 4], "stake_minor": 100}],
    }
    base.update(document)
    path = tmp_path / "book.json"
    path.write_text(json.dumps(base), encoding="utf-8")
    return path


def test_small_book_loads_with_counts_and_integer_payouts() -> None:
    book = load_book(SMALL_BOOK_FILE)
    assert len(book) == 30
    assert book.spot_mix() == {4: 1, 6: 3, 8: 1, 10: 25}
    assert book.stake_per_round == 200 + 3 * 500 + 25 * 100 + 1000
    table = book.payout_table
    assert table.dtype == np.int64 and table.shape == (30, 11)
    # 10 of 10 on a 1.00 EUR ticket pays 100,000.00 EUR, capped at max_win_minor 50,000.00.
    assert table[4, 10] == 5_000_000
    assert table[0, 4] == 200 * 72


def test_fractional_multipliers_round_down_in_integers(tmp_path: Path) -> None:
    paytables = {"paytables": {"2": {"pays": {"2": "2.5", "1": "0.3"}}}}
    path = write_book(tmp_path, paytables=paytables,
                      tickets=[{"picks": [5, 9], "stake_minor": 3}])
    book = load_book(path)
    assert book.payout_table[0, :3].tolist() == [0, 0, 7]  # floor(0.9) = 0, floor(7.5) = 7
    probabilities = book.tables.for_spots(2).probabilities()
    assert book.exact_mean_payout() == 7 * probabilities[2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tickets": [{"picks": [1, 1, 2, 3], "stake_minor": 100}]}, "chosen twice"),
        ({"tickets": [{"picks": [0, 2, 3, 4], "stake_minor": 100}]}, "out of range"),
        ({"tickets": [{"picks": [1, 2, 3], "stake_minor": 100}]}, "no paytable for 3 spots"),
        ({"tickets": [{"picks": [1, 2, 3, 4], "stake_minor": 1.5}]}, "integer number of minor units"),
        ({"tickets": [{"picks": [1, 2, 3, 4], "stake_minor": 0}]}, "must be positive"),
        ({"tickets": [{"picks": [1, 2, 3, 4], "stake_minor": 5, "count": 0}]}, "count"),
        ({"tickets": [{"picks": [1, 2, 3, 4], "stake": 5}]}, "unknown key"),
        ({"tickets": []}, "non-empty list"),
        ({"currency": "XXX"}, "unknown currency"),
        ({"paytables": 5}, "paytables"),
        ({"paytables": "missing.json"}, "no such file"),
        ({"max_win_minor": -1}, "must not be negative"),
        ({"players": 3}, "unknown key"),
    ],
)
def test_bad_books_are_one_line_errors(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(SimulationError, match=message) as caught:
        load_book(write_book(tmp_path, **change))
    assert "\n" not in str(caught.value)


def test_unreadable_book_files(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="no such file"):
        load_book(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"tickets": [', encoding="utf-8")
    with pytest.raises(SimulationError, match="not valid JSON"):
        load_book(broken)
    duplicated = tmp_path / "dup.json"
    duplicated.write_text('{"currency": "EUR", "currency": "USD"}', encoding="utf-8")
    with pytest.raises(SimulationError, match="appears twice"):
        load_book(duplicated)


def test_synthetic_book_follows_its_parameters(paytables: PaytableSet) -> None:
    mix = parse_spot_mix("4:1,10:3", paytables)
    stakes = parse_stake_distribution("100:0.5,1000:0.5")
    book = synthetic_book(paytables, players=20_000, spot_mix=mix, stakes=stakes,
                          clustering=1.0, seed=9)
    assert len(book) == 20_000
    counts = book.spot_mix()
    assert set(counts) == {4, 10} and 0.2 < counts[4] / 20_000 < 0.3
    assert set(np.unique(book.stakes).tolist()) == {100, 1000}
    # Clustered players favour 1..31: far more than the 31/80 share of uniform picks.
    share_low = np.bitwise_count(book.picks.lo & np.uint64((1 << 31) - 1)).sum() / book.spots.sum()
    assert share_low > 0.5
    again = synthetic_book(paytables, players=20_000, spot_mix=mix, stakes=stakes,
                           clustering=1.0, seed=9)
    assert np.array_equal(again.picks.lo, book.picks.lo) and np.array_equal(again.stakes, book.stakes)


def test_synthetic_parameters_are_validated(paytables: PaytableSet) -> None:
    with pytest.raises(SimulationError, match="no paytable"):
        parse_spot_mix("3:1", paytables)
    with pytest.raises(SimulationError, match="VALUE:WEIGHT"):
        parse_spot_mix("4", paytables)
    with pytest.raises(SimulationError, match="lognormal"):
        parse_stake_distribution("lognormal:0:1")
    with pytest.raises(SimulationError, match="positive integer"):
        parse_stake_distribution("1.5:1")
    with pytest.raises(SimulationError, match="clustering"):
        number_weights(80, 1.5)
    lognormal = parse_stake_distribution("lognormal:200:0.5")
    sample = lognormal.sample(np.random.default_rng(1), 10_000)
    assert sample.min() >= 1 and 150 < np.median(sample) < 250
    assert Fraction(number_weights(80, 0.0).count(1.0), 80) == 1
