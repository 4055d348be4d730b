"""``rgs fairness draw|floats``: human and JSON output, one-line errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from cli.main import main

# Stake's published vectors (copied from shared/vectors/stake.json).
KENO_SEEDS = [
    "--server-seed", "735249f062ac025044a8523aa92e034803f02d6b75129abc97e8b1be19aab9b4",
    "--client-seed", "ec75fca98de6f2d9",
    "--nonce", "20",
]  # fmt: skip
KENO_STAKE_10_OF_40 = [*KENO_SEEDS, "--pool", "40", "--count", "10", "--derivation", "stake"]
KENO_10_OF_40 = [38, 33, 8, 23, 21, 30, 5, 2, 7, 1]
FLOAT_SEEDS = [
    "--server-seed", "5d43f77f53fec7d115180136105400f0fd2a1f20b681b6b54a289c207923b190",
    "--client-seed", "iyAyNGKPsa",
    "--nonce", "29",
]  # fmt: skip
FLOATS = [0.418529668823, 0.986164369853, 0.605522957863]


# The real entry point: every command module registered, its error handling.
run = main


def test_draw_prints_numbers_in_draw_order(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["fairness", "draw", *KENO_STAKE_10_OF_40])
    out = capsys.readouterr()
    assert code == 0
    assert out.err == ""
    header, numbers = out.out.splitlines()
    assert "stake" in header
    assert hashlib.sha256(KENO_SEEDS[1].encode()).hexdigest() in header
    assert numbers == " ".join(str(n) for n in KENO_10_OF_40)


def test_draw_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["fairness", "draw", *KENO_STAKE_10_OF_40, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "numbers": KENO_10_OF_40,
        "derivation": "stake",
        "server_seed_hash": hashlib.sha256(KENO_SEEDS[1].encode()).hexdigest(),
        "client_seed": "ec75fca98de6f2d9",
        "nonce": 20,
        "pool": 40,
        "count": 10,
    }


def test_draw_defaults_to_v1_twenty_of_eighty(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fairness", "draw", *KENO_SEEDS, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["derivation"], result["pool"], result["count"]) == ("v1", 80, 20)
    assert len(set(result["numbers"])) == 20
    assert all(1 <= n <= 80 for n in result["numbers"])


def test_floats_human_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fairness", "floats", *FLOAT_SEEDS, "--count", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert [round(float(line), 12) for line in lines[1:]] == FLOATS

    assert run(["fairness", "floats", *FLOAT_SEEDS, "--count", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [round(f, 12) for f in result["floats"]] == FLOATS
    assert (result["client_seed"], result["nonce"], result["count"]) == ("iyAyNGKPsa", 29, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["fairness", "draw", "--server-seed", "s", "--client-seed", "c", "--nonce", "-1"],
            "nonce must be >= 0",
        ),
        (
            ["fairness", "draw", *KENO_SEEDS, "--pool", "10", "--count", "11"],
            "draw count must be between 0 and the pool size 10",
        ),
        (["fairness", "draw", *KENO_SEEDS, "--derivation", "v9"], "invalid choice: 'v9'"),
        (["fairness", "draw", "--client-seed", "c", "--nonce", "1"], "required: --server-seed"),
        (["fairness", "draw", *KENO_SEEDS, "--nonce", "x"], "invalid int value: 'x'"),
        (["fairness", "floats", *FLOAT_SEEDS], "required: --count"),
        (["fairness", "floats", *FLOAT_SEEDS, "--count", "-2"], "float count must be between 0"),
        (["fairness"], "required: COMMAND"),
    ],
)
def test_bad_input_fails_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(argv)
    out = capsys.readouterr()
    assert code != 0
    assert out.out == ""
    assert len(out.err.splitlines()) == 1
    assert message in out.err
    assert "Traceback" not in out.err
