"""ShardRouter against a stand-in shard: a real framed TCP server, no Ray."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.framing import encode_frame, read_frame
from actors.router import ShardRouter
from core.wallet import Command, CommandKind, Result, ResultCode


class _FakeShard:
    """Answers every command OK after a delay; its ``ready`` is slow, as a starting shard's is."""

    def __init__(self) -> None:
        self.connections = 0
        self.frames: list[int] = []  # commands per request received
        self.server: asyncio.AbstractServer | None = None
        self.ready = self

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    def remote(self) -> Any:
        return self._ready()

    async def _ready(self) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # long enough for every sender to wait on one attempt
        assert self.server is not None
        return {"address": self.server.sockets[0].getsockname()[:2], "token": "t"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await read_frame(reader)  # the token
        while True:
            try:
                request_id, wires = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return
            self.frames.append(len(wires))
            await asyncio.sleep(0.01)
            answers = [Result(ResultCode.OK, 1, "EUR", tx_id=1).to_wire() for _ in wires]
            writer.write(encode_frame([request_id, answers]))


def _bet(n: int) -> Command:
    return Command(CommandKind.BET, "op", "p1", "EUR", f"k{n}", 1)


async def test_concurrent_senders_share_one_connection_attempt() -> None:
    shard = _FakeShard()
    await shard.start()
    router = ShardRouter([shard], 16, max_batch=1, max_in_flight=4, retry_for_s=0.5)
    try:
        # Four requests leave at once and all find the lane unconnected: the three that
        # wait on the first attempt must not trip over each other clearing it.
        results = await router.execute_many([_bet(n) for n in range(4)])
        assert [r.code for r in results] == [ResultCode.OK] * 4
        assert shard.connections == 1
        assert router.retries == 0
    finally:
        router.close()
        assert shard.server is not None
        shard.server.close()


async def test_callers_of_one_event_loop_turn_share_one_request() -> None:
    shard = _FakeShard()
    await shard.start()
    router = ShardRouter([shard], 16, max_in_flight=4, retry_for_s=0.5)
    try:
        await router.execute(_bet(0))  # connected
        # Twenty callers, each with one command, all in one turn (as an adapter handling
        # a frame of requests is): one request, though three more were allowed in flight.
        results = await asyncio.gather(*(router.execute(_bet(n)) for n in range(1, 21)))
        assert [r.code for r in results] == [ResultCode.OK] * 20
        assert shard.frames == [1, 20]
    finally:
        router.close()
        assert shard.server is not None
        shard.server.close()
