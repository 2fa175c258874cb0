"""Chain pages: the list of tracked chains and one chain's full table (server-rendered)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from . import presenter, selectors
from .access import may_view_chains
from .api import LIVE_PATH, view_data

WINDOWS = (5, 10, 15, 20)
DEFAULT_WINDOW = 15


def _guard(request: HttpRequest) -> HttpResponse | None:
    if may_view_chains(request.user):
        return None
    return redirect_to_login(request.get_full_path())


def index(request: HttpRequest) -> HttpResponse:
    """Every tracked chain with its status and a link to each expiry."""
    if (denied := _guard(request)) is not None:
        return denied
    now = timezone.now()
    rows = []
    for chain in selectors.tracked_chains():
        for expiry in selectors.expiries(chain, now=now):
            view = selectors.chain_view(chain, expiry, now=now, with_data=False)
            rows.append({"chain": chain, "expiry": expiry, "view": view})
    return render(request, "chains/index.html", {"rows": rows})


def chain_nearest(request: HttpRequest, underlying: str) -> HttpResponse:
    if (denied := _guard(request)) is not None:
        return denied
    try:
        chain, expiry = selectors.resolve(underlying, None)
    except selectors.NotTracked as exc:
        raise Http404(str(exc)) from None
    target = reverse("chain", kwargs={"underlying": chain.underlying, "expiry": expiry.isoformat()})
    query = request.GET.urlencode()
    return redirect(f"{target}?{query}" if query else target)


def chain_page(request: HttpRequest, underlying: str, expiry: str) -> HttpResponse:
    """calls | strike | puts, complete without JavaScript; the script then streams.

    The freshness badge, the as-of time and the stale banner are rendered from the chain's
    freshness (``selectors.ChainView.freshness``); the script follows the status messages.
    """
    if (denied := _guard(request)) is not None:
        return denied
    try:
        day = date.fromisoformat(expiry)
    except ValueError:
        return render(
            request,
            "chains/unavailable.html",
            {"code": "bad_request", "message": f"{expiry!r} is not a date (YYYY-MM-DD)."},
            status=400,
        )
    try:
        chain, day = selectors.resolve(underlying, day)
    except selectors.NotTracked as exc:
        return render(
            request,
            "chains/unavailable.html",
            {
                "code": "not_tracked",
                "message": str(exc),
                "valid": exc.valid,
                "underlying": underlying.upper(),
            },
            status=404,
        )
    window = _window(request.GET.get("window"))
    now = timezone.now()
    view = selectors.chain_view(chain, day, now=now)
    data = view_data(view)
    page = presenter.build(data, window=window, now=now) if data else None
    context: dict[str, Any] = {
        "chain": chain,
        "expiry": day,
        "expiries": selectors.expiries(chain, now=now),
        "view": view,
        "data": data,
        "page": page,
        "window": window,
        "windows": WINDOWS,
        "config": {
            "underlying": chain.underlying,
            "expiry": day.isoformat(),
            "ws": f"/ws/live-options/{chain.underlying}?expiry={day.isoformat()}",
            "window": window,
            "seq": data["seq"] if data else None,
            "status": view.status_message(),  # the badge's starting point; the socket updates it
        },
        "api_url": f"{LIVE_PATH}?underlying={chain.underlying}&expiry={day}",
    }
    status = 200 if view.ok else 503
    return render(request, "chains/chain.html", context, status=status)


def _window(raw: str | None) -> int | None:
    if raw == "all":
        return None
    try:
        value = int(raw) if raw else DEFAULT_WINDOW
    except ValueError:
        return DEFAULT_WINDOW
    return value if value > 0 else DEFAULT_WINDOW
