"""Pages while the store is away: a Redis failure in any page view is answered 503 with its
name and what to do, never a 500 (the JSON API and the WebSocket answer ``store_unavailable``
by themselves)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

STORE_UNAVAILABLE = (
    "Redis, where the live chains are kept, does not answer. This page comes back by itself "
    "when it does; if it lasts, check redis-server (REDIS_URL) on the server."
)


class StoreUnavailableMiddleware:
    """``process_exception``: RedisError → the 503 "store unavailable" page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RedisError):
            return None  # not ours: Django's handling (and its 500) goes on
        logger.error("Page %s: Redis does not answer (%s)", request.path, exception)
        context = {"code": "store_unavailable", "message": STORE_UNAVAILABLE}
        return render(request, "chains/unavailable.html", context, status=503)
