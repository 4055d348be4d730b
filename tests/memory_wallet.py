"""An in-memory wallet with the real rules (``core.wallet.decide``), for dialect tests.

It plays the account shards and the session store behind ``actors.wallet_flow.run_call``,
so a dialect's conformance tests exercise its parsing and rendering against the same
rules the shards apply, without a database or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.wallet_flow import ResolvedPlayer, run_call
from core.dialects.base import (
    Dialect,
    Outcome,
    PlayerRef,
    ProviderSettings,
    WireRequest,
    WireResponse,
)
from core.wallet import (
    AccountStatus,
    AccountView,
    BetView,
    Command,
    CommandKind,
    Result,
    ResultCode,
    decide,
)


@dataclass
class _Account:
    currency: str
    balance: int
    status: AccountStatus = AccountStatus.ACTIVE
    bets: dict[str, BetView] = field(default_factory=dict)
    records: dict[str, tuple[bytes, Result]] = field(default_factory=dict)


class MemoryWallet:
    def __init__(self, operator_id: str = "op-demo") -> None:
        self.operator_id = operator_id
        self.accounts: dict[str, _Account] = {}
        self.sessions: dict[str, tuple[str, bool]] = {}  # token -> (player_id, still valid)
        self.commands: list[Command] = []
        self._tx = 0

    def add_player(self, player_id: str, currency: str = "EUR", balance: int = 0, *, token: str | None = None,
                   locked: bool = False) -> None:
        status = AccountStatus.LOCKED if locked else AccountStatus.ACTIVE
        self.accounts[player_id] = _Account(currency, balance, status)
        if token is not None:
            self.sessions[token] = (player_id, True)

    def expire(self, token: str) -> None:
        player_id, _ = self.sessions[token]
        self.sessions[token] = (player_id, False)

    def balance(self, player_id: str) -> int:
        return self.accounts[player_id].balance

    async def resolve(self, ref: PlayerRef) -> ResolvedPlayer | str:
        player_id = ref.player_id
        if ref.token is not None:
            session = self.sessions.get(ref.token)
            if session is None:
                if ref.token_must_be_valid or player_id is None:
                    return "invalid_token"
            else:
                if player_id is not None and session[0] != player_id:
                    return "invalid_token"
                if not session[1] and ref.token_must_be_valid:
                    return "expired_token"
                player_id = session[0]
        if player_id is None or player_id not in self.accounts:
            return "unknown_player"
        return ResolvedPlayer(self.operator_id, player_id, self.accounts[player_id].currency)

    async def execute(self, commands: list[Command]) -> list[Result]:
        return [self._one(c) for c in commands]

    def _one(self, command: Command) -> Result:
        self.commands.append(command)
        account = self.accounts.get(command.player_id)
        if account is None:
            return Result(ResultCode.UNKNOWN_ACCOUNT)
        if command.kind.keyed:
            stored = account.records.get(command.idempotency_key)
            if stored is not None:
                if stored[0] == command.request_hash():
                    r = stored[1]
                    return Result(r.code, r.balance, r.currency, r.tx_id, True, r.message)
                return Result(ResultCode.DUPLICATE_MISMATCH, account.balance, account.currency)
        bet_key = command.idempotency_key if command.kind is CommandKind.BET else command.reference
        bet = account.bets.get(bet_key or "") if command.kind in (CommandKind.BET, CommandKind.WIN, CommandKind.ROLLBACK) else None
        decision = decide(command, AccountView(account.currency, account.status, account.balance), bet)
        result = decision.result
        if decision.moves_money:
            self._tx += 1
            account.balance += decision.delta
            result = Result(result.code, result.balance, result.currency, self._tx, False, result.message)
        if decision.bet_state is not None and bet_key is not None:
            account.bets[bet_key] = BetView(decision.bet_state, decision.bet_amount)
        if decision.status is not None:
            account.status = decision.status
        if command.kind.keyed:
            account.records[command.idempotency_key] = (command.request_hash(), result)
        return result

    async def handle(self, dialect: Dialect, settings: ProviderSettings, request: WireRequest) -> WireResponse:
        """What the provider adapter does with one request, minus recording."""
        refusal = dialect.authenticate(request, settings)
        if refusal is not None:
            return refusal
        parsed = dialect.parse(request, settings)
        if isinstance(parsed, WireResponse):
            return parsed
        outcome: Outcome = await run_call(parsed, resolve=self.resolve, execute=self.execute)
        return dialect.render(parsed, outcome)


