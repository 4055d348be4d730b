"""How a provider adapter runs one parsed wallet call: resolve the player, run the intents,
hand back an outcome. The I/O is injected, so the same flow runs against the account
shards in production and against an in-memory wallet in the dialect tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.dialects.base import Intent, Outcome, ParsedCall, PlayerRef
from core.wallet import CallbackNote, Command, CommandKind, Result, ResultCode

__all__ = ["Execute", "Resolve", "ResolvedPlayer", "run_call"]


@dataclass(frozen=True)
class ResolvedPlayer:
    operator_id: str
    player_id: str
    currency: str | None = None  # None: not known up front; the wallet checks the request's


# Returns the player, or an error word: unknown_player, invalid_token, expired_token.
Resolve = Callable[[PlayerRef], Awaitable["ResolvedPlayer | str"]]
Execute = Callable[[list[Command]], Awaitable[list[Result]]]

_REFUSED = frozenset(ResultCode) - {ResultCode.OK}


def _command(player: ResolvedPlayer, currency: str, intent: Intent, callback: CallbackNote | None = None) -> Command:
    return Command(
        intent.kind,
        player.operator_id,
        player.player_id,
        currency,
        intent.key,
        intent.amount,
        intent.reference,
        intent.round_ref,
        intent.game_ref,
        callback=callback,
    )


async def run_call(
    call: ParsedCall, *, resolve: Resolve, execute: Execute, callback: CallbackNote | None = None
) -> Outcome:
    """Run ``call``; ``callback`` (its record's fields) rides on the command of a
    one-intent call, so the shard writes the record with it (``Result.audited``). A call of
    several intents is recorded by its caller: its answer is not any one command's."""
    if len(call.intents) != 1:
        callback = None
    player = await resolve(call.player)
    if isinstance(player, str):
        return Outcome((), None, None, None, error=player)
    currency = call.currency or player.currency
    if not call.intents or currency is None:
        # The account's own currency: balance requests, and calls that name none.
        probe = Command(CommandKind.BALANCE, player.operator_id, player.player_id, call.currency or "EUR")
        (result,) = await execute([probe])
        if result.code not in (ResultCode.OK, ResultCode.CURRENCY_MISMATCH) or result.currency is None:
            return Outcome((), None, None, player.player_id, error=_error_word(result))
        if call.currency is not None and call.currency != result.currency:
            return Outcome((), result.currency, result.balance, player.player_id, error="currency_mismatch")
        if not call.intents:
            return Outcome((), result.currency, result.balance, player.player_id)
        currency = result.currency
    results: list[Result] = []
    for intent in call.intents:
        (result,) = await execute([_command(player, currency, intent, callback)])
        results.append(result)
        if result.code in (ResultCode.UNAVAILABLE, ResultCode.BUSY):
            return Outcome(results, currency, None, player.player_id, error="unavailable")
        if result.code is ResultCode.UNKNOWN_ACCOUNT:
            return Outcome((), None, None, player.player_id, error="unknown_player")
        if call.atomic and result.code in _REFUSED:
            # Replayed or not, a refusal ends the call: nothing it placed may stay.
            await _undo(player, currency, call.intents[: len(results) - 1], results[:-1], execute)
            break
    balance = next((r.balance for r in reversed(results) if r.balance is not None), None)
    account_currency = next((r.currency for r in reversed(results) if r.currency is not None), currency)
    return Outcome(results, account_currency, balance, player.player_id)


async def _undo(
    player: ResolvedPlayer, currency: str, intents: tuple[Intent, ...], results: list[Result], execute: Execute
) -> None:
    """All-or-nothing calls: roll back the bets this call placed before the refusal (a
    replayed bet was placed, and is owned, by an earlier request)."""
    for intent, result in zip(intents, results, strict=True):
        if intent.kind is CommandKind.BET and result.code is ResultCode.OK and not result.replayed:
            undo = Intent(CommandKind.ROLLBACK, f"{intent.key}:undo", reference=intent.key, round_ref=intent.round_ref)
            await execute([_command(player, currency, undo)])


def _error_word(result: Result) -> str:
    if result.code is ResultCode.UNKNOWN_ACCOUNT:
        return "unknown_player"
    return "unavailable"
