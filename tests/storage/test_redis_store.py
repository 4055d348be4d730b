"""The embedded Redis (start, reuse, stop, ports) and the asyncio client helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import EmbeddedServerError, RedisUnavailableError
from storage.redis_store import (
    EmbeddedRedis,
    LuaScript,
    connect_redis,
    redact_redis_url,
    resolve_redis,
)
from tests.redis_fixtures import start_test_redis

# Nothing listens on port 1 (privileged, unassigned): connections are refused at once.
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_test_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
    assert not server.running()


def test_starts_fast_on_a_tcp_port_and_remembers_it(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r")
    started = time.monotonic()
    url = server.start()
    elapsed = time.monotonic() - started
    try:
        assert elapsed < 1.0, f"start took {elapsed:.2f}s"
        assert url == f"redis://127.0.0.1:{server.port}/0" == server.url
        assert server.running() and server.started_here
        assert json.loads((tmp_path / "r" / "redis.json").read_text())["port"] == server.port
    finally:
        server.stop()
    assert not server.running()


def test_reachable_from_another_process(server: EmbeddedRedis) -> None:
    code = (
        "import redis, sys; r = redis.Redis.from_url(sys.argv[1]); "
        "r.set('rgs:test:other-process', 'yes'); print(r.ping())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "True"


def test_a_second_start_reuses_the_live_server(server: EmbeddedRedis) -> None:
    again = EmbeddedRedis(server.state_dir)
    assert again.start() == server.url
    assert not again.started_here
    url, started = resolve_redis(None, server.state_dir)
    assert url == server.url and started is None  # not ours to stop


def test_resolve_redis_takes_an_external_url_as_is(tmp_path: Path) -> None:
    assert resolve_redis("redis://cache.internal:6379/2", tmp_path) == (
        "redis://cache.internal:6379/2",
        None,
    )
    assert not (tmp_path / "redis.json").exists()


def test_resolve_redis_hands_back_a_server_it_started(tmp_path: Path) -> None:
    url, started = resolve_redis(None, tmp_path)
    assert started is not None and started.url == url
    started.stop()


async def test_stop_saves_and_a_restart_keeps_port_and_data(tmp_path: Path) -> None:
    server = start_test_redis(tmp_path)
    client = await connect_redis(server.url)
    await client.set("kept", b"1")
    await client.aclose()
    port = server.port
    server.stop()

    again = start_test_redis(tmp_path)
    try:
        assert again.port == port and again.started_here
        client = await connect_redis(again.url)
        assert await client.get("kept") == b"1"
        await client.aclose()
    finally:
        again.stop()


def test_a_remembered_port_held_by_another_redis_is_not_taken_over(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    # A stale redis.json (after a reboot, say) points at a port now served by someone else.
    (tmp_path / "redis.json").write_text(json.dumps({"port": server.port}))
    mine = EmbeddedRedis(tmp_path)
    assert not mine.running()
    mine.start()
    try:
        assert mine.port != server.port and mine.running() and server.running()
    finally:
        mine.stop()
    assert server.running()


def test_a_remembered_port_held_by_something_else_moves_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        (tmp_path / "redis.json").write_text(json.dumps({"port": taken}))
        server = EmbeddedRedis(tmp_path)
        server.start()
        try:
            assert server.port != taken and server.running()
        finally:
            server.stop()

        with pytest.raises(EmbeddedServerError):
            EmbeddedRedis(tmp_path / "fixed", port=taken).start()


async def test_connect_redis_fails_fast_with_a_local_error() -> None:
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=r"127\.0\.0\.1:1\b"):
        await connect_redis(UNREACHABLE)
    assert time.monotonic() - started < 2.0


async def test_the_pool_makes_a_burst_wait_instead_of_failing(server: EmbeddedRedis) -> None:
    client = await connect_redis(server.url, max_connections=4)
    try:
        replies = await asyncio.gather(*(client.incr("rgs:test:burst") for _ in range(200)))
        assert sorted(replies) == list(range(1, 201))
    finally:
        await client.delete("rgs:test:burst")
        await client.aclose()


async def test_lua_script_falls_back_to_eval_after_a_script_flush(server: EmbeddedRedis) -> None:
    script = LuaScript("return tonumber(ARGV[1]) + 1")
    client = await connect_redis(server.url)
    try:
        await client.script_flush()
        assert await script(client, [], [41]) == 42  # NOSCRIPT -> EVAL (caches it)
        assert await client.script_exists(script.sha) == [True]
        assert await script(client, [], [1]) == 2  # EVALSHA
    finally:
        await client.aclose()


def test_redact_redis_url() -> None:
    assert redact_redis_url("redis://:s3cret@cache:6380/1") == "redis://:***@cache:6380/1"
    assert redact_redis_url("rediss://app:s3cret@cache/0") == "rediss://app:***@cache/0"
    assert redact_redis_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
