"""``ProviderAdapter``: one Ray actor per integrated game provider.

It verifies the dialect's signature, maps the request to wallet intents, resolves the
player (session token and/or player id), runs the intents on the account shards through a
router (so concurrent callbacks share shard calls), records every callback for
reconciliation before answering, and renders the dialect's exact response. The Serve
deployment in front only moves bytes.

A callback of one intent is recorded by the shard, in the transaction that journals its
command (``core.wallet.CallbackNote``, migration 0012): one commit per request instead of
two. The adapter writes the record itself for everything else: refusals before the wallet
(signature, body, player), balance reads, calls of several intents, repeats answered from
a shard's memory and calls whose outcome is unknown.

Those bytes do not travel as Ray calls: a Ray actor call costs both sides about a
millisecond of CPU in Ray's own threads, which on a small node was most of a wallet
request's cost. The adapter listens on a socket of its own (``actors.framing``; its
address and token come from ``endpoint()``), and each Serve replica keeps an
``AdapterLink`` to it that sends the requests of one event-loop turn as one frame. Ray
still places, names and restarts the adapter; the link reconnects to the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

import ray

from actors.errors import AdapterUnavailableError
from actors.framing import (
    ConnectionLost,
    FrameConnection,
    encode_frame,
    open_frame_connection,
    read_frame,
)
from actors.router import ShardRouter
from actors.shard import NAMESPACE, shard_handles, tune_interpreter
from actors.wallet_flow import ResolvedPlayer, run_call
from core.dialects.base import ParsedCall, PlayerRef, ProviderSettings, WireRequest, WireResponse
from core.dialects.registry import dialect
from core.wallet import CallbackNote
from storage.callbacks import CallbackRecord, CallbackStore
from storage.database import create_pool
from storage.sessions import SessionInfo, SessionStore

__all__ = ["AdapterLink", "ProviderAdapter", "adapter_name"]

log = logging.getLogger("rgs.wallet")

# Raw request as it crosses the Serve → adapter hop: (method, path, headers, body, received_at)
RawRequest = tuple[str, str, dict[str, str], bytes, float]
RawResponse = tuple[int, dict[str, str], bytes]

_SESSION_CACHE_S = 2.0  # a revoked token may be honoured this long by a busy adapter
_MAX_REQUESTS_PER_FRAME = 64


async def _probe(check: Awaitable[object], timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check, timeout_s)
    except Exception as exc:
        return _failure(exc)
    return "ok"


def _failure(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}: {str(exc)[:160]}"


def adapter_name(provider_id: str) -> str:
    return f"provider-{provider_id}"


@ray.remote(max_restarts=-1, max_task_retries=0)
class ProviderAdapter:
    def __init__(
        self, settings: dict[str, Any], database_url: str, shards: int, partitions: int, shard_prefix: str
    ) -> None:
        tune_interpreter()
        self._settings = ProviderSettings(**settings)
        self._dialect = dialect(self._settings.dialect)
        self._database_url = database_url
        self._shard_args = (shards, partitions, shard_prefix)
        self._ready: asyncio.Future[None] | None = None
        self._sessions_cache: dict[str, tuple[float, SessionInfo | None]] = {}
        self._records: list[tuple[CallbackRecord, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._token = secrets.token_hex(16)
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        # where a request's time goes: before it reached us (Serve, the hop), with us
        self.timings = {"requests": 0, "arrival_seconds": 0.0, "handle_seconds": 0.0, "record_seconds": 0.0}

    async def _start(self) -> None:
        self._pool = pool = await create_pool(self._database_url, min_size=1, max_size=4)
        self._sessions = SessionStore(pool)
        self._callbacks = CallbackStore(pool)
        shards, partitions, prefix = self._shard_args
        # Many concurrent callbacks, each one command at a time: let a few shard requests
        # overlap instead of queueing every command behind the one in flight.
        self._router = ShardRouter(
            shard_handles(shards, partitions, prefix=prefix).handles, partitions, max_in_flight=4
        )
        self._recorder = asyncio.ensure_future(self._record_forever())
        host = ray.util.get_node_ip_address()
        self._server = await asyncio.start_server(self._serve_connection, host, 0)
        self._address = (host, int(self._server.sockets[0].getsockname()[1]))

    async def ready(self) -> str:
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._start())
        await asyncio.shield(self._ready)
        return self._settings.provider_id

    async def endpoint(self) -> dict[str, Any]:
        """Where this incarnation's data path listens: ``{"address": [host, port], "token"}``."""
        await self.ready()
        assert self._address is not None
        return {"address": list(self._address), "token": self._token}

    async def handle_many(self, requests: list[RawRequest]) -> list[RawResponse]:
        await self.ready()
        return list(await asyncio.gather(*(self._handle(r) for r in requests)))

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One replica's link: frames ``[request_id, [raw request, ...]]`` in, answers out."""
        replies: set[asyncio.Task[None]] = set()
        try:
            if await read_frame(reader) != self._token:
                return
            while True:
                request_id, raws = await read_frame(reader)
                requests = [_raw_request(r) for r in raws]
                reply = asyncio.ensure_future(self._reply(writer, request_id, requests))
                replies.add(reply)
                reply.add_done_callback(replies.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, TypeError):
            pass  # the link sees the connection drop; the provider retries its calls
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, request_id: int, requests: list[RawRequest]) -> None:
        answers = await self.handle_many(requests)
        if not writer.is_closing():
            writer.write(encode_frame([request_id, [list(a) for a in answers]]))

    async def stats(self) -> dict[str, float]:
        return dict(self.timings)

    async def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """What this adapter needs to answer a call: ``{"postgres": ..., "shards": ...}``,
        each ``"ok"`` or ``"failed: why"``. PostgreSQL holds sessions and the callback
        record; every shard owning partitions must answer, since any player may live on any."""
        try:
            await asyncio.wait_for(self.ready(), timeout_s)
        except Exception as exc:
            failure = _failure(exc)
            return {"postgres": failure, "shards": failure}
        shards, partitions, prefix = self._shard_args

        async def every_shard() -> None:
            # Every shard the stored layout names must answer (a live rebalance may have
            # changed the set since we were configured); without a layout, the first ``shards``.
            live = shard_handles(shards, partitions, prefix=prefix).handles
            owners = {f"{prefix}{i}" for i in range(shards)}
            layout = await live[0].routing.remote()
            if layout:
                owners = set(layout["owners"])
            await asyncio.gather(*(ray.get_actor(n, namespace=NAMESPACE).stats.remote() for n in sorted(owners)))

        postgres, every = await asyncio.gather(
            _probe(self._pool.fetchval("SELECT 1"), timeout_s), _probe(every_shard(), timeout_s)
        )
        return {"postgres": postgres, "shards": every}

    async def _handle(self, raw: RawRequest) -> RawResponse:
        method, path, headers, body, received_at = raw
        began = time.time()
        self.timings["requests"] += 1
        self.timings["arrival_seconds"] += max(0.0, began - received_at)
        request = WireRequest(method, path, headers, body, received_at)
        digest = hashlib.sha256(body).digest()  # the callback's record, whoever writes it
        parsed: ParsedCall | None = None
        audited = False  # the shard wrote this callback's record with its command
        try:
            response = self._dialect.authenticate(request, self._settings)
            if response is None:
                parsed_or_error = self._dialect.parse(request, self._settings)
                if isinstance(parsed_or_error, WireResponse):
                    response = parsed_or_error
                else:
                    parsed = parsed_or_error
                    note = CallbackNote(self._settings.provider_id, path, parsed.request_id, digest)
                    outcome = await run_call(
                        parsed, resolve=self._resolve, execute=self._router.execute_many, callback=note
                    )
                    response = self._dialect.render(parsed, outcome)
                    if outcome.error == "unavailable":
                        log.warning("provider %s: wallet unavailable for %s", self._settings.provider_id, path)
                    audited = len(outcome.results) == 1 and outcome.results[0].audited
        except Exception:
            log.exception("provider %s: %s %s failed", self._settings.provider_id, method, path)
            response = self._dialect.reject(request, "internal error")
        handled = time.time()
        if not audited:
            await self._record(request, digest, parsed, response)
        self.timings["handle_seconds"] += handled - began
        self.timings["record_seconds"] += time.time() - handled
        return response.status, dict(response.headers), response.body

    async def _resolve(self, ref: PlayerRef) -> ResolvedPlayer | str:
        operator_id = self._settings.operator_id
        if ref.token is None:
            return ResolvedPlayer(operator_id, ref.player_id) if ref.player_id else "unknown_player"
        session = await self._session(ref.token)
        if session is None or session.operator_id != operator_id or (
            session.provider_id not in (None, self._settings.provider_id)
        ):
            if not ref.token_must_be_valid and ref.player_id:
                return ResolvedPlayer(operator_id, ref.player_id)
            return "invalid_token"
        if ref.player_id is not None and ref.player_id != session.player_id:
            return "invalid_token"
        if not session.valid and ref.token_must_be_valid:
            return "expired_token"
        return ResolvedPlayer(operator_id, session.player_id)

    async def _session(self, token: str) -> SessionInfo | None:
        now = time.monotonic()
        cached = self._sessions_cache.get(token)
        if cached is not None and now - cached[0] < _SESSION_CACHE_S:
            return cached[1]
        session = await self._sessions.resolve(token)
        if len(self._sessions_cache) > 100_000:
            self._sessions_cache.clear()
        self._sessions_cache[token] = (now, session)
        return session

    # -- recording: every callback is journaled before its answer leaves -----------------

    async def _record(
        self, request: WireRequest, digest: bytes, parsed: ParsedCall | None, response: WireResponse
    ) -> None:
        try:
            answer: Any = response.json()
        except ValueError:
            answer = {"raw": response.body.decode(errors="replace")}
        code = str(answer.get("status") or answer.get("code") or response.status) if isinstance(answer, dict) else str(response.status)
        record = CallbackRecord(
            provider_id=self._settings.provider_id,
            endpoint=request.path,
            request_id=parsed.request_id if parsed else None,
            # the wallet keys the request's intents ran under: reconciliation joins on them
            transaction_ids=tuple(i.key for i in parsed.intents if i.key) if parsed else (),
            reference_id=next((i.reference for i in parsed.intents if i.reference), None) if parsed else None,
            player_id=parsed.player.player_id if parsed else None,
            round_ref=parsed.round_ref if parsed else None,
            body_sha256=digest,
            result_code=code,
            response=answer,
        )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._records.append((record, future))
        self._wake.set()
        try:
            await future
        except Exception:
            # The money moved (or did not) already; losing the audit row must not turn a
            # correct answer into an error. The ledger stays the source of truth.
            log.exception("provider %s: callback not recorded", self._settings.provider_id)

    async def _record_forever(self) -> None:
        # Up to three inserts overlap (the pool has four connections): a request's answer
        # waits for its record, so one slow commit must not hold every later one back.
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._records:
                if len(in_flight) >= 3:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch, self._records = self._records[:1000], self._records[1000:]
                task = asyncio.ensure_future(self._write(batch))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

    async def _write(self, batch: list[tuple[CallbackRecord, asyncio.Future[None]]]) -> None:
        try:
            await self._callbacks.record([r for r, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)




def _raw_request(wire: Any) -> RawRequest:
    method, path, headers, body, received_at = wire
    if not (isinstance(method, str) and isinstance(path, str) and isinstance(headers, dict)
            and isinstance(body, bytes) and isinstance(received_at, (int, float))):
        raise TypeError("malformed request frame")
    return method, path, headers, body, float(received_at)


class AdapterLink:
    """A Serve replica's data path to one provider's adapter.

    Requests that arrive in one turn of the replica's event loop leave together in one
    frame (a busy replica coalesces without waiting on a timer; an idle one sends at
    once). When the connection breaks, the requests on it fail with
    ``AdapterUnavailableError`` (their outcome is unknown: the provider's retry, under the
    same transaction ids, is answered from the stored result) and the next request
    reconnects to wherever Ray has the adapter now.
    """

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        self._connection: FrameConnection | None = None
        self._connecting: asyncio.Future[FrameConnection] | None = None
        self._queue: list[tuple[list[Any], asyncio.Future[RawResponse]]] = []
        self._flush_scheduled = False
        self._sends: set[asyncio.Task[None]] = set()

    async def call(self, raw: RawRequest) -> RawResponse:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RawResponse] = loop.create_future()
        self._queue.append((list(raw), future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue:
            batch, self._queue = self._queue[:_MAX_REQUESTS_PER_FRAME], self._queue[_MAX_REQUESTS_PER_FRAME:]
            task = asyncio.ensure_future(self._send(batch))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[list[Any], asyncio.Future[RawResponse]]]) -> None:
        try:
            connection = await self._connect()
            answers = await connection.request([raw for raw, _ in batch])
            responses = [(int(status), dict(headers), bytes(body)) for status, headers, body in answers]
            if len(responses) != len(batch):
                raise ConnectionLost(f"adapter answered {len(responses)} of {len(batch)} requests")
        except (ConnectionLost, OSError, ValueError, TypeError, ray.exceptions.RayError) as exc:
            self.close()
            failure = AdapterUnavailableError(f"adapter of {self.provider_id} unreachable: {type(exc).__name__}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        for (_, future), response in zip(batch, responses, strict=True):
            if not future.done():
                future.set_result(response)

    async def _connect(self) -> FrameConnection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    async def _open(self) -> FrameConnection:
        adapter = ray.get_actor(adapter_name(self.provider_id), namespace=NAMESPACE)
        info = await adapter.endpoint.remote()
        self._connection = await open_frame_connection(info["address"], info["token"], peer=f"adapter {self.provider_id}")
        return self._connection
