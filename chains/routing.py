"""Channels routes (served through optionsite.asgi): the JSON API and the live WebSocket."""

from __future__ import annotations

from channels.sessions import SessionMiddlewareStack
from django.urls import path, re_path

from . import api
from .api_http import ApiConsumer
from .consumers import LiveOptionsConsumer

# HTTP routes answered ahead of Django's request cycle; the rest goes to Django.
http_urlpatterns = [
    re_path(
        rf"^{api.PREFIX}(?P<endpoint>{'|'.join(api.ENDPOINTS)})$",
        SessionMiddlewareStack(ApiConsumer.as_asgi()),
    ),
]

websocket_urlpatterns = [
    path("ws/live-options/<str:underlying>", LiveOptionsConsumer.as_asgi()),
]
