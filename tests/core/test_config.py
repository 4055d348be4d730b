from pathlib import Path

import pytest

from core.config import Config, load_config
from core.errors import ConfigError


def test_defaults_are_valid() -> None:
    config = load_config({})
    assert config == Config()
    assert config.database_url is None
    assert config.pg_data_dir == Path(".rgs/postgres")


def test_environment_beats_file_and_conventional_names_work() -> None:
    config = load_config(
        {"RGS_SHARDS": "4", "DATABASE_URL": "postgresql://u@h/db", "RAY_ADDRESS": "ray://x:10001"},
        "shards = 3\npartitions = 128\n",
    )
    assert config.shards == 4
    assert config.partitions == 128
    assert config.database_url == "postgresql://u@h/db"
    assert config.ray_address == "ray://x:10001"


def test_file_section_is_optional() -> None:
    assert load_config({}, "[rgs]\nhttp_port = 9000\n").http_port == 9000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RGS_SHARDS": "zero"}, r"shards from \$RGS_SHARDS: 'zero' is not a valid int"),
        ({"RGS_SHARDS": "0"}, "shards=0 is invalid"),
        ({"RGS_SHARDS": "8", "RGS_PARTITIONS": "4"}, "at least the number of shards"),
        ({"RGS_HTTP_PORT": "70000"}, "TCP port"),
        ({"DATABASE_URL": "localhost"}, "database_url must be a URL"),
        ({"RGS_CHAIN_PRIVATE_KEY": "0xabc"}, "chain_rpc_url is not"),
    ],
)
def test_bad_environment_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_bad_file() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, "shards = ", file_name="rgs.toml")
    with pytest.raises(ConfigError, match=r"unknown setting.*shard_count"):
        load_config({}, "shard_count = 2")
    with pytest.raises(ConfigError, match="not a valid int"):
        load_config({}, "shards = 2.5")


def test_secret_is_not_in_repr() -> None:
    config = load_config({"RGS_CHAIN_RPC_URL": "http://x", "RGS_CHAIN_PRIVATE_KEY": "0xdeadbeef"})
    assert "deadbeef" not in repr(config)
