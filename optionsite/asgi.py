"""ASGI entry point: the JSON API and WebSockets to Channels consumers, other HTTP to Django.

A WebSocket is accepted only from the site's own origins (scheme, host and port:
``chains.origin``) and carries the session user.
The chain API (``chains.api_http``) answers ahead of Django's request cycle; everything else
(pages, admin, login, status, static files when SERVE_STATIC) goes through Django.
"""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optionsite.settings")
django_asgi_app = get_asgi_application()  # sets Django up before consumers import models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from chains.origin import site_origin_validator  # noqa: E402
from chains.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

django_http = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_urlpatterns, re_path(r"", django_http)]),
        "websocket": site_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything loaded by now lives as long as the process. Freezing it keeps the collector's full
# passes to what requests allocate, instead of walking Django's whole module graph each time:
# under load those passes stalled every request for 50-100 ms (bench/api.py).
gc.collect()
gc.freeze()
