"""The round feed: round events fanned out to every operator-API replica through Redis.

The table's scheduler publishes each phase change with :meth:`RoundFeed.publish`; each
replica holds :meth:`RoundFeed.subscribe` and relays the events to its WebSocket clients,
encoded by :func:`encode_event` (JSON text or msgpack binary frames).

Wire format
    Each published message is ``{"seq": N, "event": {...}}`` (JSON) on the channel
    ``rgs:rounds``; ``N`` comes from the counter ``rgs:rounds:seq``, one more per event
    across all tables. The same message is pushed onto the capped list
    ``rgs:rounds:recent`` (the last 100). One Lua script does all four steps, so the
    list, the counter and the channel never disagree. Readers get the ``event`` dicts back
    exactly as published; ``seq`` is the feed's own bookkeeping.

Subscriptions
    :meth:`RoundFeed.subscribe` returns an async context manager that is also an async
    iterator::

        async with feed.subscribe(backlog=10) as events:
            async for event in events:
                ...

    Once ``__aenter__`` returns, every later publish is delivered. ``backlog=N`` first
    yields up to N recent events, with no duplicate and no gap between them and the live
    ones. When the connection is lost the iterator yields nothing, reconnects with
    exponential backoff (0.1 s doubling to 5 s, jittered) and then yields what it missed,
    from the recent list, before going live again: ``seq`` numbers tell what is missing
    and what was already yielded. Only an outage longer than the list (100 events) loses
    events; they are counted in :attr:`Subscription.lost` and logged. If Redis lost its
    data (``seq`` went back), the subscription follows the new sequence.

    Delivery is at least once: a publish retried after a lost reply can appear twice
    (two sequence numbers), so consumers key events by what they describe (round, phase).

    A subscription holds one pooled connection for its life: take one per process and fan
    out in memory to WebSocket clients, not one per client.

All keys of a feed must live on one node: with Redis Cluster give the channel a hash tag
(``RoundFeed(redis, channel="{rgs:rounds}")``). Redis errors become
:class:`~storage.errors.RedisUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, overload

import msgpack
import redis.asyncio
from redis.asyncio.client import PubSub

from storage.errors import RedisUnavailableError
from storage.redis_store import REDIS_ERRORS, LuaScript

__all__ = [
    "CHANNEL",
    "RECENT_MAX",
    "EventFormat",
    "RoundFeed",
    "Subscription",
    "decode_event",
    "encode_event",
]

log = logging.getLogger("rgs.feed")

CHANNEL = "rgs:rounds"
RECENT_MAX = 100

EventFormat = Literal["json", "msgpack"]

# Whatever a subscription treats as "the connection is gone, reconnect".
_LOST: tuple[type[BaseException], ...] = (RedisUnavailableError, *REDIS_ERRORS)

# KEYS: the sequence counter, the recent list; ARGV: the event's JSON, the list's length,
# the channel. The envelope is built here because the sequence number is only known here.
_PUBLISH = LuaScript(
    """
local seq = redis.call('INCR', KEYS[1])
local msg = '{"seq":' .. string.format('%d', seq) .. ',"event":' .. ARGV[1] .. '}'
redis.call('LPUSH', KEYS[2], msg)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PUBLISH', ARGV[3], msg)
return seq
"""
)


def _json(event: Mapping[str, Any]) -> str:
    # Compact, UTF-8 as is, and no NaN/Infinity: browsers' JSON.parse rejects them.
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@overload
def encode_event(event: Mapping[str, Any], fmt: Literal["json"] = "json") -> str: ...
@overload
def encode_event(event: Mapping[str, Any], fmt: Literal["msgpack"]) -> bytes: ...
def encode_event(event: Mapping[str, Any], fmt: EventFormat = "json") -> str | bytes:
    """An event as a WebSocket frame: JSON text, or msgpack bytes for binary frames."""
    if fmt == "json":
        return _json(event)
    if fmt == "msgpack":
        return bytes(msgpack.packb(dict(event), use_bin_type=True))
    raise ValueError(f"unknown event format {fmt!r}; use 'json' or 'msgpack'")


def decode_event(data: str | bytes, fmt: EventFormat = "json") -> dict[str, Any]:
    """The inverse of :func:`encode_event` (for clients and tests)."""
    if fmt == "json":
        value = json.loads(data)
    elif fmt == "msgpack":
        value = msgpack.unpackb(data if isinstance(data, bytes) else data.encode(), raw=False)
    else:
        raise ValueError(f"unknown event format {fmt!r}; use 'json' or 'msgpack'")
    if not isinstance(value, dict):
        raise ValueError(f"an event is a map, got {type(value).__name__}")
    return value


def _parse_envelope(raw: str | bytes) -> tuple[int, dict[str, Any]] | None:
    try:
        message = json.loads(raw)
        seq, event = message["seq"], message["event"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(seq, int) or not isinstance(event, dict):
        return None
    return seq, event


class RoundFeed:
    """Publish round events and read or follow them (see the module docstring)."""

    def __init__(
        self, redis: redis.asyncio.Redis, *, channel: str = CHANNEL, keep: int = RECENT_MAX
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.redis = redis
        self.channel = channel
        self.recent_key = f"{channel}:recent"
        self.seq_key = f"{channel}:seq"
        self.keep = keep

    async def publish(self, event: Mapping[str, Any]) -> int:
        """Publish one event (a JSON-able map); return its sequence number."""
        if not isinstance(event, Mapping):
            raise TypeError(f"an event is a map, got {type(event).__name__}")
        body = _json(event)
        try:
            seq = await _PUBLISH(
                self.redis, [self.seq_key, self.recent_key], [body, self.keep, self.channel]
            )
        except REDIS_ERRORS as exc:
            raise RedisUnavailableError(f"cannot publish on {self.channel}: {exc}") from exc
        return int(seq)

    async def recent(self, limit: int = RECENT_MAX) -> list[dict[str, Any]]:
        """The last ``limit`` events (at most ``keep``), oldest first."""
        return [event for _, event in await self._entries(limit)]

    def subscribe(self, *, backlog: int = 0) -> Subscription:
        """Follow the feed, starting with up to ``backlog`` recent events."""
        return Subscription(self, backlog=backlog)

    # -- used by Subscription -----------------------------------------------------------

    async def _entries(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        limit = min(limit, self.keep)
        if limit <= 0:
            return []
        try:
            raw = await self.redis.lrange(self.recent_key, 0, limit - 1)
        except REDIS_ERRORS as exc:
            raise RedisUnavailableError(f"cannot read {self.recent_key}: {exc}") from exc
        entries = [parsed for item in raw if (parsed := _parse_envelope(item)) is not None]
        entries.reverse()  # LPUSH keeps the newest first
        return entries

    async def _current_seq(self) -> int:
        try:
            value = await self.redis.get(self.seq_key)
        except REDIS_ERRORS as exc:
            raise RedisUnavailableError(f"cannot read {self.seq_key}: {exc}") from exc
        return int(value) if value is not None else 0


class Subscription:
    """One pub/sub subscription to a :class:`RoundFeed`; see the module docstring.

    ``__aenter__`` raises :class:`~storage.errors.RedisUnavailableError` if Redis cannot be
    reached at all (a start-up problem for the caller's supervisor to handle); losses after
    that are repaired here. :attr:`reconnects` and :attr:`lost` are for metrics.
    """

    def __init__(
        self,
        feed: RoundFeed,
        *,
        backlog: int = 0,
        poll_s: float = 1.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        confirm_timeout_s: float = 5.0,
    ) -> None:
        self._feed = feed
        self._backlog = backlog
        self._poll_s = poll_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._confirm_timeout_s = confirm_timeout_s
        self._pubsub: PubSub | None = None
        self._pending: deque[dict[str, Any]] = deque()
        self._last_seq = 0  # the newest sequence number yielded (or queued) or known lost
        self._entered = False
        self._closed = False
        self.reconnects = 0
        self.lost = 0

    @property
    def connected(self) -> bool:
        return self._pubsub is not None

    async def __aenter__(self) -> Subscription:
        if self._entered:
            raise RuntimeError("a Subscription can be entered once")
        self._entered = True
        try:
            # The counter is read *before* subscribing: what is published between the two
            # is newer than this baseline, so it shows up as a gap and is filled.
            base = await self._feed._current_seq()
            await self._open()
            backlog = await self._feed._entries(self._backlog)
        except _LOST as exc:
            await self._close_pubsub()
            self._closed = True
            if isinstance(exc, RedisUnavailableError):
                raise
            raise RedisUnavailableError(f"cannot subscribe to {self._feed.channel}: {exc}") from exc
        self._pending.extend(event for _, event in backlog)
        self._last_seq = max([base, *(seq for seq, _ in backlog)])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe and give the connection back; iteration then stops."""
        self._closed = True
        self._pending.clear()
        await self._close_pubsub()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._entered:
            raise RuntimeError("use `async with feed.subscribe() as events:` first")
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._pubsub is None:
                await self._reconnect()
                continue
            try:
                message = await self._pubsub.get_message(timeout=self._poll_s)
                if message is not None:
                    await self._handle(message)
            except _LOST as exc:
                log.warning("round feed: connection lost (%s); reconnecting", exc)
                await self._close_pubsub()

    # -- internals ----------------------------------------------------------------------

    async def _open(self) -> None:
        pubsub = self._feed.redis.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._feed.channel)
        # SUBSCRIBE is only sent above; once its confirmation is read, every later
        # publish reaches this connection.
        async with asyncio.timeout(self._confirm_timeout_s):
            while True:
                message = await pubsub.get_message(timeout=self._poll_s)
                if message is not None and message["type"] == "subscribe":
                    return

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(1.0):
                await pubsub.unsubscribe()
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.aclose()

    async def _reconnect(self) -> None:
        delay = self._backoff_initial_s
        while not self._closed:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if self._closed:
                return
            try:
                await self._open()
                await self._resync()
            except _LOST as exc:
                await self._close_pubsub()
                log.debug("round feed: reconnect failed (%s); next try in %.1fs", exc, delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            self.reconnects += 1
            log.info("round feed: reconnected to %s", self._feed.channel)
            return

    async def _resync(self) -> None:
        """After (re)subscribing: queue what was published while we were away."""
        current = await self._feed._current_seq()
        if current < self._last_seq:
            log.warning(
                "round feed: sequence went back from %d to %d (Redis lost its data); "
                "following the new sequence",
                self._last_seq,
                current,
            )
            self._last_seq = 0
        if current > self._last_seq:
            await self._fill(current)

    async def _fill(self, upto: int) -> None:
        """Queue the events after the last one yielded, up to ``upto``, from the list."""
        wanted = upto - self._last_seq
        missing = [
            (seq, event)
            for seq, event in await self._feed._entries(self._feed.keep)
            if self._last_seq < seq <= upto
        ]
        if len(missing) < wanted:
            self.lost += wanted - len(missing)
            log.warning(
                "round feed: %d events after #%d are gone from the recent list; not delivered",
                wanted - len(missing),
                self._last_seq,
            )
        self._pending.extend(event for _, event in missing)
        self._last_seq = upto

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            # redis-py reconnected and re-subscribed by itself (its retry policy): events
            # published meanwhile never reached us.
            await self._resync()
            self.reconnects += 1
            return
        if kind != "message":
            return
        parsed = _parse_envelope(message["data"])
        if parsed is None:
            log.warning("round feed: ignoring a malformed message on %s", self._feed.channel)
            return
        seq, event = parsed
        if seq <= self._last_seq:
            return  # already yielded, from the backlog or a gap fill
        if seq > self._last_seq + 1:
            await self._fill(seq - 1)
        self._pending.append(event)
        self._last_seq = seq
