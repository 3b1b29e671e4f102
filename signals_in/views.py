"""Webhook endpoints: read the request, call signals_in.intake, answer JSON. No sessions, no CSRF
(TradingView cannot send either); the token in the URL is the credential.

Two doors to the same intake: the Django views (WSGI, the test client, anything that reaches
Django's URLconf) and `WebhookFastPath`, the ASGI wrapper config/asgi.py puts in front of Django.
Under ASGI every Django middleware crosses into a worker thread and back twice per request
(MiddlewareMixin), ~3 ms of CPU before a view runs; the webhook needs none of them (no session,
cookie, CSRF, user or messages), so the fast path answers /webhooks/ itself and runs the intake on
the event loop (signals_in.intake_io; on the demo's SQLite, in a thread). Nothing is published
from here: the stored signal's notification reaches the hand-off process (docs/decisions/0019).
"""

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from signals_in import intake, intake_io
from signals_in.parsing import MAX_BODY_BYTES

logger = logging.getLogger(__name__)


@csrf_exempt
def tradingview_webhook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse(
            {"code": "method_not_allowed", "detail": "Send the signal with POST.", "field": None},
            status=405,
            headers={"Allow": "POST"},
        )
    # Read at most one byte past the limit ourselves: request.body would refuse large bodies
    # before intake could store them as rejected.
    body = request.read(MAX_BODY_BYTES + 1)
    answer = intake.receive_tradingview_webhook(
        intake.WebhookRequest(
            token=token,
            body=body,
            content_type=request.META.get("CONTENT_TYPE", ""),
            remote_addr=request.META.get("REMOTE_ADDR"),
            forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
        )
    )
    return JsonResponse(answer.body, status=answer.status, headers=answer.headers)


def webhook_health(request: HttpRequest) -> JsonResponse:
    """The trivial endpoint next to the webhook (no database, no session): the benchmark's floor,
    and a liveness check for whoever points TradingView here."""
    return JsonResponse({"ok": True})


# -- ASGI fast path --------------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The demo's SQLite has no asynchronous driver: there the intake runs in this thread instead.
_SQLITE_INTAKE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-intake")


_WEBHOOK_PATH = re.compile(r"^/webhooks/tradingview/(?P<token>[^/]+)/$")
HEALTH_PATH = "/webhooks/health/"


class WebhookFastPath:
    """ASGI middleware: POST /webhooks/tradingview/<token>/ and GET /webhooks/health/ are answered
    here; everything else (other methods included) goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == HEALTH_PATH and method in ("GET", "HEAD"):
                await _send_json(send, 200, {"ok": True})
                return
            if method == "POST" and (match := _WEBHOOK_PATH.match(path)):
                await self._webhook(scope, receive, send, match["token"])
                return
        await self.app(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send, token: str) -> None:
        body = await _read_body(receive, keep=MAX_BODY_BYTES + 1)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        request = intake.WebhookRequest(
            token=token,
            body=body,
            content_type=headers.get("content-type", ""),
            remote_addr=(scope.get("client") or (None,))[0],
            forwarded_for=headers.get("x-forwarded-for"),
        )
        try:
            if connection.vendor == "postgresql":
                answer = await intake_io.receive_tradingview_webhook(request)
            else:
                answer = await asyncio.get_running_loop().run_in_executor(
                    _SQLITE_INTAKE_THREAD, _receive_in_thread, request
                )
        except Exception:
            # Nothing was stored (intake answers every stored signal itself): a 5xx lets
            # TradingView resend it.
            logger.exception("Webhook intake failed before storing the signal")
            await _send_json(send, 500, {"code": "internal_error", "detail": "Try again.", "field": None})
            return
        await _send_json(send, answer.status, answer.body, answer.headers)


def _receive_in_thread(request: intake.WebhookRequest) -> intake.WebhookAnswer:
    # Django's request_started / request_finished do this around views; here we are our own.
    close_old_connections()
    try:
        return intake.receive_tradingview_webhook(request)
    finally:
        close_old_connections()


async def _read_body(receive: Receive, *, keep: int) -> bytes:
    """The request body, cut at `keep` bytes; the rest is read and dropped."""
    chunks, kept = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if kept < keep and chunk:
            chunks.append(chunk[: keep - kept])
            kept += len(chunks[-1])
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    content = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})
