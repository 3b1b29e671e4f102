"""Shapes of the risk endpoints: rules in force, headroom, evaluation and violations."""

from dataclasses import asdict
from typing import Any

from risk.selectors import AccountMetrics, RiskAssessment


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def rules_payload(assessment: RiskAssessment) -> dict[str, Any]:
    rules = asdict(assessment.rules)
    rules["contract_rules"] = {root: asdict(rule) for root, rule in assessment.rules.contract_rules.items()}
    rules["scaling_tiers"] = [{"threshold": t, "max_contracts": m} for t, m in assessment.rules.scaling_tiers]
    return _plain(rules)


def risk_payload(assessment: RiskAssessment, *, evaluation: dict[str, Any], metrics: AccountMetrics) -> dict[str, Any]:
    account, state = assessment.account, assessment.state
    return {
        "account": account.pk,
        "status": account.status,
        "trading_state": account.trading_state,
        "trading_state_reason": account.trading_state_reason,
        "trade_date": assessment.valuation.trade_date.isoformat(),
        "blocked_until": state.blocked_until.isoformat() if state.blocked_until else None,
        "blocked_reason": state.blocked_reason,
        "drawdown_floor": _plain(assessment.floor),
        "peak_equity": str(assessment.peak_equity),
        "eod_high_balance": str(state.eod_high_balance),
        "max_contracts": assessment.max_contracts,
        "contracts_in_use": str(assessment.contracts_in_use),
        "limits": rules_payload(assessment),
        "headroom": assessment.headroom_dicts(),
        "evaluation": evaluation,
        "metrics": _plain(asdict(metrics)),
    }
