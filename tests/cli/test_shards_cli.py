"""``rgs shards list`` and ``rgs shards rebalance`` against running shards (in process)."""

from __future__ import annotations

import json

import pytest

from actors.shard import start_shards
from cli.main import main
from core.config import load_config


def test_rebalance_and_list(
    ray_session: None,
    fresh_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RGS_PARTITIONS", "8")
    monkeypatch.delenv("RGS_CONFIG", raising=False)
    shards = start_shards(
        load_config({}, overrides={"shards": 2, "partitions": 8}), fresh_database_url
    )
    try:
        assert (
            main(
                [
                    "shards",
                    "rebalance",
                    "--shards",
                    "3",
                    "--json",
                    "--database-url",
                    fresh_database_url,
                ]
            )
            == 0
        )
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] and report["added"] == ["account-shard-2"]
        assert report["ownership"] == {
            f"account-shard-{i}": [p for p in range(8) if p % 3 == i] for i in range(3)
        }
        assert report["partitions_moved"] == sum(1 for p in range(8) if p % 2 != p % 3)

        assert main(["shards", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)["shards"]
        assert {row["name"]: row["partitions"] for row in listed} == report["ownership"]

        assert (
            main(["shards", "rebalance", "--shards", "1", "--database-url", fresh_database_url])
            == 0
        )
        text = capsys.readouterr().out
        assert "removed  account-shard-1" in text and "removed  account-shard-2" in text
        assert "account-shard-0" in text and "8 partition(s)" in text

        # A count the partitions cannot take is a one-line error, not a traceback.
        assert (
            main(["shards", "rebalance", "--shards", "9", "--database-url", fresh_database_url])
            == 2
        )
        assert "between 1 and the partition count (8)" in capsys.readouterr().err
    finally:
        shards.stop()
