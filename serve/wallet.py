"""The seamless-wallet gateway: one thin Serve deployment for every provider dialect.

``POST /wallet/{provider}/...`` is matched to the provider's ``ProviderAdapter`` actor by
its base path; the raw method, path, headers and body go to the adapter and its answer
comes back byte for byte. They travel over the adapter's own socket
(``actors.provider_adapter.AdapterLink``), not as Ray calls: concurrent requests in a
replica leave together in one frame per adapter.

What never reaches an adapter is answered here in the provider's own error shape where we
know the provider (body too large, wrong method), else as a small JSON 404.

Health: ``GET /wallet/health/live`` answers while the replica runs;
``GET /wallet/health/ready`` is 200 only while every provider's adapter, PostgreSQL and all
account shards answer (503 otherwise). Redis and the chain notary, when the deployment is
told about them, are reported too but only *degrade* readiness (200, status ``degraded``):
no wallet call uses either, so an outage there must not take the wallet out of service.

Every answered request counts in ``rgs_wallet_requests`` (dialect, HTTP status) and
``rgs_wallet_request_seconds`` (``actors.metrics``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from actors.errors import AdapterUnavailableError
from actors.metrics import record_wallet_request
from actors.provider_adapter import AdapterLink, adapter_name
from actors.shard import NAMESPACE, tune_interpreter
from core.dialects.base import WireRequest
from core.dialects.registry import dialect

__all__ = ["MAX_BODY_BYTES", "WALLET_DEPLOYMENT_OPTIONS", "WalletGateway", "openapi_document"]

MAX_BODY_BYTES = 64 * 1024
HEALTH_PATH = "/wallet/health"
_PROBE_TIMEOUT_S = 2.0


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
    def __init__(self, providers: dict[str, dict[str, str]], health: dict[str, Any] | None = None) -> None:
        """``providers``: base path (e.g. ``/wallet/hub88``) -> {provider_id, dialect}.

        ``health``: what readiness also reports on beyond the adapters, PostgreSQL and
        the shards: ``redis_url`` and ``notary`` (the chain notary's actor name).
        """
        tune_interpreter()
        self._providers = providers
        self._adapters: dict[str, Any] = {}
        self._links = {p["provider_id"]: AdapterLink(p["provider_id"]) for p in providers.values()}
        self._health = dict(health or {})
        self._redis: Any = None

    def _adapter(self, provider_id: str) -> Any:
        if provider_id not in self._adapters:
            self._adapters[provider_id] = ray.get_actor(adapter_name(provider_id), namespace=NAMESPACE)
        return self._adapters[provider_id]

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        if not path.startswith("/wallet"):
            path = "/wallet" + path  # the ASGI path may come without the route prefix
        if path.startswith(HEALTH_PATH + "/") and request.method == "GET":
            if path == HEALTH_PATH + "/live":
                return _json(200, {"status": "ok"})
            if path == HEALTH_PATH + "/ready":
                return await self._readiness()
        began = time.perf_counter()
        base = next((b for b in self._providers if path == b or path.startswith(b + "/")), None)
        dialect_name = self._providers[base]["dialect"] if base is not None else "none"
        status = 500
        try:
            response = await self._answer(request, path, base)
            status = response.status_code
            return response
        finally:
            record_wallet_request(dialect_name, status, time.perf_counter() - began)

    async def _answer(self, request: Request, path: str, base: str | None) -> Response:
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
            status, headers, answer = await self._links[provider["provider_id"]].call(raw)
        except AdapterUnavailableError:
            rejected = speaker.reject(WireRequest(*raw), "wallet unavailable")
            return Response(rejected.body, rejected.status, dict(rejected.headers))
        return Response(answer, status, headers)

    async def _readiness(self) -> Response:
        checks: dict[str, str] = {}
        critical: dict[str, str] = {}

        async def adapter(provider_id: str) -> None:
            try:
                answer = await asyncio.wait_for(
                    self._adapter(provider_id).health.remote(_PROBE_TIMEOUT_S), 2 * _PROBE_TIMEOUT_S
                )
            except Exception as exc:
                self._adapters.pop(provider_id, None)  # look the actor up again next time
                critical[f"provider:{provider_id}"] = _failure(exc)
                return
            critical[f"provider:{provider_id}"] = "ok"
            for name, outcome in answer.items():
                if critical.get(name, "ok") == "ok":  # keep the first failure seen
                    critical[name] = outcome

        probes: list[Awaitable[None]] = [adapter(p["provider_id"]) for p in self._providers.values()]
        if self._health.get("redis_url"):
            probes.append(_probe(checks, "redis", self._ping_redis()))
        if self._health.get("notary"):
            notary = self._health["notary"]
            probes.append(_probe(checks, "chain", _notary_info(notary)))
        await asyncio.gather(*probes)
        ready = all(v == "ok" for v in critical.values())
        degraded = any(v != "ok" for v in checks.values())
        status = "unavailable" if not ready else "degraded" if degraded else "ok"
        return _json(200 if ready else 503, {"status": status, "checks": {**critical, **checks}})

    async def _ping_redis(self) -> None:
        if self._redis is None:
            from storage.redis_store import connect_redis

            self._redis = await connect_redis(self._health["redis_url"], max_connections=2)
        await self._redis.ping()


async def _probe(checks: dict[str, str], name: str, check: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(check, _PROBE_TIMEOUT_S)
    except Exception as exc:
        checks[name] = _failure(exc)
        return
    checks[name] = "ok"


async def _notary_info(name: str) -> object:
    """The chain notary answers and reaches its chain (``info`` reads the chain id)."""
    return await ray.get_actor(name, namespace=NAMESPACE).info.remote()


def _failure(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}: {str(exc)[:160]}"


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
