"""Pre-trade rules (pure): each looks at an order intent and an account snapshot and returns a
denial with a rule name, a machine code and a sentence, or None."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from accounts.domain import AccountStatus, TradingState
from orders.domain import OrderIntent


@dataclass(frozen=True)
class Denial:
    rule: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class AccountSnapshot:
    status: AccountStatus
    trading_state: TradingState
    positions: Mapping[str, int] = field(default_factory=dict)  # signed quantity by symbol
    working: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # unfilled (buy, sell) by symbol


Rule = Callable[[OrderIntent, AccountSnapshot], Denial | None]


def increases_exposure(intent: OrderIntent, snapshot: AccountSnapshot) -> bool:
    """True unless the order only takes off part of the position, even if every order already
    working on the reducing side also fills (so two "reducing" orders cannot flip a position)."""
    held = snapshot.positions.get(intent.symbol, 0)
    signed = intent.signed_quantity
    if held == 0 or (held > 0) == (signed > 0):
        return True
    working_buy, working_sell = snapshot.working.get(intent.symbol, (0, 0))
    already_reducing = working_sell if held > 0 else working_buy
    return abs(signed) + already_reducing > abs(held)


def account_status_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if snapshot.status in (AccountStatus.BREACHED, AccountStatus.CLOSED) and not intent.is_liquidation:
        return Denial(
            rule="account_status",
            code=f"account_{snapshot.status}",
            detail=f"The account is {snapshot.status}: it can only close what is open.",
        )
    return None


def trading_state_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if snapshot.trading_state == TradingState.HALTED and not intent.is_liquidation:
        return Denial(
            rule="trading_state",
            code="account_halted",
            detail="The account is halted: no new orders until staff resume it (closing positions still works).",
        )
    if snapshot.trading_state == TradingState.REDUCING and increases_exposure(intent, snapshot):
        return Denial(
            rule="trading_state",
            code="account_reducing",
            detail=(
                "The account may only reduce exposure: this order would open or add to a position "
                f"in {intent.symbol}, counting the orders already working."
            ),
        )
    return None


PRE_TRADE_RULES: tuple[Rule, ...] = (account_status_allows, trading_state_allows)


def evaluate_pre_trade(intent: OrderIntent, snapshot: AccountSnapshot) -> list[Denial]:
    return [denial for rule in PRE_TRADE_RULES if (denial := rule(intent, snapshot))]
