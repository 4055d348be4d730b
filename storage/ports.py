"""Local ports for the embedded servers (PostgreSQL, Redis): pick a free one, and read back
the one a server of an earlier run recorded in its state file, so restarts keep URLs."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

__all__ = ["free_port", "remembered_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def remembered_port(state_file: Path) -> int | None:
    """The ``port`` in a server's JSON state file; None if there is no readable one."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return int(json.loads(state_file.read_text())["port"])
    return None
