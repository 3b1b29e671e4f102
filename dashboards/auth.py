"""WebSocket authentication: an API token in `?token=`, or the browser session.

A token is itself the credential, so token connections skip the Origin check; session
connections must come from an allowed host, or any page could ride a logged-in cookie.
"""

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class WebsocketAuth:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_app = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode())
        if "token" in query:
            user = await _user_for_token(query["token"][0])
            return await self.inner({**scope, "user": user}, receive, send)
        return await self.session_app(scope, receive, send)
