"""Chain pages: the list of tracked chains and one chain's full table (server-rendered)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from brokers import calendar
from brokers.exchange import IST, exchange_for
from brokers.models import TrackedChain

from . import pagestatus, plan, presenter, selectors
from .access import may_view_chains
from .api import LIVE_PATH, view_data
from .expiry_labels import ExpiryLabel, expiry_labels
from .history import selectors as history
from .history.trading_day import trading_day

WINDOWS = (5, 10, 15, 20)
LISTED_EXPIRIES = 1000  # more than any master lists for one underlying: all of them
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
        untracked = _untracked_expiry(underlying, day)
        return render(
            request,
            "chains/unavailable.html",
            {
                "code": "not_tracked",
                "message": untracked or str(exc),
                "valid": exc.valid,
                "underlying": underlying.upper(),
            },
            status=200 if untracked else 404,  # a listed expiry's page exists: it says why
        )
    window = _window(request.GET.get("window"))
    atm_basis = _atm_basis(request.GET.get("atm"))
    now = timezone.now()
    view = selectors.chain_view(chain, day, now=now)
    data = view_data(view)
    page = presenter.build(data, window=window, now=now, atm_basis=atm_basis) if data else None
    market = pagestatus.market_badge(
        calendar.market_state_now(exchange_for(chain.underlying), now=now),
        # the broker's word counts only from a connected feed (as in the freshness verdict)
        broker=view.feed["market"] if view.feed is not None and view.health.connected else None,
    )
    context: dict[str, Any] = {
        "chain": chain,
        "expiry": day,
        "expiries": selectors.expiries(chain, now=now),
        "expiry_labels": _expiry_labels(chain, now=now),
        "view": view,
        "data": data,
        "page": page,
        "window": window,
        "windows": WINDOWS,
        "atm_basis": atm_basis,
        "head_ce": presenter.head_cells("CE"),
        "head_pe": presenter.head_cells("PE"),
        "totalled": ("oi", "oi_change", "volume"),
        "foot": _foot(page),
        "market": market,
        "feed_words": pagestatus.feed_words(view.feed_state),
        "underlyings": sorted({c.underlying for c in selectors.tracked_chains()}),
        "config": {
            "underlying": chain.underlying,
            "expiry": day.isoformat(),
            "ws": f"/ws/live-options/{chain.underlying}?expiry={day.isoformat()}",
            "window": window,
            "seq": data["seq"] if data else None,
            "status": view.status_message(),  # the badge's starting point; the socket updates it
            "atm": atm_basis,
            "market": market,
            "feed_words": pagestatus.FEED_WORDS,
            "feed_unknown": pagestatus.FEED_UNKNOWN,
        },
        "api_url": f"{LIVE_PATH}?underlying={chain.underlying}&expiry={day}",
        "history": history.page_history(
            chain.underlying,
            day,
            data=data,
            now=now,
            day=trading_day(chain.account.name, today=timezone.localdate(now, IST)),
        ),
    }
    status = 200 if view.ok else 503
    return render(request, "chains/chain.html", context, status=status)


def _expiry_labels(chain: TrackedChain, *, now: datetime) -> list[ExpiryLabel]:
    """The switcher's labels ("09 Dec · 3d · W") of every unexpired expiry the account's
    master lists for the underlying, tracked or not (the template marks those not tracked)."""
    listed = plan.nearest_expiries(chain.account, chain.underlying, LISTED_EXPIRIES, now=now)
    return expiry_labels(listed, listed=listed, now=now)


def _untracked_expiry(underlying: str, day: date) -> str | None:
    """What to tell of ``day`` when the master of the account tracking ``underlying`` lists
    it unexpired but the tracked chain does not follow it (not among its nearest expiries):
    that, and how to follow it. None when the underlying is not tracked or ``day`` is not a
    listed expiry."""
    try:
        chain = selectors.tracked_chain(underlying)
    except selectors.NotTracked:
        return None
    listed = plan.nearest_expiries(chain.account, chain.underlying, LISTED_EXPIRIES)
    if day not in listed:
        return None
    needed = listed.index(day) + 1
    return (
        f"Expiry {day.isoformat()} of {chain.underlying} is listed but not tracked: the feed "
        f"follows the nearest {chain.expiries} expiries. To follow this one, set Expiries to "
        f"{needed} or more for {chain.underlying} in admin → Tracked chains (account "
        f"{chain.account.name}), then restart that account's feed worker (runfeed)."
    )


def _foot(page: presenter.ChainPage | None) -> list[tuple[tuple[str, str], object]]:
    """The footer rows: the totals of the strikes shown, then of every strike (the same
    when the window shows them all), each with its label (what it covers)."""
    if page is None:
        return []
    return [
        (("shown", f"Total · {page.shown} shown"), page.totals),
        (("all", f"All {page.listed} strikes"), page.all_totals),
    ]


def _atm_basis(raw: str | None) -> str:
    """``?atm=spot`` (NSE's convention, the default) or ``?atm=forward``; anything else is
    the default (the page's own control only sends these two)."""
    return raw if raw in presenter.ATM_BASES else presenter.ATM_BASES[0]


def _window(raw: str | None) -> int | None:
    if raw == "all":
        return None
    try:
        value = int(raw) if raw else DEFAULT_WINDOW
    except ValueError:
        return DEFAULT_WINDOW
    return value if value > 0 else DEFAULT_WINDOW
