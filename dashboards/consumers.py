"""The live-updates WebSocket (/ws/live/): authorizes on connect, joins groups, forwards events.

A trader joins `user.<id>` and `account.<id>` for each account they belong to; staff join
`staff`, which carries every account's events. Quotes are public and joined on request.
The consumer never filters events: it only ever joins groups the user may hear.
"""

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.realtime import STAFF_GROUP, account_group, user_group
from accounts.selectors import visible_account_ids
from brokers.realtime import quotes_group
from brokers.selectors import known_symbols

CLOSE_UNAUTHENTICATED = 4401
MAX_QUOTE_SUBSCRIPTIONS = 200


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined: set[str] = set()
        self.quote_groups: set[str] = set()
        await self.accept()
        await self._join_allowed_groups()

    async def _join_allowed_groups(self) -> None:
        user = self.scope["user"]
        allowed = {user_group(user.pk)}
        account_ids: list[int] = await database_sync_to_async(visible_account_ids)(user)
        allowed |= {STAFF_GROUP} if user.is_staff else {account_group(i) for i in account_ids}
        for group in allowed - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.groups_joined - allowed:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = allowed
        await self.send_json({"type": "hello", "data": {"accounts": sorted(account_ids)}})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()) | getattr(self, "quote_groups", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "subscribe_quotes":
            symbols = content.get("symbols")
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                await self._error("bad_request", "symbols must be a list of instrument symbols.")
                return
            known = await database_sync_to_async(known_symbols)(symbols[:MAX_QUOTE_SUBSCRIPTIONS])
            for symbol in known:
                group = quotes_group(symbol)
                if group not in self.quote_groups:
                    await self.channel_layer.group_add(group, self.channel_name)
                    self.quote_groups.add(group)
            await self.send_json({"type": "subscribed", "data": {"symbols": sorted(known)}})
        elif action == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self._error("unknown_action", 'Send {"action": "subscribe_quotes", "symbols": [...]}.')

    async def _error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "data": {"code": code, "detail": detail}})

    # -- events from the groups (type "order.updated" -> method order_updated) --------------

    async def _forward(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": event["type"], "account": event.get("account"), "data": event["data"]})

    order_updated = _forward
    position_updated = _forward
    account_updated = _forward
    risk_violation = _forward
    risk_warning = _forward

    async def quote(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "quote", "data": event["data"]})

    async def access_changed(self, event: dict[str, Any]) -> None:
        await self._join_allowed_groups()
