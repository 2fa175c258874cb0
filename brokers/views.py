"""Broker login endpoints: Upstox OAuth from admin, and the Upstox token notifier."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import upstox_login
from .exceptions import LoginError, NotifierRefused

logger = logging.getLogger(__name__)


def _account_page(account_id: int | None) -> str:
    if account_id is None:
        return reverse("admin:brokers_brokeraccount_changelist")
    return reverse("admin:brokers_brokeraccount_change", args=[account_id])


@staff_member_required
@require_GET
def upstox_login_start(request: HttpRequest, account_id: int) -> HttpResponse:
    """Send the admin to Upstox's authorization dialog for the account."""
    try:
        return HttpResponseRedirect(upstox_login.start_login(request, account_id))
    except LoginError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(_account_page(account_id))


@staff_member_required
@require_GET
def upstox_callback(request: HttpRequest) -> HttpResponse:
    """Where Upstox redirects after the dialog: exchange the code, store the token."""
    state = request.GET.get("state")
    target = upstox_login.account_for_state(state) if state else None
    try:
        account = upstox_login.complete_login(
            request,
            code=request.GET.get("code"),
            state=state,
            error=request.GET.get("error"),
        )
    except LoginError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(_account_page(target.pk if target else None))
    messages.success(
        request,
        f"Logged in to Upstox: account '{account.name}' has a new token, valid until "
        f"{account.token_expires_at:%d %b %H:%M} IST. The feed picks it up by itself.",
    )
    return HttpResponseRedirect(_account_page(account.pk))


@csrf_exempt  # the broker posts here; the unguessable path and the id checks authenticate it
@require_POST
def upstox_notifier(request: HttpRequest, secret: str) -> HttpResponse:
    """Upstox's POST with the token of an approved v3 token request."""
    try:
        account = upstox_login.accept_notification(secret, request.body)
    except NotifierRefused as exc:
        logger.warning("Refused an Upstox token notification: %s", exc)
        status = 404 if str(exc) == "unknown notifier address" else 400
        return JsonResponse({"status": "error", "message": str(exc)}, status=status)
    return JsonResponse({"status": "success", "account": account.name})
