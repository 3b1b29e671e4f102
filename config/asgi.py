"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django_asgi_app = get_asgi_application()  # before importing consumers: it sets up the app registry

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from dashboards.auth import WebsocketAuth  # noqa: E402
from dashboards.routing import websocket_urlpatterns  # noqa: E402
from signals_in.views import WebhookFastPath  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Static files first, fully async; every middleware is async-capable, so a request
        # crosses into a worker thread once (for the sync view) instead of once per mode switch.
        # /webhooks/ is answered before Django's middleware (signals_in.views.WebhookFastPath).
        "http": WebhookFastPath(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": WebsocketAuth(URLRouter(websocket_urlpatterns)),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the cyclic GC's full
# collections, which otherwise walk it every few seconds under load (tens of ms of pause).
import gc  # noqa: E402

gc.freeze()
