"""The JSON API: ``/api/v2/options/live`` and ``/api/v2/options/expiries``.

Answers: 200 ``{"status": "success", "data": …}``; 400 bad parameters; 401 not logged in;
404 an underlying or expiry that is not tracked (the body lists the valid ones); 503 with a
``code`` and a message saying what to do, plus the last known ``data`` (labelled by
``source``) when there is some.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from . import selectors
from .access import may_view_chains

DATA_KEYS = (
    "underlying", "expiry", "lot_size", "strike_interval", "atm_strike", "spot", "forward",
    "pcr", "max_pain", "source", "as_of", "seq", "strikes",
)  # fmt: skip


def error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse(
        {"status": "error", "code": code, "message": message, **extra}, status=status
    )


def api_data(data: dict[str, Any]) -> dict[str, Any]:
    """The API's ``data``: the snapshot's public keys (feed bookkeeping left out)."""
    return {key: data.get(key) for key in DATA_KEYS}


def _denied() -> JsonResponse:
    return error(401, "unauthenticated", "Log in at /accounts/login/ to use the API.")


def parse_expiry(raw: str | None) -> date | None:
    """None for a missing expiry; ValueError naming the expected form for a bad one."""
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expiry {raw!r} is not a date: use YYYY-MM-DD") from None


@require_GET
def options_live(request: HttpRequest) -> JsonResponse:
    if not may_view_chains(request.user):
        return _denied()
    underlying = (request.GET.get("underlying") or "").strip().upper()
    if not underlying:
        return error(400, "bad_request", "underlying is required, e.g. ?underlying=NIFTY")
    try:
        expiry = parse_expiry(request.GET.get("expiry"))
        chain, expiry = selectors.resolve(underlying, expiry)
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    except selectors.NotTracked as exc:
        return error(404, "not_tracked", str(exc), valid=exc.valid)
    view = selectors.chain_view(chain, expiry)
    data = api_data(view.data) if view.data is not None else None
    if not view.ok:
        return error(503, view.code or "unavailable", view.message, data=data)
    return JsonResponse({"status": "success", "data": data})


@require_GET
def options_expiries(request: HttpRequest) -> JsonResponse:
    if not may_view_chains(request.user):
        return _denied()
    underlying = (request.GET.get("underlying") or "").strip().upper()
    if not underlying:
        return error(400, "bad_request", "underlying is required, e.g. ?underlying=NIFTY")
    try:
        chain = selectors.tracked_chain(underlying)
    except selectors.NotTracked as exc:
        return error(404, "not_tracked", str(exc), valid=exc.valid)
    expiries = [e.isoformat() for e in selectors.expiries(chain)]
    return JsonResponse(
        {"status": "success", "data": {"underlying": chain.underlying, "expiries": expiries}}
    )
