"""``rgs verify`` through the real entry point, on a round really played on the dev chain.

One round is played once for the module (table runner, chain notary on Ray, the session's
PostgreSQL); its public record is what the CLI reads, from the database or from a saved
file (``--record``), altered the way a dishonest operator might alter it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.round_scheduler import RayNotary
from actors.table_runner import TableRunner
from cli.main import main
from core.seeds import SeedVault, generate_key_hex, parse_key
from core.tables import TableConfig
from core.wallet import Command, Result
from storage.embedded_chain import EmbeddedChain
from storage.games import load_paytable_documents, paytable_sets
from storage.rounds import RoundStore
from tests.chain_fixtures import start_test_chain

# The real entry point: every command module registered, its error handling.
run = main


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedChain]:
    chain = start_test_chain(tmp_path_factory.mktemp("chain"), block_time_s=0.5)
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def notary(ray_session: None, chain: EmbeddedChain) -> Iterator[RayNotary]:
    import ray

    from actors.chain_notary import start_notary

    name = f"chain-notary-{uuid.uuid4().hex[:6]}"
    handle = start_notary(chain.url, chain.private_key, name=name, batch_window_s=0.05)
    yield RayNotary(name)
    ray.kill(handle, no_restart=True)


async def _no_wallet(commands: list[Command]) -> list[Result]:
    raise AssertionError(f"a round without bets sends no wallet commands, got {commands}")


@pytest.fixture(scope="module")
async def revealed(database_url: str, notary: RayNotary) -> dict[str, Any]:
    """The public record of one revealed round (no bets: verifying needs none)."""
    table = TableConfig.from_mapping(
        {
            "table_id": f"v{uuid.uuid4().hex[:8]}",
            "paytable_set": "standard",
            "currencies": ["EUR"],
            "max_stake_minor": 10_000,
            "period_ms": 1000,
            "close_offset_ms": 300,
            "commit_lead_ms": 4000,
        }
    )
    paytables = paytable_sets(load_paytable_documents())["standard"]
    store = await RoundStore.connect(database_url)
    try:
        runner = TableRunner(
            table, paytables, store, notary, _no_wallet, SeedVault(parse_key(generate_key_hex())),
            salt_wait_s=15,
        )
        await runner.start(run_schedule=False)
        rid = await runner.create_next()
        assert rid is not None
        await runner.wait_idle()
        await runner.stop()
        record = await store.published(rid)
    finally:
        await store.close()
    assert record is not None and record["phase"] == "revealed", record
    return record


def _save(tmp_path: Path, record: dict[str, Any]) -> Path:
    path = tmp_path / "round.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _swapped_numbers(record: dict[str, Any]) -> dict[str, Any]:
    numbers = list(record["numbers"])
    numbers[0], numbers[1] = numbers[1], numbers[0]
    return {"numbers": numbers}


def _commit_after_open(record: dict[str, Any]) -> dict[str, Any]:
    # betting "opened" well before the commit block, and the record no longer says which
    # block that was: the verifier has to find it on the chain
    proof = {k: v for k, v in record["commit_proof"].items() if k != "block"}
    return {"commit_proof": proof, "opens_at": record["opens_at"] - 60_000}


TAMPERINGS = {
    "drawn number": (_swapped_numbers, {"draw_replays"}),
    "revealed seed": (
        lambda record: {"revealed_seed": "ab" * 32},
        {"seed_matches_commitment", "draw_replays", "reveal_on_chain"},
    ),
    "salt": (lambda record: {"salt": "0x" + "11" * 32}, {"salt_from_chain", "draw_replays"}),
    "opening time": (_commit_after_open, {"committed_before_open"}),
}


def test_untampered_record_file_verifies(
    revealed: dict[str, Any], chain: EmbeddedChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["verify", "--record", str(_save(tmp_path, revealed)), "--rpc-url", chain.url])
    out = capsys.readouterr()
    assert code == 0, out
    lines = out.out.splitlines()
    assert lines[0] == f"round {revealed['round_id']}: OK"
    checks = [line.split()[1].rstrip(":") for line in lines[1:-1]]
    assert checks == [
        "revealed", "seed_matches_commitment", "commitment_on_chain", "committed_before_open",
        "salt_from_chain", "draw_replays", "reveal_on_chain",
    ]  # fmt: skip
    assert all(line.split()[0] == "ok" for line in lines[1:-1])
    assert lines[-1] == "1 of 1 round(s) verified"


def test_round_in_the_database_verifies(
    revealed: dict[str, Any], database_url: str, chain: EmbeddedChain, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["verify", revealed["round_id"], "--database-url", database_url, "--rpc-url", chain.url, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert (result["ok"], result["rounds"], result["failed"]) == (True, 1, 0)


@pytest.mark.parametrize("tampered", sorted(TAMPERINGS))
def test_tampered_record_file_fails_naming_the_check(
    tampered: str,
    revealed: dict[str, Any],
    chain: EmbeddedChain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    change, expected = TAMPERINGS[tampered]
    record = {**revealed, **change(revealed)}
    path = _save(tmp_path, record)

    code = run(["verify", "--record", str(path), "--rpc-url", chain.url])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1, lines
    assert lines[0] == f"round {revealed['round_id']}: FAILED"
    failed = {line.split()[1].rstrip(":") for line in lines[1:-1] if line.split()[0] == "FAIL"}
    assert failed == expected
    assert lines[-1] == "0 of 1 round(s) verified; 1 FAILED"

    assert run(["verify", "--record", str(path), "--rpc-url", chain.url, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["failed"]) == (False, 1)
    assert {c["check"] for c in result["results"][0]["checks"] if not c["ok"]} == expected


def test_a_stranger_as_notary_fails_the_chain_checks(
    revealed: dict[str, Any], chain: EmbeddedChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(tmp_path, revealed)
    code = run(["verify", "--record", str(path), "--rpc-url", chain.url, "--notary", "0x" + "12" * 20, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {c["check"] for c in result["results"][0]["checks"] if not c["ok"]} == {
        "commitment_on_chain", "committed_before_open", "reveal_on_chain"
    }
