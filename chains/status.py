"""The status page (``/status/``) and its JSON twin (``/api/v2/status``).

Both show ``status_selectors.system_status()``: accounts and their tokens, feed workers,
chains and the periodic tasks' last outcomes — for staff only (``is_staff``), as account names,
token expiry, broker errors and process ids are nobody else's business; traders see each
chain's state on its own page. The page sends anonymous visitors to the login (redirect) and
answers a logged-in user who is not staff 403 with what to do; the API answers 401 JSON to
anonymous callers (never a redirect) and 403 JSON ``{"status": "error", "code":
"staff_only", "message"}`` to a user who is not staff. While Redis (feeds, chains, counters)
does not answer, the API answers 503 ``{"status": "error", "code": "store_unavailable",
"message"}`` and the page says so with status 503; both recover by themselves when Redis
answers again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from . import status_selectors
from .api import error, http_response

logger = logging.getLogger(__name__)

STORE_UNAVAILABLE = "store_unavailable"
STAFF_ONLY = "staff_only"
STAFF_ONLY_MESSAGE = (
    "The system status is for staff only: it names broker accounts, tokens and errors. The "
    "chain pages show each chain's state; an admin can give your user Staff status in "
    "admin → Users if you need this page (with two-factor admin on, log in through admin with "
    "your one-time code)."
)
STORE_DOWN = (
    "The chain store (Redis) does not answer, so feed workers, chains and counters cannot be "
    'shown: check that Redis runs at REDIS_URL (redis-cli -u "$REDIS_URL" ping). This '
    "status answers again by itself when Redis does."
)

# Keys of system_status() rows that hold ISO times; the page shows them as Indian time.
_TIMES = (
    "token_expires_at",
    "last_checked_at",
    "connected_since",
    "updated_at",
    "as_of",
    "started_at",
    "finished_at",
)


def staff_verified(user: Any) -> bool:
    """Staff, and with ADMIN_REQUIRE_OTP a login confirmed by a one-time code (admin's rule)."""
    if not user.is_staff:
        return False
    return not settings.ADMIN_REQUIRE_OTP or user.is_verified()


@require_GET
def status_api(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return http_response(
            error(401, "unauthenticated", "Log in at /accounts/login/ to see the status.")
        )
    if not staff_verified(request.user):
        return http_response(error(403, STAFF_ONLY, STAFF_ONLY_MESSAGE))
    try:
        status = status_selectors.system_status()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.error("Status API: Redis does not answer: %s", exc)
        return http_response(error(503, STORE_UNAVAILABLE, STORE_DOWN))
    return JsonResponse({"status": "success", "data": status})


@require_GET
@login_required
def status_page(request: HttpRequest) -> HttpResponse:
    if not staff_verified(request.user):
        refused = {"refused": {"code": STAFF_ONLY, "message": STAFF_ONLY_MESSAGE}}
        return render(request, "chains/status.html", refused, status=403)
    try:
        status = status_selectors.system_status()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.error("Status page: Redis does not answer: %s", exc)
        unavailable = {"code": STORE_UNAVAILABLE, "message": STORE_DOWN}
        return render(request, "chains/unavailable.html", unavailable, status=503)
    context = {
        "time": _local(status["time"]),
        "accounts": [
            _page_row(a, token_left=_left(a["token_seconds_left"])) for a in status["accounts"]
        ],
        "feeds": [_page_row(f) for f in status["feeds"]],
        "chains": [_page_row(c) for c in status["chains"]],
        "tasks": [_page_row(t) for t in status["tasks"]],
        "channel_gaps": status["channel_gaps"],
    }
    return render(request, "chains/status.html", context)


def _page_row(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``row`` with its ISO times as aware local datetimes (for the ``date`` filter)."""
    return {**row, **{k: _local(row[k]) for k in _TIMES if row.get(k)}, **extra}


def _local(iso: str) -> datetime:
    return timezone.localtime(datetime.fromisoformat(iso))


def _left(seconds: int | None) -> str:
    """``seconds`` until a token expires as "5h 12m" ("expired 3h 4m ago" when negative)."""
    if seconds is None:
        return "unknown"
    minutes = abs(seconds) // 60
    text = f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m"
    return text if seconds >= 0 else f"expired {text} ago"
