"""``rgs db``: the database on its own: migrate, print its URL, start/stop the embedded one."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, load_cli_config
from storage.database import migrate, resolve_database
from storage.embedded import EmbeddedPostgres

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("db", help="database schema and the embedded PostgreSQL")
    db_sub = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    db_sub.required = True

    migrate_parser = db_sub.add_parser(
        "migrate", help="apply pending migrations (starts the embedded server if needed)"
    )
    add_config_flag(migrate_parser)
    add_json_flag(migrate_parser)
    migrate_parser.set_defaults(handler=_migrate)

    stop_parser = db_sub.add_parser("stop", help="stop the embedded PostgreSQL")
    add_config_flag(stop_parser)
    stop_parser.set_defaults(handler=_stop)


def _migrate(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    url, server = resolve_database(config.database_url, config.pg_data_dir)
    applied = asyncio.run(migrate(url))
    if args.json:
        emit_json({"database_url": url, "embedded": server is not None, "applied": applied})
    else:
        where = f"embedded PostgreSQL under {config.pg_data_dir}" if server else "DATABASE_URL"
        print(f"database {url} ({where})")
        print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
        if server:
            print("the embedded server keeps running; stop it with: rgs db stop")
    return 0


def _stop(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    EmbeddedPostgres(config.pg_data_dir).stop()
    print(f"stopped embedded PostgreSQL under {config.pg_data_dir}")
    return 0
