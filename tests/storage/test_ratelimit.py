"""Shared rate limits: exact bursts, refill, several replicas, several limits, atomicity,
and what happens when Redis is away."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
import redis.asyncio

from storage.errors import RateLimitUnavailableError
from storage.ratelimit import RateLimiter
from storage.redis_store import EmbeddedRedis, connect_redis
from tests.redis_fixtures import start_test_redis


@pytest.fixture
def prefix() -> str:
    # Tests share one server: each gets its own keys.
    return f"rgs:test:rl:{uuid.uuid4().hex[:8]}"


async def test_a_limit_of_n_admits_exactly_n_then_refuses(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    decisions = [await limiter.hit("op-1", limit=5, window_s=60) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.remaining == 0 and refused.limited_by == "op-1" and not refused.degraded
    # One token comes back every 60/5 = 12 s.
    assert 1 <= refused.retry_after_s <= 12
    assert all(d.retry_after_s == 0 for d in decisions[:5])


async def test_two_replicas_share_the_count(server: EmbeddedRedis, prefix: str) -> None:
    first, second = await connect_redis(server.url), await connect_redis(server.url)
    try:
        a, b = RateLimiter(first, prefix=prefix), RateLimiter(second, prefix=prefix)
        allowed = 0
        for i in range(10):
            limiter = a if i % 2 == 0 else b
            allowed += (await limiter.hit("op-shared", limit=6, window_s=60)).allowed
        assert allowed == 6
        assert not (await b.hit("op-shared", limit=6, window_s=60)).allowed
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_quota_comes_back_after_the_window(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    assert all([(await limiter.hit("ip-1", 3, window_s=1)).allowed for _ in range(3)])
    refused = await limiter.hit("ip-1", 3, window_s=1)
    assert not refused.allowed and refused.retry_after_s == 1
    await asyncio.sleep(1.05)
    assert all([(await limiter.hit("ip-1", 3, window_s=1)).allowed for _ in range(3)])
    assert not (await limiter.hit("ip-1", 3, window_s=1)).allowed


async def test_no_double_burst_at_a_window_boundary(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    # A fixed window would admit 4 just before its end and 4 more just after. Here, after a
    # burst of 4 in a 2 s window, one more is admitted every 0.5 s.
    limiter = RateLimiter(client, prefix=prefix)
    assert sum([(await limiter.hit("k", 4, window_s=2)).allowed for _ in range(8)]) == 4
    await asyncio.sleep(0.55)
    assert sum([(await limiter.hit("k", 4, window_s=2)).allowed for _ in range(8)]) == 1


async def test_keys_expire_when_the_bucket_is_full_again(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    await limiter.hit("op-ttl", limit=10, window_s=30)
    ttl_ms = await client.pttl(limiter.redis_key("op-ttl", 30))
    assert 0 < ttl_ms <= 3_000  # one request's worth: 30 s / 10
    assert await client.exists(limiter.redis_key("never-hit", 30)) == 0


async def test_hit_many_counts_only_when_every_limit_allows(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    checks = [("operator:acme", 10, 60), ("ip:10.0.0.7", 2, 60)]

    first = await limiter.hit_many(checks)
    assert first.allowed and first.remaining == 1  # the smaller of 9 and 1
    assert (await limiter.hit_many(checks)).allowed

    refused = await limiter.hit_many(checks)
    assert (
        not refused.allowed and refused.limited_by == "ip:10.0.0.7" and refused.retry_after_s >= 1
    )
    # The refused request did not spend the operator's quota: 10 - 2 remain.
    other_ip = await limiter.hit_many([("operator:acme", 10, 60), ("ip:10.0.0.8", 2, 60)])
    assert other_ip.allowed and other_ip.remaining == 1
    assert (await limiter.hit("operator:acme", 10, 60)).remaining == 10 - 4


async def test_hit_many_reports_the_limit_to_wait_longest_for(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    await limiter.hit("short", 1, window_s=2)
    await limiter.hit("long", 1, window_s=60)
    refused = await limiter.hit_many([("short", 1, 2), ("long", 1, 60)])
    assert not refused.allowed and refused.limited_by == "long" and refused.retry_after_s > 50


async def test_concurrent_hits_are_atomic(
    server: EmbeddedRedis, client: redis.asyncio.Redis, prefix: str
) -> None:
    other = await connect_redis(server.url)
    try:
        limiters = [RateLimiter(client, prefix=prefix), RateLimiter(other, prefix=prefix)]
        decisions = await asyncio.gather(
            *(limiters[i % 2].hit("op-hot", limit=50, window_s=60) for i in range(200))
        )
    finally:
        await other.aclose()
    assert sum(d.allowed for d in decisions) == 50
    assert not any(d.degraded for d in decisions)


async def test_the_script_is_reloaded_after_a_flush(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    assert (await limiter.hit("k", 2)).allowed
    await client.script_flush()
    assert (await limiter.hit("k", 2)).allowed
    assert not (await limiter.hit("k", 2)).allowed


async def test_arguments_are_checked(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, prefix=prefix)
    for bad in ([], [("k", 0, 60)], [("k", 5, 0)], [("k", 5, 60), ("k", 9, 60)]):
        with pytest.raises(ValueError):
            await limiter.hit_many(bad)


async def test_redis_down_fails_open_by_default_or_closed_on_request(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_test_redis(tmp_path)
    client = await connect_redis(server.url)
    try:
        open_limiter = RateLimiter(client, prefix=prefix)
        closed_limiter = RateLimiter(client, prefix=prefix, fail_open=False)
        assert (await open_limiter.hit("k", 1)).allowed
        server.stop()

        with caplog.at_level(logging.WARNING, logger="rgs.ratelimit"):
            degraded = [await open_limiter.hit("k", 1) for _ in range(3)]
        assert all(d.allowed and d.degraded for d in degraded)
        assert open_limiter.unavailable_count == 3
        warnings = [r for r in caplog.records if "NOT enforced" in r.message]
        assert len(warnings) == 1  # one warning, not one per request

        with pytest.raises(RateLimitUnavailableError):
            await closed_limiter.hit("k", 1)

        server.start()  # same port, and the bucket was saved on stop
        decision = await open_limiter.hit("k", 1)
        assert not decision.allowed and not decision.degraded
    finally:
        await client.aclose()
        server.stop()


async def test_a_hung_redis_cannot_stall_a_request(prefix: str) -> None:
    # A listener that accepts and never answers, like a black-holed Redis.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):  # until the client hangs up
            pass
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    try:
        limiter = RateLimiter(client, prefix=prefix, timeout_s=0.2)
        started = asyncio.get_running_loop().time()
        decision = await limiter.hit("k", 1)
        assert decision.allowed and decision.degraded
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await client.aclose()
        listener.close()
        await listener.wait_closed()
