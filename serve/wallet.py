"""The seamless-wallet gateway: one thin Serve deployment for every provider dialect.

``POST /wallet/{provider}/...`` is matched to the provider's ``ProviderAdapter`` actor by
its base path; the raw method, path, headers and body go to the adapter and its answer
comes back byte for byte. Concurrent requests in a replica are batched (``serve.batch``)
into one actor call per adapter, so the Serve → adapter hop is not one Ray call each.

What never reaches an adapter is answered here in the provider's own error shape where we
know the provider (body too large, wrong method), else as a small JSON 404.
"""

from __future__ import annotations

import json
import time
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from actors.provider_adapter import adapter_name
from actors.shard import NAMESPACE, tune_interpreter
from core.dialects.base import WireRequest
from core.dialects.registry import dialect

__all__ = ["MAX_BODY_BYTES", "WALLET_DEPLOYMENT_OPTIONS", "WalletGateway", "openapi_document"]

MAX_BODY_BYTES = 64 * 1024


def openapi_document(provider_id: str, dialect_name: str, base_path: str) -> dict[str, Any]:
    """A minimal OpenAPI 3.1 description of one provider's wallet routes."""
    module = __import__(f"core.dialects.{dialect_name}", fromlist=["ENDPOINTS"])
    endpoints = sorted(getattr(module, "ENDPOINTS", ()))
    operation = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": f"{dialect_name} wallet answer"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"ray-rgs seamless wallet: {provider_id} ({dialect_name})", "version": "1"},
        "paths": {f"{base_path}{p}": {"post": {**operation, "operationId": p.strip("/").replace("/", "_")}} for p in endpoints},
    }


# Measured: Serve's defaults collapse under 64 clients; explicit, bounded queues turn
# overload into a fast 503 the provider retries, instead of a latency cliff.
WALLET_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 256,
    "max_queued_requests": 1024,
    "graceful_shutdown_timeout_s": 20,
    # A replica is mostly waiting on actors and sockets: reserving a whole CPU each would
    # leave a 2-core node unable to place the wallet, the operator API and the echo.
    "ray_actor_options": {"num_cpus": 0.25},
}


@serve.deployment(**WALLET_DEPLOYMENT_OPTIONS)
class WalletGateway:
    def __init__(self, providers: dict[str, dict[str, str]]) -> None:
        """``providers``: base path (e.g. ``/wallet/hub88``) -> {provider_id, dialect}."""
        tune_interpreter()
        self._providers = providers
        self._adapters: dict[str, Any] = {}

    def _adapter(self, provider_id: str) -> Any:
        if provider_id not in self._adapters:
            self._adapters[provider_id] = ray.get_actor(adapter_name(provider_id), namespace=NAMESPACE)
        return self._adapters[provider_id]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0005, max_concurrent_batches=32)
    async def _dispatch(self, items: list[tuple[str, tuple[str, str, dict[str, str], bytes, float]]]) -> list[Any]:
        by_provider: dict[str, list[int]] = {}
        for index, (provider_id, _) in enumerate(items):
            by_provider.setdefault(provider_id, []).append(index)
        answers: list[Any] = [None] * len(items)
        refs = {
            provider_id: self._adapter(provider_id).handle_many.remote([items[i][1] for i in indexes])
            for provider_id, indexes in by_provider.items()
        }
        for provider_id, ref in refs.items():
            for index, answer in zip(by_provider[provider_id], await ref, strict=True):
                answers[index] = answer
        return answers

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        if not path.startswith("/wallet"):
            path = "/wallet" + path  # the ASGI path may come without the route prefix
        base = next((b for b in self._providers if path == b or path.startswith(b + "/")), None)
        if base is None:
            return _json(404, {"error": "not_found", "message": f"no wallet route {path}"})
        provider = self._providers[base]
        sub_path = path[len(base):] or "/"
        received_at = time.time()
        if sub_path == "/openapi.json" and request.method == "GET":
            return _json(200, openapi_document(provider["provider_id"], provider["dialect"], base))
        wire_headers = {k.lower(): v for k, v in request.headers.items()}
        body = await _read_limited(request)
        speaker = dialect(provider["dialect"])
        if body is None:
            rejected = speaker.reject(WireRequest(request.method, sub_path, wire_headers, b"", received_at), "body too large")
            return Response(rejected.body, rejected.status, dict(rejected.headers))
        raw = (request.method.upper(), sub_path, wire_headers, body, received_at)
        try:
            status, headers, answer = await self._dispatch((provider["provider_id"], raw))
        except (ray.exceptions.RayError, TimeoutError):
            rejected = speaker.reject(WireRequest(*raw), "wallet unavailable")
            return Response(rejected.body, rejected.status, dict(rejected.headers))
        return Response(answer, status, headers)


async def _read_limited(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload).encode(), status, {"content-type": "application/json"})
