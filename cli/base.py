"""What every ``rgs`` command shares: the argument parser, output and error handling."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from core.config import Config, load_config

__all__ = [
    "CliError",
    "Handler",
    "Parser",
    "add_config_flag",
    "add_json_flag",
    "emit_json",
    "fail",
    "load_cli_config",
]

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, never a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object for machines")


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None, separators=(", ", ": "), default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def fail(message: str, exit_code: int = 2) -> NoReturn:
    raise CliError(message, exit_code)


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML settings file (default: $RGS_CONFIG); environment variables override it",
    )


def load_cli_config(args: argparse.Namespace, **overrides: Any) -> Config:
    """The validated configuration for a command: --config/$RGS_CONFIG, env, overrides."""
    import os

    path = getattr(args, "config", None) or os.environ.get("RGS_CONFIG")
    text = None
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"rgs: cannot read config file {path}: {exc.strerror}")
    return load_config(os.environ, text, file_name=str(path), overrides=overrides)
