"""The embedded EVM dev chain: eth-tester (py-evm) in its own process, serving JSON-RPC.

The chain notary always speaks JSON-RPC over HTTP, also to this default chain, because the
chain must outlive the notary (Ray restarts it) and ``rgs verify`` reads the chain from
another process. So the embedded default is a small dev-chain process, in the spirit of
anvil: ``python -m storage.embedded_chain --port P --block-time S``.

* Its state lives in memory only: stopping the process loses the dev chain (every
  commitment published on it). It is for development and tests; production points the
  notary at a real chain (a JSON-RPC URL and a signing key).
* Block timestamps follow the wall clock. Left alone, eth-tester mines a block per
  transaction, py-evm stamps the next block when the previous one is mined (so a block
  mined later carries an old time) and adds one second per block when blocks come faster
  (so a burst pushes timestamps into the future). A future timestamp would break the salt
  rule: the "first block with timestamp >= T" would exist, and be known, before T. So a
  block is never mined before its timestamp, and timestamps are whole seconds that
  strictly increase: at most one block per second.
* A transaction is mined at once if the current second has no block yet; otherwise it
  joins the pending block, mined (with every other transaction sent meanwhile) as soon as
  the next second begins. So a publish takes up to a second, and many senders, or one
  sender with consecutive nonces, share blocks.
* An empty block is mined whenever no block was mined for ``--block-time`` seconds, so a
  "first block at or after time T" always appears shortly after T (a round's public salt).

``EmbeddedChain`` starts that process detached (own session, log in ``state_dir``),
remembers ``{"url", "pid"}`` in ``state_dir/chain.json`` and reuses a live one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from storage.errors import EmbeddedServerError

__all__ = ["DEV_PRIVATE_KEY", "EmbeddedChain", "main"]

# eth-tester's default accounts are the private keys 1, 2, ..., 10, prefunded in genesis.
# These dev keys are public and deterministic: anyone can sign with them, so they must never
# hold anything of value (exactly like anvil's and hardhat's default accounts).
DEV_PRIVATE_KEY = "0x" + (1).to_bytes(32, "big").hex()

_STATE_FILE = "chain.json"
_LOG_FILE = "chain.log"
# JSON-RPC error codes (JSON-RPC 2.0 spec; -32000 is the "server error" geth also uses).
_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600
_SERVER_ERROR = -32000
_MAX_BODY = 4 * 1024 * 1024


# -- the node (inside the dev-chain process) -------------------------------------------


class _DevChainNode:
    """eth-tester behind a lock, mining on the wall clock, answering in JSON-RPC wire format.

    Mining rule (see the module docstring): a block is mined only once the wall clock has
    reached its timestamp, and stamped with the current second. A raw transaction is
    applied to the pending block at once (so the sender's next nonce is valid at once)
    and mined immediately if this second has no block yet; otherwise it waits, with any
    others, for the next second's block. The block ticker fills idle time with empty blocks.
    """

    def __init__(self, block_time_s: float) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import Web3
        from web3.providers.eth_tester import EthereumTesterProvider

        self._backend = PyEVMBackend()
        provider = EthereumTesterProvider(EthereumTester(self._backend))
        # The provider's own middleware maps JSON-RPC names and hex parameters to
        # eth-tester's (snake_case keys, ints) and back; its bare ``make_request`` does not.
        # The Web3 object only hosts that middleware: its default onion (attribute dicts,
        # ENS, gas strategies) would turn results into Python objects, so it goes.
        w3 = Web3(provider)
        w3.middleware_onion.clear()
        self._request: Callable[..., Any] = provider.request_func(w3, w3.middleware_onion)
        key = self._backend.account_keys[0].to_hex()
        if key != DEV_PRIVATE_KEY:
            raise RuntimeError(f"eth-tester's first default key changed: {key}")
        # eth-tester (and py-evm under it) is not thread-safe; the HTTP server is threaded.
        # The condition shares the lock: the ticker sleeps on it and wakes when a
        # transaction arrives or a block is mined.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._block_time_s = block_time_s
        self._last_block_at = time.time()
        self._pending = 0  # transactions applied to the pending block, not mined yet
        self._stopping = False

    # -- requests ---------------------------------------------------------------------

    def handle(self, method: Any, params: Any) -> dict[str, Any]:
        """``{"result": ...}`` or ``{"error": {...}}`` for one call."""
        if not isinstance(method, str) or not isinstance(params, (list, type(None))):
            return _error(_INVALID_REQUEST, "method must be a string and params a list")
        params = params or []
        try:
            with self._lock:
                if method == "eth_sendRawTransaction":
                    return {"result": self._send_raw(params)}
                if method == "evm_mine":
                    count = _quantity(params[0]) if params else 1
                    hashes: list[Any] = []
                    for _ in range(count):
                        hashes.extend(self._mine_when_due())
                    return {"result": _to_wire(hashes)}
                if method == "eth_sendTransaction":
                    # eth-tester signs and mines this at once: give it a due block slot.
                    self._wait_until_due()
                    response = self._request(method, params)
                    self._mined()
                else:
                    response = self._request(method, params)
        except Exception as exc:  # every failure of a call is that call's JSON-RPC error
            return _error(_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        if "error" in response:
            return {"error": response["error"]}
        result = response.get("result")
        pending_receipt = isinstance(result, dict) and result.get("blockNumber") is None
        if method == "eth_getTransactionReceipt" and pending_receipt:
            result = None  # still in the pending block: nodes answer null until mined
        return {"result": _to_wire(result)}

    def _send_raw(self, params: list[Any]) -> str:
        if len(params) != 1 or not isinstance(params[0], str) or not params[0].startswith("0x"):
            raise ValueError("eth_sendRawTransaction takes one 0x-hex string")
        raw = bytes.fromhex(params[0][2:])
        if self._pending == 0:
            self._stamp_pending()
        # Straight to the backend: it applies the transaction to the pending block (eth-
        # tester's own non-auto-mine path would validate the next nonce against the last
        # mined state and refuse a second transaction from the same sender).
        tx_hash = bytes(self._backend.send_raw_transaction(raw))
        self._pending += 1
        if self._pending_timestamp() <= time.time():
            self._mine()
        else:
            self._changed.notify_all()
        return "0x" + tx_hash.hex()

    # -- mining (all with the lock held) ----------------------------------------------

    def _pending_timestamp(self) -> int:
        return int(self._backend.chain.header.timestamp)

    def _head_timestamp(self) -> int:
        return int(self._backend.chain.get_canonical_head().timestamp)

    def _stamp_pending(self) -> None:
        """Stamp the empty pending block with the current second, or the parent's + 1."""
        chain = self._backend.chain
        stamp = max(int(time.time()), self._head_timestamp() + 1)
        if chain.header.timestamp != stamp:
            # Only while it is empty: nothing has run against the old time yet. eth-tester's
            # own time_travel re-stamps the pending header the same way.
            chain.header = chain.header.copy(timestamp=stamp)

    def _due_at(self) -> float:
        """Wall-clock time the next block may be mined."""
        if self._pending:
            return float(self._pending_timestamp())
        return float(self._head_timestamp() + 1)

    def _wait_until_due(self) -> None:
        while (wait := self._due_at() - time.time()) > 0:
            self._changed.wait(wait)
        if self._pending == 0:
            self._stamp_pending()

    def _mine_when_due(self) -> list[Any]:
        self._wait_until_due()
        return self._mine()

    def _mine(self) -> list[Any]:
        response = self._request("evm_mine", [])
        if "error" in response:
            raise RuntimeError(response["error"].get("message", "mining failed"))
        self._mined()
        return list(response["result"])

    def _mined(self) -> None:
        self._pending = 0
        self._last_block_at = time.time()
        self._changed.notify_all()

    def tick_forever(self) -> None:
        """Mine waiting transactions when their second comes, and an empty block whenever
        no block was mined for ``block_time_s`` seconds."""
        with self._lock:
            while not self._stopping:
                due = self._due_at()
                if not self._pending:
                    due = max(due, self._last_block_at + self._block_time_s)
                wait = due - time.time()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                try:
                    if not self._pending:
                        self._stamp_pending()
                    self._mine()
                except Exception as exc:  # keep ticking; the log says why
                    print(f"mining failed: {exc!r}", file=sys.stderr, flush=True)
                    self._changed.wait(self._block_time_s)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify_all()


def _quantity(value: Any) -> int:
    if isinstance(value, str):
        return int(value, 16)
    return int(value)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _to_wire(value: Any, key: str | None = None) -> Any:
    """eth-tester's results as JSON-RPC puts them: every number a hex quantity."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            # eth-tester keeps the bloom as an int; on the wire it is 256 bytes of data.
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _to_wire(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    return str(value)


class _Handler(BaseHTTPRequestHandler):
    """JSON-RPC 2.0 over HTTP POST: one request or a batch."""

    protocol_version = "HTTP/1.1"  # keep-alive: web3's requests session reuses the socket
    # Headers and body leave in two writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms per call on a kept-alive connection).
    disable_nagle_algorithm = True
    node: _DevChainNode  # set on the subclass made by ``serve``

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_BODY:
            self._send(400, {"jsonrpc": "2.0", "id": None, **_error(_INVALID_REQUEST, "bad body")})
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._send(200, {"jsonrpc": "2.0", "id": None, **_error(_PARSE_ERROR, "not JSON")})
            return
        if isinstance(body, list):
            answers = [a for a in (self._one(r) for r in body) if a is not None]
            if not body:
                answers_or_one: Any = {
                    "jsonrpc": "2.0",
                    "id": None,
                    **_error(_INVALID_REQUEST, "empty batch"),
                }
            else:
                answers_or_one = answers or None
        else:
            answers_or_one = self._one(body)
        if answers_or_one is None:  # only notifications: nothing to answer
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, answers_or_one)

    def _one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return {"jsonrpc": "2.0", "id": None, **_error(_INVALID_REQUEST, "not JSON-RPC 2.0")}
        answer = self.node.handle(request.get("method"), request.get("params"))
        if "id" not in request:
            return None
        return {"jsonrpc": "2.0", "id": request["id"], **answer}

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per RPC call would drown the log


def serve(host: str, port: int, block_time_s: float) -> None:
    """Run the dev chain until SIGTERM/SIGINT; print ``{"url", "pid"}`` once ready."""
    node = _DevChainNode(block_time_s)
    handler = type("DevChainHandler", (_Handler,), {"node": node})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True

    def shut_down(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs in this very thread: do it aside.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    ticker = threading.Thread(target=node.tick_forever, name="block-ticker", daemon=True)
    ticker.start()
    # Listening on every interface still means "reach me on loopback" for the local starter.
    advertised = "127.0.0.1" if host in ("", "0.0.0.0") else host
    url = f"http://{advertised}:{server.server_port}"
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    # The starter reads that line from a pipe and then closes it: later writes to stdout
    # (a stray print, a warning) go to the log instead of failing on a closed pipe.
    with contextlib.suppress(OSError):
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    print(f"dev chain serving {url} (block time {block_time_s}s)", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        node.stop()
        server.server_close()
        print("dev chain stopped", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storage.embedded_chain",
        description="An in-memory EVM dev chain (eth-tester) serving JSON-RPC over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--block-time",
        type=float,
        default=1.0,
        help="mine an empty block after this many idle seconds (default 1.0)",
    )
    args = parser.parse_args(argv)
    if args.block_time <= 0:
        parser.error("--block-time must be positive")
    serve(args.host, args.port, args.block_time)


# -- the starter (in the caller's process) ---------------------------------------------


class EmbeddedChain:
    """The dev-chain process for ``state_dir``: started detached, found again, stopped.

    The chain lives in the process's memory: ``stop()`` (or a reboot) loses it, like
    anvil. ``state_dir`` only holds ``chain.json`` (where it listens, which pid) and
    ``chain.log``.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        block_time_s: float = 1.0,
        port: int = 0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.block_time_s = block_time_s
        self._port = port
        self._start_timeout_s = start_timeout_s
        self._state_file = self.state_dir / _STATE_FILE
        self._log_file = self.state_dir / _LOG_FILE
        self._url: str | None = None
        self._pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            remembered = self._remembered()
            if remembered is None:
                raise EmbeddedServerError(f"no dev chain started under {self.state_dir}")
            self._url, self._pid = remembered
        return self._url

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def private_key(self) -> str:
        """The prefunded dev account's key (public knowledge; see ``DEV_PRIVATE_KEY``)."""
        return DEV_PRIVATE_KEY

    def running(self) -> bool:
        """Whether the recorded process is alive and answers JSON-RPC."""
        remembered = self._remembered()
        if remembered is None:
            return False
        url, pid = remembered
        return self._alive(pid) and _answers(url)

    def start(self) -> str:
        """Start the dev chain (or reuse the live one recorded here); return its URL."""
        remembered = self._remembered()
        if remembered is not None and self._alive(remembered[1]) and _answers(remembered[0]):
            self._url, self._pid = remembered
            return remembered[0]
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            url, pid = self._launch()
        except OSError as exc:
            raise EmbeddedServerError(
                f"dev chain under {self.state_dir} failed to start: {exc}"
            ) from exc
        self._url, self._pid = url, pid
        state = self._state_file.with_suffix(".json.tmp")
        state.write_text(json.dumps({"url": url, "pid": pid}))
        state.replace(self._state_file)
        return url

    def stop(self, *, grace_s: float = 5.0) -> None:
        """SIGTERM the dev chain, SIGKILL it after ``grace_s``; its state is gone after."""
        remembered = self._remembered()
        pid = self._pid if self._pid is not None else (remembered[1] if remembered else None)
        if pid is not None and self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, grace_s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not self._wait_gone(pid, grace_s):
                    raise EmbeddedServerError(f"dev chain pid {pid} did not stop")
        if remembered is None or remembered[1] == pid:
            with contextlib.suppress(FileNotFoundError):
                self._state_file.unlink()
        self._url = self._pid = None
        self._process = None

    def __enter__(self) -> EmbeddedChain:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    def _launch(self) -> tuple[str, int]:
        # Importable wherever we run from (a Ray worker's cwd, a test's tmp dir).
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "storage.embedded_chain",
            "--port",
            str(self._port),
            "--block-time",
            str(self.block_time_s),
        ]
        with self._log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                # Its own session: Ctrl-C in the starter's terminal must not reach it, and
                # it keeps running when the starter exits (the chain outlives the notary).
                start_new_session=True,
            )
        self._process = process
        try:
            ready = self._read_ready_line(process)
            url, pid = str(ready["url"]), int(ready["pid"])
            if not _answers(url, timeout_s=5.0, retry=True):
                raise EmbeddedServerError(f"dev chain at {url} does not answer eth_blockNumber")
        except BaseException:
            process.kill()
            process.wait()
            self._process = None
            raise
        finally:
            assert process.stdout is not None
            process.stdout.close()
        return url, pid

    def _read_ready_line(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert process.stdout is not None
        deadline = time.monotonic() + self._start_timeout_s
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EmbeddedServerError(
                        f"dev chain not ready after {self._start_timeout_s:.0f}s; see {self._log_file}"
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    raise EmbeddedServerError(
                        f"dev chain exited with {process.wait()} before it was ready; "
                        f"see {self._log_file}: {self._log_tail()}"
                    )
                line += chunk
        try:
            ready = json.loads(line)
            if not isinstance(ready, dict):
                raise ValueError(line)
        except ValueError as exc:
            raise EmbeddedServerError(f"dev chain said {line!r} instead of its address") from exc
        return ready

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self._log_file.read_text(errors="replace")[-2000:].strip()
        return ""

    def _remembered(self) -> tuple[str, int] | None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads(self._state_file.read_text())
            return str(state["url"]), int(state["pid"])
        return None

    def _alive(self, pid: int) -> bool:
        process = self._process
        if process is not None and process.pid == pid:
            # Our own child: once it exits it is a zombie (kill(pid, 0) still succeeds)
            # until reaped, and poll() reaps it.
            return process.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by someone else
        return True

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


def _answers(url: str, *, timeout_s: float = 1.0, retry: bool = False) -> bool:
    """Whether ``url`` answers ``eth_blockNumber`` (retrying until ``timeout_s`` if asked)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    deadline = time.monotonic() + timeout_s
    while True:
        request = urllib.request.Request(
            url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        remaining = max(0.2, deadline - time.monotonic())
        try:
            with urllib.request.urlopen(request, timeout=remaining) as reply:
                return "result" in json.loads(reply.read())
        except (OSError, ValueError, urllib.error.URLError):
            if not retry or time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


if __name__ == "__main__":
    main()
