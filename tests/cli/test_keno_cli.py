"""``rgs keno rtp``: human and JSON output against the published vectors, one-line errors."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from cli.main import main

VECTORS_FILE = Path(__file__).resolve().parents[1] / "data" / "keno_paytables.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


# The real entry point: every command module registered, its error handling.
run = main


def rounded(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_rtp_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["keno", "rtp", "--paytable", str(VECTORS_FILE)])
    out = capsys.readouterr()
    assert code == 0
    assert out.err == ""
    lines = out.out.splitlines()
    assert lines[0].startswith("Keno 20 of 80: paytables from ")
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["spots"])
    assert "RTP %" in lines[header] and "odds 1 in" in lines[header]
    rows = [line.split() for line in lines[header + 1 :]]
    assert [int(row[0]) for row in rows] == [10, 9, 8, 7, 6, 5, 4]  # descending, like the file
    for row in rows:
        published = VECTORS["paytables"][row[0]]
        rtp, rtp_pub, rtp_diff, odds, odds_pub, odds_diff = row[1:7]
        assert rounded(float(rtp)) == Decimal(str(published["rtp_percent"])).quantize(
            Decimal("0.01")
        )
        assert Decimal(rtp_pub) == Decimal(str(published["rtp_percent"]))
        assert abs(Decimal(rtp_diff)) <= Decimal("0.01")
        assert rounded(float(odds)) == Decimal(str(published["overall_odds_1_in"]))
        assert Decimal(odds_pub) == Decimal(str(published["overall_odds_1_in"]))
        assert abs(Decimal(odds_diff)) <= Decimal("0.01")
    ten = rows[0]
    assert ten[1] == "63.6694" and ten[4] == "9.0538"


def test_rtp_json_matches_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["keno", "rtp", "--paytable", str(VECTORS_FILE), "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert out.err == ""
    doc = json.loads(out.out)
    assert doc["game"] == "20 of 80"
    assert list(doc["paytables"]) == ["10", "9", "8", "7", "6", "5", "4"]
    for spots, row in doc["paytables"].items():
        published = VECTORS["paytables"][spots]
        assert set(row) == {
            "rtp_percent",
            "overall_odds_1_in",
            "sd",
            "hit_frequency",
            "rtp_exact",
            "published",
            "difference",
        }
        assert round(row["rtp_percent"], 2) == published["rtp_percent"]
        assert round(row["overall_odds_1_in"], 2) == published["overall_odds_1_in"]
        assert row["published"] == {
            "rtp_percent": published["rtp_percent"],
            "overall_odds_1_in": published["overall_odds_1_in"],
        }
        assert row["difference"]["rtp_percent"] == pytest.approx(
            row["rtp_percent"] - published["rtp_percent"], abs=1e-9
        )
        assert abs(row["difference"]["rtp_percent"]) <= 0.01
        assert abs(row["difference"]["overall_odds_1_in"]) <= 0.01
        numerator, denominator = (int(part) for part in row["rtp_exact"].split("/"))
        assert float(Fraction(numerator, denominator) * 100) == pytest.approx(row["rtp_percent"])
        assert row["overall_odds_1_in"] == pytest.approx(1 / row["hit_frequency"])
        assert row["sd"] > 0
    assert doc["paytables"]["10"]["rtp_exact"] == "349204463/548465060"
    assert doc["paytables"]["4"]["sd"] == pytest.approx(4.093004668877492)


def test_rtp_without_published_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.json"
    path.write_text(
        json.dumps(
            {
                "game": "4 of 10",
                "paytables": {
                    "2": {"pays": {"2": 5, "1": "0.5"}},
                    "1": {"pays": {"1": 2}, "rtp_percent": 80},
                },
            }
        )
    )
    assert run(["keno", "rtp", "--paytable", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["game"] == "4 of 10"
    assert list(doc["paytables"]) == ["2", "1"]
    two = doc["paytables"]["2"]
    # 4 of 10, 2 spots: P(1) = 4*6/45, P(2) = 6/45 -> RTP = (12 + 30)/45
    assert two["rtp_exact"] == "14/15"
    assert two["published"] is None and two["difference"] is None
    one = doc["paytables"]["1"]
    assert one["rtp_exact"] == "4/5"
    assert one["published"] == {"rtp_percent": 80.0, "overall_odds_1_in": None}
    assert one["difference"] == {"rtp_percent": 0.0, "overall_odds_1_in": None}

    assert run(["keno", "rtp", "--paytable", str(path)]) == 0
    text = capsys.readouterr().out
    row_two = next(line for line in text.splitlines() if line.split()[:1] == ["2"])
    assert row_two.split()[1:4] == ["93.3333", "-", "-"]


def assert_one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    out = capsys.readouterr()
    assert code == 2
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.json"
    code = run(["keno", "rtp", "--paytable", str(path)])
    assert_one_line_error(capsys, code, "rgs keno rtp: cannot read", "nope.json", "no such file")


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["keno", "rtp", "--paytable", str(tmp_path)])
    assert_one_line_error(capsys, code, "cannot read", "directory")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "is not valid JSON: Expecting property name"),
        (b"", "is not valid JSON"),
        (b'{"paytables": {"4": {"pays": {"4": NaN}}}}', "NaN is not a number JSON allows"),
        (b'{"paytables": {"4": {"pays": {"4": 1, "4": 2}}}}', 'duplicate key "4"'),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_unreadable_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, needle: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code = run(["keno", "rtp", "--paytable", str(path)])
    assert_one_line_error(capsys, code, needle)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"paytables": {"4": {"pays": {"5": 1}}}}, 'paytables["4"].pays["5"]: pay for 5 hits but only 4 spots'),
        ({"paytables": {"4": {"pays": {"4": 2.5}}}}, 'paytables["4"].pays["4"]: 2.5 is a float'),
        ({"paytables": {"11": {"pays": {"1": 1}}}}, "spots must be in 1..10"),
        ({"paytables": {"4": {"pays": {"4": 0}}}}, "nothing pays"),
        ({"paytable": {}}, 'unknown key "paytable"'),
        ([1, 2], "expected an object, got array"),
    ],
)  # fmt: skip
def test_invalid_paytable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any, needle: str
) -> None:
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(doc))
    code = run(["keno", "rtp", "--paytable", str(path)])
    line = assert_one_line_error(capsys, code, needle)
    assert line.startswith(f"rgs keno rtp: {path}: ")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(capsys, run(["keno"]), "rgs keno")
    assert_one_line_error(capsys, run(["keno", "rtp"]), "--paytable")
    assert_one_line_error(capsys, run(["keno", "odds"]), "invalid choice")
