"""A trivial Serve deployment configured like the wallet gateway: the HTTP ceiling that
``rgs bench wallet`` measures the wallet against in the same run."""

from __future__ import annotations

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from actors.shard import tune_interpreter
from serve.wallet import WALLET_DEPLOYMENT_OPTIONS

__all__ = ["EchoGateway"]


@serve.deployment(**WALLET_DEPLOYMENT_OPTIONS)
class EchoGateway:
    def __init__(self) -> None:
        tune_interpreter()

    async def __call__(self, request: Request) -> Response:
        return Response(await request.body(), 200, {"content-type": "application/json"})
