"""The operator API: how betting companies integrate (Ray Serve deployment ``OperatorApi``).

Mounted under ``/api``. Every call but ``POST /api/oauth/token``, the health checks and
the OpenAPI document is authenticated three ways at once: a bearer JWT from the token
endpoint, ``X-Timestamp`` within two minutes, and ``X-Signature`` = hex HMAC-SHA256 of the
operator's secret over ``timestamp.METHOD.path_with_query.raw_body``. Then, in order:
per-IP and per-operator rate limits (Redis, shared by every replica), the operator's IP
allow-list, the body's schema, and for every ``POST`` its ``Idempotency-Key``.

The raw body is read before anything is parsed, because the signature covers the bytes
as sent; bodies are parsed only after authentication, so an unauthenticated caller learns
nothing about our schema. Every error has one shape::

    {"status": "error", "code": "...", "message": "...", "timestamp": ..., "requestId": "..."}

Money moves only through the account shards (``actors.router``) and the tables' round
schedulers; this deployment holds no state of its own beyond caches.
"""

# No ``from __future__ import annotations`` here: Serve's class-based ingress rebuilds the
# methods' signatures, and FastAPI must be able to see ``Request`` as a class, not a string.
import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, replace
from datetime import timedelta
from fractions import Fraction
from typing import Any

import ray
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.metrics import record_rate_limited
from actors.round_scheduler import scheduler_name
from actors.router import ShardRouter
from actors.shard import NAMESPACE, shard_handles, tune_interpreter
from core.errors import AuthError, RgsError
from core.keno import parse_paytables
from core.operator_auth import (
    DEFAULT_RATE_LIMITS,
    PURPOSE_CREDENTIALS,
    PURPOSE_TOKENS,
    CredentialVault,
    TokenIssuer,
    check_ip,
    check_signature,
    derive_key,
    parse_bearer,
    request_fingerprint,
    verify_client_secret,
)
from core.risk import volume_anomaly
from core.seeds import parse_key
from core.tables import TableConfig
from core.wallet import AccountStatus, Command, CommandKind, Result, ResultCode
from serve.operator_models import (
    BetRequest,
    PlayerRequest,
    RollbackRequest,
    SessionRequest,
    TokenRequest,
    TransferRequest,
    describe_validation_error,
)
from storage.feed import RoundFeed, encode_event
from storage.operators import BeginOutcome, OperatorCredentials, OperatorStore, utc_day_start
from storage.ratelimit import RateLimiter
from storage.redis_store import connect_redis
from storage.rounds import RoundStore
from storage.sessions import SessionStore

__all__ = ["OPERATOR_DEPLOYMENT_OPTIONS", "ApiError", "OperatorApi", "app"]

log = logging.getLogger("rgs.api")

MAX_BODY_BYTES = 64 * 1024
# Stored as ``api:KEY`` on the ledger, whose keys hold at most 128 characters.
MAX_IDEMPOTENCY_KEY = 120
_PRINTABLE_KEY = re.compile(r"[\x21-\x7e]+")
_DECIMAL = re.compile(r"[0-9]{1,20}")
_CREDENTIALS_TTL_S = 5.0

OPERATOR_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 128,
    "max_queued_requests": 512,
    "graceful_shutdown_timeout_s": 20,
    # A replica is mostly waiting on actors and sockets: reserving a whole CPU each would
    # leave a 2-core node unable to place the wallet, the operator API and the echo.
    "ray_actor_options": {"num_cpus": 0.25},
}

app = FastAPI(
    title="ray-rgs operator API",
    version="1",
    description="Keno for B2B operators: players, wallet transfers, bets, rounds, results, recall.",
    openapi_url="/openapi.json",
    docs_url=None,
    redoc_url=None,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def _request_id(request: Request | WebSocket) -> str:
    """The id of this request: the one Serve's proxy gave it (HAProxy sets ``X-Request-Id``
    when the client did not, and Serve answers with it, overwriting ours), so the
    ``requestId`` of a body is the header the client sees; a fresh one without it."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message, "timestamp": int(time.time()), "requestId": request_id}


def _error(exc: ApiError, request_id: str) -> JSONResponse:
    return JSONResponse(_error_body(exc.code, exc.message, request_id), exc.status, headers={**exc.headers, "X-Request-Id": request_id})


@app.exception_handler(RequestValidationError)
async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
    return _error(ApiError(400, "invalid_request", problems), _request_id(request))


@app.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(ApiError(exc.status_code, code, str(exc.detail)), _request_id(request))


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("operator API: unexpected error on %s %s", request.method, request.url.path)
    return _error(ApiError(500, "internal_error", "internal error; retry with the same Idempotency-Key"), _request_id(request))


# Wallet result codes as API errors: (HTTP status, code).
_WALLET_ERRORS: dict[ResultCode, tuple[int, str]] = {
    ResultCode.INSUFFICIENT_FUNDS: (422, "insufficient_funds"),
    ResultCode.DUPLICATE_MISMATCH: (409, "idempotency_key_reused"),
    ResultCode.UNKNOWN_REFERENCE: (404, "unknown_reference"),
    ResultCode.ALREADY_RESOLVED: (409, "already_resolved"),
    ResultCode.ROLLED_BACK: (409, "rolled_back"),
    ResultCode.ACCOUNT_LOCKED: (403, "player_suspended"),
    ResultCode.CURRENCY_MISMATCH: (422, "currency_mismatch"),
    ResultCode.LIMIT_EXCEEDED: (422, "limit_exceeded"),
    ResultCode.UNKNOWN_ACCOUNT: (404, "unknown_player"),
    ResultCode.BUSY: (503, "busy"),
    ResultCode.UNAVAILABLE: (503, "unavailable"),
}

# Ticket refusals from a round scheduler: (HTTP status, code).
_BET_ERRORS: dict[str, int] = {
    "bad_picks": 400, "bad_stake": 400, "spots_not_offered": 400, "stake_too_low": 400, "stake_too_high": 400,
    "currency_not_offered": 400, "bad_request": 400, "no_open_round": 409, "round_closed": 409,
    "table_disabled": 409, "unknown_ticket": 404, "not_placed": 409, "unavailable": 503,
}


@dataclass(frozen=True)
class Caller:
    operator_id: str
    credentials: OperatorCredentials
    request_id: str
    idempotency_key: str | None = None  # set for POSTs: inner keys derive from it


class _Backend:
    """What a replica talks to, made once per replica on first use."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        master = parse_key(settings["seed_key_hex"])
        self.vault = CredentialVault(derive_key(master, PURPOSE_CREDENTIALS))
        self.tokens = TokenIssuer(derive_key(master, PURPOSE_TOKENS), ttl_s=int(settings.get("token_ttl_s", 900)))
        self.tables = {t["table_id"]: TableConfig.from_mapping(t) for t in settings["tables"]}
        self.paytables = {name: parse_paytables(doc, name=name)[0] for name, doc in settings["paytables"].items()}
        self.ip_limit_per_min = int(settings.get("ip_limit_per_min", 120_000))
        self.trust_forwarded_for = bool(settings.get("trust_forwarded_for", False))
        self._credentials: dict[str, tuple[float, OperatorCredentials | None]] = {}
        self._history: dict[tuple[str, str, str, int], list[int]] = {}

    async def start(self) -> None:
        self.operators = await OperatorStore.connect(self.settings["database_url"])
        self.rounds = await RoundStore.connect(self.settings["database_url"])
        self.sessions = SessionStore(self.rounds._pool)
        shards = shard_handles(self.settings["shards"], self.settings["partitions"], prefix=self.settings["shard_prefix"])
        self.router = ShardRouter(shards.handles, self.settings["partitions"], max_in_flight=4)
        self.redis = await connect_redis(self.settings["redis_url"])
        self.limiter = RateLimiter(self.redis)
        self.feed = RoundFeed(self.redis)
        self.fanout = _Fanout(self.feed)

    async def credentials(self, operator_id: str) -> OperatorCredentials | None:
        now = time.monotonic()
        cached = self._credentials.get(operator_id)
        if cached is not None and now - cached[0] < _CREDENTIALS_TTL_S:
            return cached[1]
        found = await self.operators.credentials(operator_id, self.vault)
        self._credentials[operator_id] = (now, found)
        return found

    async def execute(self, command: Command) -> Result:
        return (await self.router.execute_many([command]))[0]

    def scheduler(self, table_id: str) -> Any:
        try:
            return ray.get_actor(scheduler_name(table_id), namespace=NAMESPACE)
        except ValueError as exc:
            raise ApiError(503, "table_unavailable", f"table {table_id} is not running right now") from exc

    async def history(self, operator_id: str, player_id: str, currency: str) -> list[int]:
        day = int(utc_day_start().timestamp())
        key = (operator_id, player_id, currency, day)
        if key not in self._history:
            if len(self._history) > 100_000:
                self._history.clear()
            volumes = await self.operators.daily_volumes(operator_id, player_id, currency, days=31)
            self._history[key] = volumes[:-1]  # the days before today
        return self._history[key]


class _Fanout:
    """One Redis subscription per replica, fanned out to its WebSocket clients."""

    def __init__(self, feed: RoundFeed) -> None:
        self._feed = feed
        self._clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None

    def join(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._pump())
        return queue

    def leave(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._clients.discard(queue)

    async def _pump(self) -> None:
        async with self._feed.subscribe() as events:
            async for event in events:
                for queue in list(self._clients):
                    if queue.full():  # a client too slow to keep up is dropped, not waited for
                        self._clients.discard(queue)
                        continue
                    queue.put_nowait(event)


def _path_with_query(scope: MutableMapping[str, Any]) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return raw.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")


def _client_ip(request: Request | WebSocket, trust_forwarded_for: bool) -> str:
    """The client's address: the peer's, or behind a trusted proxy the one that proxy saw.

    The proxy appends the address it saw to ``X-Forwarded-For``; whatever is before it
    the client wrote itself. So it is the last entry that counts: the first one would let
    a client pick its own address, escaping its per-IP limit or entering an operator's
    IP allow-list from anywhere.
    """
    forwarded = request.headers.get("x-forwarded-for") if trust_forwarded_for else None
    if forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.client.host if request.client else "unknown"


def _json_response(status: int, payload: Any, request_id: str, extra: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return Response(body, status, {"content-type": "application/json", "X-Request-Id": request_id, **(extra or {})})


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", describe_validation_error(exc)) from exc


def _command(kind: CommandKind, operator_id: str, player_id: str, currency: str, **fields: Any) -> Command:
    """A wallet command from client input: what the wallet protocol refuses (an unknown
    currency, an over-long id) is the client's mistake, a 400, not an outage."""
    try:
        return Command(kind, operator_id, player_id, currency, **fields)
    except RgsError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc


def _wallet_error(result: Result) -> ApiError:
    status, code = _WALLET_ERRORS.get(result.code, (500, result.code.value))
    return ApiError(status, code, result.message or code.replace("_", " "))


def _query(request: Request, name: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = request.query_params.get(name, default)
    if required and not value:
        raise ApiError(400, "invalid_request", f"query parameter {name} is required")
    if value is not None and len(value) > 128:
        raise ApiError(400, "invalid_request", f"query parameter {name} is too long")
    return value


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only, and few of them: str.isdigit() also takes "²" (which int() refuses)
    # and any number of digits (which int() refuses past 4300): both were a 500.
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_request", f"query parameter {name} must be an integer in {low}..{high}")
    return int(raw)


def _ticket_view(ticket: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ticket.items() if k not in ("bet_tx", "win_tx")}


async def _notary_info(name: str) -> Any:
    """The chain notary answers and reaches its chain (``info`` reads the chain id)."""
    return await ray.get_actor(name, namespace=NAMESPACE).info.remote()


def _limit_scope(key: str | None) -> str:
    """The kind of limit a refused check key belongs to (a metric label: never the key)."""
    return "ip" if key is not None and key.startswith("ip:") else "operator"


# Everything the deployment uses is defined above it: Serve's ingress wrapper is shipped to
# replicas by value and sees the module only as it was when the class was decorated.
def _rtp_text(value: Fraction) -> str:
    return f"{float(value * 100):.4f}"


@serve.deployment(**OPERATOR_DEPLOYMENT_OPTIONS)
@serve.ingress(app)
class OperatorApi:
    def __init__(self, settings: dict[str, Any]) -> None:
        tune_interpreter()
        self._backend = _Backend(settings)
        self._ready: asyncio.Future[None] | None = None
        self.rate_limited = 0

    async def _b(self) -> _Backend:
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._backend.start())
        await asyncio.shield(self._ready)
        return self._backend

    # -- the pipeline every authenticated call goes through ----------------------------

    async def _handle(
        self,
        request: Request,
        work: Callable[[_Backend, Caller, bytes], Awaitable[tuple[int, Any]]],
        *,
        idempotent_post: bool = False,
    ) -> Response:
        request_id = _request_id(request)
        try:
            backend = await self._b()
            body = await _read_body(request)
            caller = await self._authenticate(backend, request, body, request_id)
            if not idempotent_post:
                status, payload = await work(backend, caller, body)
                return _json_response(status, payload, request_id)
            return await self._idempotent(backend, caller, request, body, work)
        except ApiError as exc:
            return _error(exc, request_id)
        except AuthError as exc:
            return _error(ApiError(exc.http_status, exc.code, str(exc)), request_id)
        except RgsError as exc:
            log.warning("operator API: %s on %s", exc, request.url.path)
            return _error(ApiError(503, "unavailable", f"service unavailable, retry: {exc}"), request_id)

    async def _limit(self, backend: _Backend, checks: list[tuple[str, int, int]]) -> None:
        decision = await backend.limiter.hit_many(checks)
        if not decision.allowed:
            self.rate_limited += 1
            record_rate_limited(_limit_scope(decision.limited_by))
            raise ApiError(
                429, "rate_limited", f"too many requests ({decision.limited_by}); retry after {decision.retry_after_s} s",
                {"Retry-After": str(decision.retry_after_s)},
            )

    async def _authenticate(self, backend: _Backend, request: Request | WebSocket, body: bytes, request_id: str) -> Caller:
        ip = _client_ip(request, backend.trust_forwarded_for)
        await self._limit(backend, [(f"ip:{ip}", backend.ip_limit_per_min, 60)])
        token = parse_bearer(request.headers.get("authorization"))
        claims = backend.tokens.verify(token, now=time.time())
        credentials = await backend.credentials(claims.operator_id)
        if credentials is None or not credentials.enabled:
            raise ApiError(401, "invalid_token", "the token's operator is unknown or disabled")
        check_ip(ip, credentials.ip_allow_list)
        method = "GET" if isinstance(request, WebSocket) else request.method
        check_signature(
            credentials.secret, request.headers.get("x-timestamp"), method, _path_with_query(request.scope), body,
            request.headers.get("x-signature"), now=time.time(),
        )
        limit = credentials.effective_rate_limit(DEFAULT_RATE_LIMITS)
        await self._limit(backend, [(f"op:{credentials.operator_id}", limit, 60)])
        return Caller(credentials.operator_id, credentials, request_id)

    async def _idempotent(
        self, backend: _Backend, caller: Caller, request: Request, body: bytes,
        work: Callable[[_Backend, Caller, bytes], Awaitable[tuple[int, Any]]],
    ) -> Response:
        key = request.headers.get("idempotency-key")
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not _PRINTABLE_KEY.fullmatch(key):
            raise ApiError(
                400, "missing_idempotency_key",
                f"every POST needs an Idempotency-Key header of 1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            )
        fingerprint = request_fingerprint(request.method, _path_with_query(request.scope), body)
        begun = await backend.operators.begin_request(caller.operator_id, key, fingerprint)
        if begun.outcome is BeginOutcome.REPLAY:
            return Response(begun.body or b"", begun.status_code or 200,
                            {"content-type": "application/json", "Idempotent-Replayed": "true", "X-Request-Id": caller.request_id})
        if begun.outcome is BeginOutcome.MISMATCH:
            raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
        if begun.outcome is BeginOutcome.IN_PROGRESS:
            raise ApiError(409, "request_in_progress", "a request with this Idempotency-Key is being processed; retry")
        try:
            status, payload = await work(backend, replace(caller, idempotency_key=key), body)
            response = _json_response(status, payload, caller.request_id)
        except ApiError as exc:
            status, response = exc.status, _error(exc, caller.request_id)
        except BaseException:
            await backend.operators.abandon_request(caller.operator_id, key)
            raise
        if status >= 500:  # transient: the next try must run again
            await backend.operators.abandon_request(caller.operator_id, key)
        else:
            await backend.operators.finish_request(caller.operator_id, key, status, bytes(response.body))
        return response

    # -- token ---------------------------------------------------------------------------

    @app.post("/oauth/token", summary="client credentials -> short-lived bearer token")
    async def token(self, request: Request) -> Response:
        request_id = _request_id(request)
        try:
            backend = await self._b()
            await self._limit(backend, [(f"ip:{_client_ip(request, backend.trust_forwarded_for)}", backend.ip_limit_per_min, 60)])
            body = await _read_body(request)
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                from urllib.parse import parse_qsl

                body = json.dumps(dict(parse_qsl(body.decode("utf-8", "replace")))).encode()
            form = _parse(TokenRequest, body)
            credentials = await backend.operators.credentials_by_client_id(form.client_id, backend.vault)
            if credentials is None or not credentials.enabled:
                raise ApiError(401, "invalid_client", "unknown client or wrong secret")
            verify_client_secret(credentials.secret, form.client_secret)
            token, expires_in = backend.tokens.issue(credentials.operator_id, now=time.time())
            return _json_response(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}, request_id,
                                  {"Cache-Control": "no-store"})
        except ApiError as exc:
            return _error(exc, request_id)
        except AuthError as exc:
            return _error(ApiError(exc.http_status, exc.code, str(exc)), request_id)

    # -- players, sessions, wallet -------------------------------------------------------

    @app.post("/players", summary="register a player in a currency", status_code=201)
    async def players(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            form = _parse(PlayerRequest, body)
            result = await backend.execute(_command(CommandKind.OPEN, caller.operator_id, form.player_id, form.currency))
            if not result.ok:
                raise _wallet_error(result)
            return 201, {"player_id": form.player_id, "currency": form.currency, "balance": result.balance}

        return await self._handle(request, work, idempotent_post=True)

    @app.post("/sessions", summary="a game-session token for a player (used by game providers)", status_code=201)
    async def sessions(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            form = _parse(SessionRequest, body)
            await self._known_player(backend, caller, form.player_id)
            token = await backend.sessions.issue(
                caller.operator_id, form.player_id, provider_id=form.provider_id, ttl=timedelta(seconds=form.ttl_s)
            )
            return 201, {"player_id": form.player_id, "session_token": token, "expires_in": form.ttl_s}

        return await self._handle(request, work, idempotent_post=True)

    async def _known_player(self, backend: _Backend, caller: Caller, player_id: str) -> None:
        # A player has one account (one currency) per operator; any currency proves it exists.
        currency = await backend.rounds._pool.fetchval(
            "SELECT currency FROM accounts WHERE kind = 'player' AND operator_id = $1 AND player_id = $2",
            caller.operator_id, player_id,
        )
        if currency is None:
            raise ApiError(404, "unknown_player", f"no player {player_id}; register it with POST /api/players")

    async def _transfer(self, request: Request, kind: CommandKind) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            form = _parse(TransferRequest, body)
            assert caller.idempotency_key is not None
            result = await backend.execute(
                _command(kind, caller.operator_id, form.player_id, form.currency,
                         idempotency_key=f"api:{caller.idempotency_key}", amount=form.amount)
            )
            if not result.ok:
                raise _wallet_error(result)
            return 200, {"player_id": form.player_id, "currency": form.currency, "amount": form.amount,
                         "balance": result.balance, "transaction_id": result.tx_id}

        return await self._handle(request, work, idempotent_post=True)

    @app.post("/wallet/credit", summary="operator funds a player (minor units)")
    async def credit(self, request: Request) -> Response:
        return await self._transfer(request, CommandKind.TRANSFER_IN)

    @app.post("/wallet/debit", summary="operator withdraws for a player (minor units)")
    async def debit(self, request: Request) -> Response:
        return await self._transfer(request, CommandKind.TRANSFER_OUT)

    @app.get("/wallet/balance", summary="a player's withdrawable balance")
    async def balance(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            player = _query(request, "player_id", required=True)
            currency = _query(request, "currency", required=True)
            assert player is not None and currency is not None
            result = await backend.execute(_command(CommandKind.BALANCE, caller.operator_id, player, currency))
            if not result.ok:
                raise _wallet_error(result)
            return 200, {"player_id": player, "currency": currency, "balance": result.balance}

        return await self._handle(request, work)

    # -- bets ----------------------------------------------------------------------------

    @app.post("/bets/place", summary="place a Keno ticket in the open round", status_code=201)
    async def place(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            form = _parse(BetRequest, body)
            table = self._table(backend, form.table_id, form.round_id)
            scheduler = backend.scheduler(table.table_id)
            assert caller.idempotency_key is not None
            ticket_id = hashlib.sha256(f"{caller.operator_id}\x1f{caller.idempotency_key}".encode()).hexdigest()[:32]
            # Checked and booked at once: a plain read of today's volume would let
            # concurrent bets of one player pass the daily limit together.
            check = await backend.operators.reserve_volume(
                caller.operator_id, form.player_id, form.currency, ticket_id, form.stake, caller.credentials.risk,
                day_start=utc_day_start(),
            )
            if check.refusal is not None:
                raise ApiError(422, check.refusal,
                               f"{check.refusal.replace('_', ' ')} (stake {form.stake}, today {check.volume_minor})")
            bet = {"ticket_id": ticket_id, "operator_id": caller.operator_id, "player_id": form.player_id,
                   "currency": form.currency, "picks": form.picks, "stake": form.stake}
            if form.round_id is not None:
                bet["round_id"] = form.round_id
            # If the call fails, the reservation stays: the ticket may still be written, and
            # the stake must count until it is (the reservation lapses after its lease).
            [answer] = await scheduler.place.remote([bet])
            await backend.operators.release_volume(caller.operator_id, form.player_id, form.currency, ticket_id)
            if answer["status"] == "repeat":
                return 201, _ticket_view(answer["ticket"])
            if answer["status"] != "placed":
                await self._explain_refusal(backend, answer, form.round_id)
            await self._watch_volume(backend, caller, form.player_id, form.currency, check.volume_minor + form.stake)
            return 201, answer

        return await self._handle(request, work, idempotent_post=True)

    async def _explain_refusal(self, backend: _Backend, answer: dict[str, Any], round_id: str | None) -> None:
        code = str(answer.get("code"))
        if code == "round_closed" and round_id is not None and await backend.rounds.get_round(round_id) is None:
            raise ApiError(404, "unknown_round", f"no round {round_id}")
        if code in _BET_ERRORS:
            raise ApiError(_BET_ERRORS[code], code, str(answer.get("message", code)))
        try:
            wallet_code = ResultCode(code)
        except ValueError:
            raise ApiError(422, code, str(answer.get("message", code))) from None
        raise _wallet_error(Result(wallet_code, message=str(answer.get("message", ""))))

    async def _watch_volume(self, backend: _Backend, caller: Caller, player_id: str, currency: str, today: int) -> None:
        """Flag (and, if the operator wants it, suspend) a player betting far above habit."""
        limits = caller.credentials.risk
        history = await backend.history(caller.operator_id, player_id, currency)
        anomaly = volume_anomaly(history, today, limits.anomaly_sigma, limits.min_history_days)
        if anomaly is None:
            return
        changed = await backend.operators.flag_player(
            caller.operator_id, player_id, "volume_anomaly", anomaly.to_detail(), suspended=limits.auto_suspend
        )
        if changed and limits.auto_suspend:
            await backend.execute(
                Command(CommandKind.SET_STATUS, caller.operator_id, player_id, currency, status=AccountStatus.LOCKED)
            )
            log.warning("player %s/%s suspended: betting volume beyond %s sigma", caller.operator_id, player_id,
                        limits.anomaly_sigma)

    def _table(self, backend: _Backend, table_id: str | None, round_id: str | None) -> TableConfig:
        if table_id is None and round_id is not None:
            table_id = round_id.rsplit("-", 1)[0]
        if table_id is None:
            return next(iter(backend.tables.values()))
        table = backend.tables.get(table_id)
        if table is None:
            raise ApiError(404, "unknown_table", f"no table {table_id}; see GET /api/operator/config")
        return table

    @app.post("/bets/rollback", summary="cancel a ticket while its round still takes bets")
    async def rollback(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            form = _parse(RollbackRequest, body)
            ticket = await backend.rounds.ticket(form.ticket_id)
            if ticket is None or ticket["operator_id"] != caller.operator_id:
                raise ApiError(404, "unknown_ticket", f"no ticket {form.ticket_id}")
            answer = await backend.scheduler(ticket["table_id"]).rollback.remote(form.ticket_id)
            if answer["status"] != "rolled_back":
                await self._explain_refusal(backend, answer, None)
            return 200, answer

        return await self._handle(request, work, idempotent_post=True)

    @app.get("/bets/{ticket_id}", summary="recall a ticket: stake, picks, draw, hits, payout, balances, proofs")
    async def recall(self, request: Request, ticket_id: str) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            ticket = await backend.rounds.recall(ticket_id)
            if ticket is None or ticket["operator_id"] != caller.operator_id:
                raise ApiError(404, "unknown_ticket", f"no ticket {ticket_id}")
            return 200, _ticket_view(ticket)

        return await self._handle(request, work)

    # -- rounds and configuration ----------------------------------------------------------

    @app.get("/rounds/current", summary="the round open for bets on a table")
    async def current(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            table = self._table(backend, _query(request, "table_id"), None)
            current = await backend.scheduler(table.table_id).current.remote()
            if current is None:
                raise ApiError(409, "no_open_round", "no round is open for bets right now; retry in a moment")
            return 200, current

        return await self._handle(request, work)

    @app.get("/rounds/results", summary="finished rounds, newest first: numbers, revealed seed, salt, proofs")
    async def results(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            table = self._table(backend, _query(request, "table_id"), None)
            limit = _int_query(request, "limit", 20, 1, 100)
            # Absent means "from the newest"; any given value, 0 included, is a cursor.
            before = _int_query(request, "before", 0, 0, 2**62) if "before" in request.query_params else None
            rows = await backend.rounds.published_many(table_id=table.table_id, limit=limit, before_nonce=before)
            next_before = rows[-1]["nonce"] if len(rows) == limit else None
            return 200, {"rounds": rows, "next_before": next_before}

        return await self._handle(request, work)

    @app.get("/operator/config", summary="tables, paytables with exact RTP, limits, currencies")
    async def config(self, request: Request) -> Response:
        async def work(backend: _Backend, caller: Caller, body: bytes) -> tuple[int, Any]:
            tables = []
            for table in backend.tables.values():
                paytables = backend.paytables[table.paytable_set]
                tables.append({
                    **table.to_mapping(),
                    "paytables": {
                        str(spots): {
                            "pays": {str(h): str(m) for h, m in enumerate(paytables.for_spots(spots).multipliers()) if m},
                            "rtp_percent": _rtp_text(paytables.for_spots(spots).rtp()),
                            "rtp_exact": str(paytables.for_spots(spots).rtp()),
                        }
                        for spots in paytables.spots
                    },
                })
            credentials = caller.credentials
            return 200, {
                "operator_id": caller.operator_id,
                "tables": tables,
                "rate_limit_per_min": credentials.effective_rate_limit(DEFAULT_RATE_LIMITS),
                "risk_limits": credentials.risk.to_mapping(),
                "ip_allow_list": list(credentials.ip_allow_list),
            }

        return await self._handle(request, work)

    # -- health ---------------------------------------------------------------------------

    @app.get("/health/live", summary="the replica answers")
    async def live(self) -> Response:
        return _json_response(200, {"status": "ok"}, uuid.uuid4().hex)

    @app.get("/health/ready", summary="PostgreSQL, Redis, the shards, the tables and the chain answer")
    async def ready(self) -> Response:
        checks: dict[str, str] = {}
        try:
            backend = await asyncio.wait_for(self._b(), 5)
        except Exception as exc:
            return _json_response(503, {"status": "unavailable", "checks": {"startup": str(exc)[:200]}}, uuid.uuid4().hex)

        async def probe(name: str, check: Awaitable[Any]) -> None:
            try:
                await asyncio.wait_for(check, 2)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"

        await asyncio.gather(
            probe("postgres", backend.rounds._pool.fetchval("SELECT 1")),
            probe("redis", backend.redis.ping()),
            probe("shards", backend.router.execute_many([Command(CommandKind.BALANCE, "~health", "probe", "EUR")])),
            *(probe(f"table:{t}", backend.scheduler(t).current.remote()) for t in backend.tables),
            # Bets need open rounds, and rounds need the chain: without it they are voided.
            *([probe("chain", _notary_info(backend.settings["notary"]))] if backend.settings.get("notary") else []),
        )
        ok = all(v == "ok" for v in checks.values())
        return _json_response(200 if ok else 503, {"status": "ok" if ok else "unavailable", "checks": checks}, uuid.uuid4().hex)

    # -- the round feed ----------------------------------------------------------------------

    @app.websocket("/ws/rounds")
    async def rounds_feed(self, websocket: WebSocket) -> None:
        request_id = _request_id(websocket)
        fmt = websocket.query_params.get("format", "json")
        try:
            if fmt not in ("json", "msgpack"):
                raise ApiError(400, "invalid_request", "format must be json or msgpack")
            backend = await self._b()
            await self._authenticate(backend, websocket, b"", request_id)
        except (ApiError, AuthError) as exc:
            status = exc.status if isinstance(exc, ApiError) else exc.http_status
            code = exc.code
            await websocket.close(code=4000 + status, reason=f"{code}: {exc}"[:120])
            return
        await websocket.accept()
        queue = backend.fanout.join()
        try:
            while True:
                event = await queue.get()
                if fmt == "msgpack":
                    await websocket.send_bytes(encode_event(event, "msgpack"))
                else:
                    await websocket.send_text(encode_event(event, "json"))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            backend.fanout.leave(queue)
            with contextlib.suppress(Exception):
                await websocket.close()

