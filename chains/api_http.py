"""The JSON API over HTTP: ``GET /api/v2/options/live`` and ``/api/v2/options/expiries``.

``ApiConsumer`` is mounted ahead of Django's request cycle (``optionsite.asgi``). Under ASGI,
Django runs each request's synchronous parts on a thread it starts for that request and hops to
it once per middleware method: for a chain whose answer is cached bytes, that costs several
times the answer itself (bench/api.py measures both). Here the request is still Django's own
``ASGIRequest`` (query parsing, the ALLOWED_HOSTS check) and the response still passes
Django's ``SecurityMiddleware`` (HTTPS redirect, HSTS, nosniff, referrer policy), both called
inline because they do no I/O; the login comes from the session cookie (Channels' session
middleware, the same session as the pages), and the answer (``chains.api``) runs in one hop to
the thread that owns the database connection.
"""

from __future__ import annotations

import io
import logging
import time

import redis
from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware

from . import api, sessions
from .metrics import API_SECONDS

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("django.security.DisallowedHost")

STORE_DOWN = (
    "The chain store (Redis) does not answer: an admin must check that Redis runs at "
    "REDIS_URL; /status/ (staff) shows the feeds."
)


def _no_view(request: object) -> None:  # SecurityMiddleware needs a get_response; unused
    raise AssertionError("the security middleware only checks requests and responses here")


class ApiConsumer(AsyncHttpConsumer):
    """One API request: checks, access rule, the answer, security headers."""

    # A request is answered and done: it needs no channel of its own on the channel layer
    # (an alias with no layer configured gives none).
    channel_layer_alias = "api-requests-have-no-channel"

    async def handle(self, body: bytes) -> None:
        started = time.perf_counter()
        request = ASGIRequest(self.scope, io.BytesIO(body))
        security = SecurityMiddleware(_no_view)
        try:
            response = await self.respond(request, security)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.error("API request %s: Redis does not answer: %s", request.path, exc)
            response = _response(api.error(503, "store_unavailable", STORE_DOWN))
        except Exception:  # answer with JSON and keep the traceback in the log
            logger.exception("API request %s failed", request.path)
            response = _response(
                api.error(500, "server_error", "The server failed to answer: see its log.")
            )
        response = security.process_response(request, response)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        headers.append((b"content-length", str(len(response.content)).encode()))
        await self.send_response(response.status_code, response.content, headers=headers)
        endpoint = self.scope["url_route"]["kwargs"]["endpoint"]
        API_SECONDS.labels(endpoint, str(response.status_code)).observe(
            time.perf_counter() - started
        )

    async def respond(self, request: ASGIRequest, security: SecurityMiddleware) -> HttpResponse:
        try:
            request.get_host()
        except DisallowedHost as exc:
            security_logger.warning("%s", exc)
            return _response(api.error(400, "bad_request", "This host name is not served here."))
        redirect = security.process_request(request)  # plain HTTP while HTTPS is required
        if redirect is not None:
            return redirect
        if request.method != "GET":
            response = _response(
                api.error(405, "method_not_allowed", f"{request.method} is not allowed: use GET.")
            )
            response["Allow"] = "GET"
            return response
        # The access rule (chains.access) from the session and the user's state in Redis, on
        # the event loop (chains.sessions): the answer does not depend on who asks.
        session = self.scope["session"]
        if not settings.CHAINS_PUBLIC and await sessions.asession_user_id(session) is None:
            return _response(api.denied())
        endpoint = api.ENDPOINTS[self.scope["url_route"]["kwargs"]["endpoint"]]
        return _response(await database_sync_to_async(endpoint)(request.GET))


def _response(answer: api.Answer) -> HttpResponse:
    response = api.http_response(answer)
    response["Cache-Control"] = "no-store"
    if not settings.CHAINS_PUBLIC:
        response["Vary"] = "Cookie"
    return response
