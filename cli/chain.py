"""``rgs chain``: the chain the notary publishes on (status; stop the embedded dev chain)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail, load_cli_config

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("chain", help="the EVM chain of round commitments: status, stop the dev chain")
    chain_sub = parser.add_subparsers(dest="chain_command", metavar="ACTION", parser_class=type(parser))
    chain_sub.required = True
    status = chain_sub.add_parser("status", help="where the chain is, its head block, the notary's address")
    status.set_defaults(handler=_status)
    stop = chain_sub.add_parser(
        "stop", help="stop the embedded dev chain (its blocks are lost: past rounds become unverifiable)"
    )
    stop.set_defaults(handler=_stop)
    for command in (status, stop):
        add_config_flag(command)
        add_json_flag(command)


def _status(args: argparse.Namespace) -> int:
    from storage.chain import ChainClient
    from storage.embedded_chain import EmbeddedChain
    from storage.errors import ChainError

    config = load_cli_config(args)
    embedded = config.chain_rpc_url is None
    if embedded:
        chain = EmbeddedChain(config.state_dir / "chain")
        if not chain.running():
            fail("rgs chain status: the embedded dev chain is not running ('rgs up' starts it)", exit_code=1)
        url: str | None = chain.url
        key: str | None = chain.private_key
    else:
        url, key = config.chain_rpc_url, config.chain_private_key
    assert url is not None
    try:
        client = ChainClient(url, key)
        info = {"rpc_url": url, "embedded": embedded, "chain_id": client.chain_id(), "head": client.head(),
                "notary_address": client.address}
    except ChainError as exc:
        fail(f"rgs chain status: {exc}", exit_code=1)
    if args.json:
        emit_json(info)
    else:
        for key_name, value in info.items():
            print(f"{key_name:<15} {value}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from storage.embedded_chain import EmbeddedChain

    config = load_cli_config(args)
    if config.chain_rpc_url is not None:
        fail("rgs chain stop: the chain is external (chain_rpc_url); nothing to stop here")
    chain = EmbeddedChain(config.state_dir / "chain")
    was_running = chain.running()
    if was_running:
        chain.stop()
    if args.json:
        emit_json({"stopped": was_running})
    else:
        print("embedded dev chain stopped" if was_running else "embedded dev chain was not running")
    return 0
