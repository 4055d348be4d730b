"""A small client for the operator API: token, signed requests, the round feed.

Used by the end-to-end test and ``rgs bench operator``, and a reference for integrators:
it shows exactly what is signed (``timestamp.METHOD.path_with_query.raw_body``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["OperatorClient", "sign"]


def sign(secret: str, timestamp: str, method: str, path_with_query: str, body: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path_with_query}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class OperatorClient:
    def __init__(self, api_base_url: str, client_id: str, client_secret: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base = api_base_url.rstrip("/")
        self.prefix = urlsplit(self.base).path  # e.g. /api: part of the signed path
        self.client_id = client_id
        self.client_secret = client_secret
        self._session = session
        self._owned = session is None
        self.token: str | None = None

    async def __aenter__(self) -> OperatorClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use 'async with OperatorClient(...)'"
        return self._session

    async def authenticate(self) -> dict[str, Any]:
        status, body, _ = await self.raw(
            "POST", "/oauth/token",
            {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
            signed=False,
        )
        if status != 200:
            raise RuntimeError(f"token request failed: {status} {body}")
        self.token = body["access_token"]
        return body

    def headers(self, method: str, path_with_query: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "authorization": f"Bearer {self.token}",
            "x-timestamp": ts,
            "x-signature": sign(self.client_secret, ts, method, self.prefix + path_with_query, body),
        }

    async def raw(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        signed: bool = True,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        refresh: bool = True,
    ) -> tuple[int, Any, dict[str, str]]:
        """One request; signed unless ``signed=False``, with a fresh Idempotency-Key for a
        POST unless one is given. A signed request refused because the token expired is
        sent once more with a new token (``refresh=False``: not), under the same key: the
        refusal happened before the key was looked at."""
        data = body if body is not None else (b"" if payload is None else json.dumps(payload).encode())
        key = idempotency_key or uuid.uuid4().hex
        own_token = signed and not any(k.lower() == "authorization" for k in (headers or {}))
        for attempt in range(2):
            sent = {"content-type": "application/json"}
            if signed:
                sent.update(self.headers(method, path, data))
            if method == "POST" and signed:
                sent["idempotency-key"] = key
            sent.update(headers or {})
            async with self.session.request(method, self.base + path, data=data if method != "GET" else None,
                                            headers=sent) as response:
                text = await response.read()
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = text.decode("utf-8", "replace")
                status, answered = response.status, {k.lower(): v for k, v in response.headers.items()}
            expired = status == 401 and isinstance(parsed, dict) and parsed.get("code") == "expired_token"
            if attempt == 0 and expired and refresh and own_token and self.token is not None:
                await self.authenticate()
                continue
            break
        return status, parsed, answered

    async def call(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.raw(method, path, payload, **kwargs)
        return status, body

    def feed_url(self, fmt: str = "json") -> tuple[str, dict[str, str]]:
        """The WebSocket URL of the round feed and the headers of its upgrade request.

        Besides the signature: ``X-Request-Timeout-Seconds: 0`` exempts this long-lived
        connection from Serve's per-request timeout (10 s here), which otherwise ends it.
        """
        path = f"/ws/rounds?format={fmt}"
        url = self.base.replace("http://", "ws://").replace("https://", "wss://") + path
        return url, {**self.headers("GET", path, b""), "x-request-timeout-seconds": "0"}
