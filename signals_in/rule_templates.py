"""The four common automation rules as data; staff create a rule from one and adjust its figures."""

from typing import Any

RULE_TEMPLATES: dict[str, dict[str, Any]] = {
    "buy_with_brackets": {
        "label": "Buy with brackets",
        "description": "A buy signal while flat opens long with a stop loss and a take profit.",
        "priority": 10,
        "cooldown_seconds": 300,
        "conditions": {"signal": {"action": "buy"}, "position": "flat"},
        "action": {"kind": "open", "side": "buy", "quantity": 1, "stop_loss_ticks": 20, "take_profit_ticks": 40},
    },
    "sell_close_all": {
        "label": "Sell / close all",
        "description": "A sell signal closes the position in the signal's instrument and cancels its working orders.",
        "priority": 20,
        "cooldown_seconds": 0,
        "conditions": {"signal": {"action": "sell"}},
        "action": {"kind": "close_all"},
    },
    "scale_in": {
        "label": "Scale in",
        "description": "An add signal while the position is at least 1R in profit adds one contract, with its stop.",
        "priority": 30,
        "cooldown_seconds": 600,
        "conditions": {"signal": {"action": "add"}, "min_profit_r": "1.0"},
        "action": {"kind": "scale_in", "quantity": 1, "stop_loss_ticks": 20},
    },
    "eod_close": {
        "label": "End-of-day close",
        "description": "At 15:55 Chicago on weekdays, cancel working orders and close every position.",
        "priority": 1,
        "cooldown_seconds": 0,
        "conditions": {
            "time_window": {"start": "15:55", "end": "16:00", "tz": "America/Chicago", "days": [0, 1, 2, 3, 4]}
        },
        "action": {"kind": "eod_close"},
    },
}


def template_choices() -> list[tuple[str, str]]:
    return [(key, template["label"]) for key, template in RULE_TEMPLATES.items()]
