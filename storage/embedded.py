"""Embedded PostgreSQL 16 from the ``pgserver`` wheel: zero set-up, real server.

We drive pgserver's bundled binaries (initdb, pg_ctl) ourselves instead of its
``get_server`` handle, because ray-rgs needs a TCP port that other processes (Ray workers,
``psql``, tests) can reach, and needs to stop the server on purpose, immediately, to test
crash recovery.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from storage.errors import EmbeddedServerError
from storage.ports import free_port, remembered_port

__all__ = ["EmbeddedPostgres"]

_USER = "postgres"
_DATABASE = "rgs"


def _pgserver() -> Any:
    # pgserver asks platformdirs for a runtime dir at import and warns when
    # XDG_RUNTIME_DIR is unset (containers, CI); we never use that dir.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import postgres_server

    return postgres_server



class EmbeddedPostgres:
    """A PostgreSQL server whose data lives under ``data_dir``.

    ``start()`` initialises the folder on first use, starts the server on 127.0.0.1 and
    creates the ``rgs`` database; ``stop()`` stops it. The chosen port is remembered in
    ``data_dir/rgs-server.json`` so a restart keeps the same URL.
    """

    def __init__(self, data_dir: Path | str, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self._state_file = self.data_dir / "rgs-server.json"
        self._port = port
        self._system_user: str | None = None

    # -- public API -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = remembered_port(self._state_file) or free_port()
        return self._port

    @property
    def url(self) -> str:
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/{_DATABASE}"

    def is_running(self) -> bool:
        try:
            self._pg_ctl(["status"], check=True)
        except subprocess.CalledProcessError:
            return False
        return True

    def start(self) -> str:
        """Start (initialising if needed) and return the database URL."""
        try:
            self._prepare()
            if not self.is_running():
                self._pg_ctl(
                    [
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        str(self.data_dir / "postgres.log"),
                        "-o",
                        f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}",
                        "start",
                    ],
                    check=True,
                )
            self._state_file.write_text(json.dumps({"port": self.port}))
            self._ensure_database()
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(
                f"embedded PostgreSQL under {self.data_dir} failed to start: {exc}; "
                f"see {self.data_dir / 'postgres.log'}"
            ) from exc
        return self.url

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server. ``mode="immediate"`` is a crash: no checkpoint, no goodbye."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        if not self.pgdata.joinpath("PG_VERSION").exists() or not self.is_running():
            return
        try:
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"], check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(f"embedded PostgreSQL did not stop: {exc}") from exc

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    def _prepare(self) -> None:
        pgs = _pgserver()

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.name != "nt" and os.geteuid() == 0:
            # PostgreSQL refuses to run as root; pgserver's helper creates an
            # unprivileged user and we run the server as that user.
            self._system_user = "pgserver"
            pgs.ensure_user_exists(self._system_user)
            pgs.ensure_prefix_permissions(self.data_dir)
            # The binaries may sit in a private folder (a venv under a 0700 mktemp dir):
            # the unprivileged user must be able to reach and run them.
            pgs.ensure_prefix_permissions(pgs.POSTGRES_BIN_PATH)
            pgs.ensure_folder_permissions(pgs.POSTGRES_BIN_PATH, 0o555)
            pgs.ensure_folder_permissions(pgs.POSTGRES_BIN_PATH.parent / "lib", 0o444)
            import pwd

            uid = pwd.getpwnam(self._system_user).pw_uid
            gid = pwd.getpwnam(self._system_user).pw_gid
            os.chown(self.data_dir, uid, gid)
        if not self.pgdata.joinpath("PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            if self._system_user is not None:
                import pwd

                entry = pwd.getpwnam(self._system_user)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                ["-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", _USER],
            )

    def _ensure_database(self) -> None:
        exists = self._run(
            "psql",
            [*self._psql_args("postgres"), "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{_DATABASE}'"],
        )
        if exists.strip() != "1":
            with contextlib.suppress(subprocess.CalledProcessError):
                # Two processes may race to create it; the loser's error is harmless.
                self._run("psql", [*self._psql_args("postgres"), "-c", f"CREATE DATABASE {_DATABASE}"])

    def _psql_args(self, database: str) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", _USER, "-d", database]

    def _pg_ctl(self, args: list[str], *, check: bool) -> str:
        return self._run("pg_ctl", ["-D", str(self.pgdata), *args], check=check)

    def _run(self, program: str, args: list[str], *, check: bool = True) -> str:
        pgs = _pgserver()

        deadline_s = 90
        started = time.monotonic()
        result = subprocess.run(
            [str(pgs.POSTGRES_BIN_PATH / program), *args],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            user=self._system_user,
            timeout=deadline_s,
            # Its own session: Ctrl-C in the terminal running `rgs up` must not reach the
            # postmaster before we stop it cleanly ourselves.
            start_new_session=True,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, f"{program} ({time.monotonic() - started:.1f}s)", result.stdout
            )
        return result.stdout
