"""WebSocket routes (served through optionsite.asgi)."""

from __future__ import annotations

from django.urls import path

from .consumers import LiveOptionsConsumer

websocket_urlpatterns = [
    path("ws/live-options/<str:underlying>", LiveOptionsConsumer.as_asgi()),
]
