"""The round feed: fan-out in order, backlog, recent list, frame encodings, and recovery
from lost connections and a Redis that lost its data."""

from __future__ import annotations

import asyncio
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from storage.errors import RedisUnavailableError
from storage.feed import _PUBLISH, RoundFeed, Subscription, decode_event, encode_event
from storage.redis_store import EmbeddedRedis, connect_redis
from tests.redis_fixtures import start_test_redis


@pytest.fixture
def channel() -> str:
    # Tests share one server: each gets its own channel (and so its own keys).
    return f"rgs:test:rounds:{uuid.uuid4().hex[:8]}"


def event(n: int) -> dict[str, Any]:
    return {"table_id": "t1", "round_id": f"r{n}", "phase": "created", "at": 1_700_000_000_000 + n}


async def take(events: Subscription, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async for item in events:
            got.append(item)
            if len(got) == n:
                break
    return got


async def test_two_subscribers_on_other_connections_get_every_event_in_order(
    server: EmbeddedRedis, client: redis.asyncio.Redis, channel: str
) -> None:
    publisher = RoundFeed(client, channel=channel)
    first, second = await connect_redis(server.url), await connect_redis(server.url)
    try:
        async with (
            RoundFeed(first, channel=channel).subscribe() as a,
            RoundFeed(second, channel=channel).subscribe() as b,
        ):
            got_a = asyncio.create_task(take(a, 20))
            got_b = asyncio.create_task(take(b, 20))
            seqs = [await publisher.publish(event(n)) for n in range(20)]
            assert seqs == list(range(seqs[0], seqs[0] + 20))
            assert await got_a == await got_b == [event(n) for n in range(20)]
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_subscription_starts_with_the_backlog_without_duplicates(
    client: redis.asyncio.Redis, channel: str
) -> None:
    feed = RoundFeed(client, channel=channel)
    for n in range(5):
        await feed.publish(event(n))
    async with feed.subscribe(backlog=3) as events:
        await feed.publish(event(5))
        assert await take(events, 4) == [event(2), event(3), event(4), event(5)]
    async with feed.subscribe() as events:  # no backlog: only what comes next
        await feed.publish(event(6))
        assert await take(events, 1) == [event(6)]


async def test_recent_keeps_the_last_hundred_oldest_first(
    client: redis.asyncio.Redis, channel: str
) -> None:
    feed = RoundFeed(client, channel=channel)
    assert await feed.recent() == []
    for n in range(105):
        await feed.publish(event(n))
    assert await feed.recent(3) == [event(102), event(103), event(104)]
    assert await feed.recent(500) == [event(n) for n in range(5, 105)]
    assert await client.llen(feed.recent_key) == 100
    assert await feed.recent(0) == []


async def test_exiting_unsubscribes(client: redis.asyncio.Redis, channel: str) -> None:
    feed = RoundFeed(client, channel=channel)
    async with feed.subscribe() as events:
        assert events.connected
        assert await client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    assert await client.pubsub_numsub(channel) == [(channel.encode(), 0)]
    assert [item async for item in events] == []  # a closed subscription just ends


async def test_subscribing_to_an_unreachable_redis_raises() -> None:
    # No retries: redis-py's default (10, backing off up to 1 s) would take seconds here.
    client = redis.asyncio.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(RedisUnavailableError):
            async with RoundFeed(client).subscribe():
                pass
        with pytest.raises(RedisUnavailableError):
            await RoundFeed(client).publish(event(0))
    finally:
        await client.aclose()


async def test_events_missed_while_disconnected_are_delivered_after_reconnecting(
    client: redis.asyncio.Redis, channel: str
) -> None:
    feed = RoundFeed(client, channel=channel)
    async with feed.subscribe() as events:
        await feed.publish(event(0))
        assert await take(events, 1) == [event(0)]
        # Kill the subscriber's connection and publish in the same transaction: those
        # two events can reach it only through the recent list.
        async with client.pipeline(transaction=True) as pipe:
            pipe.client_kill_filter(_type="pubsub", skipme=True)
            for n in (1, 2):
                body = encode_event(event(n))
                pipe.evalsha(
                    _PUBLISH.sha, 2, feed.seq_key, feed.recent_key, body, feed.keep, channel
                )
            await pipe.execute()
        # Nothing else is published: the subscriber must notice the loss by itself.
        assert await take(events, 2) == [event(1), event(2)]
        await feed.publish(event(3))
        await feed.publish(event(4))
        assert await take(events, 2) == [event(3), event(4)]
        assert events.reconnects >= 1 and events.lost == 0


async def test_a_restarted_redis_is_followed_also_when_it_lost_its_data(tmp_path: Path) -> None:
    server = start_test_redis(tmp_path)
    publisher_client = await connect_redis(server.url)
    subscriber_client = await connect_redis(server.url)
    publisher, feed = RoundFeed(publisher_client), RoundFeed(subscriber_client)
    try:
        async with feed.subscribe() as events:
            for n in range(3):
                await publisher.publish(event(n))
            assert await take(events, 3) == [event(0), event(1), event(2)]

            # A clean restart (data saved): the sequence continues.
            server.stop()
            consumer = asyncio.create_task(take(events, 2, timeout_s=20))
            await asyncio.sleep(0.3)  # the subscriber notices and backs off meanwhile
            assert not consumer.done()
            server.start()
            await _publish_once_reconnected(publisher, events, event(3))
            await publisher.publish(event(4))
            assert await consumer == [event(3), event(4)]

            # A restart without its data: the sequence starts again at 1.
            server.stop()
            server.data_file.unlink()
            consumer = asyncio.create_task(take(events, 1, timeout_s=20))
            server.start()
            await _publish_once_reconnected(publisher, events, event(5))
            assert await consumer == [event(5)]
            assert events.lost == 0
    finally:
        await publisher_client.aclose()
        await subscriber_client.aclose()
        server.stop()


async def _publish_once_reconnected(
    publisher: RoundFeed, events: Subscription, item: dict[str, Any]
) -> None:
    reconnects = events.reconnects
    async with asyncio.timeout(20):
        # Polling a counter the subscription exposes for metrics; it has no event to await.
        while events.reconnects == reconnects:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await publisher.publish(item)


def test_frames_round_trip_in_json_and_msgpack() -> None:
    item = {
        "round_id": "r1",
        "numbers": [3, 17, 80],
        "payout": 12_500,
        "note": "ünïcode",
        "ok": True,
    }
    text = encode_event(item, "json")
    assert isinstance(text, str) and " " not in text.replace("ünïcode", "")
    assert decode_event(text) == item
    packed = encode_event(item, "msgpack")
    assert isinstance(packed, bytes) and len(packed) < len(text.encode())
    assert decode_event(packed, "msgpack") == item
    with pytest.raises(ValueError):
        encode_event(item, "xml")  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        encode_event({"x": math.nan})
    with pytest.raises(ValueError):
        decode_event("[1, 2]")
