"""Broker login endpoints: Upstox OAuth from admin, and the Upstox token notifier.

Logging an account in replaces its token, so the OAuth start and callback need the
``brokers.change_brokeraccount`` permission, like every broker-account admin action. The
notifier's path secret is never logged or echoed here: refusals are logged by account name,
and the answers carry the reason only.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from . import upstox_login
from .exceptions import LoginError, NotifierRefused, SecretDecryptionError

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "brokers.change_brokeraccount"
# An Upstox token notification is a JSON object of seven short strings (about 1 KB): a larger
# body is refused before it is read (and before Django's own size check would log the path).
MAX_NOTIFIER_BODY = 16 * 1024
NO_PERMISSION = (
    "Logging a broker account in to Upstox replaces its access token: it needs the "
    "'Can change broker account' permission (brokers.change_brokeraccount). Ask an "
    "administrator to grant it in admin → Users or Groups."
)


def _account_page(account_id: int | None) -> str:
    if account_id is None:
        return reverse("admin:brokers_brokeraccount_changelist")
    return reverse("admin:brokers_brokeraccount_change", args=[account_id])


def _may_change(request: HttpRequest) -> bool:
    """The change permission on broker accounts and, with ADMIN_REQUIRE_OTP, a login confirmed
    by a one-time code (the same rule as admin's)."""
    if not request.user.has_perm(CHANGE_PERMISSION):
        return False
    return not settings.ADMIN_REQUIRE_OTP or request.user.is_verified()


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden(NO_PERMISSION, content_type="text/plain; charset=utf-8")


@staff_member_required
@require_GET
def upstox_login_start(request: HttpRequest, account_id: int) -> HttpResponse:
    """Send the admin to Upstox's authorization dialog for the account (403 without the
    change permission on broker accounts)."""
    if not _may_change(request):
        return _forbidden()
    try:
        return HttpResponseRedirect(upstox_login.start_login(request, account_id))
    except LoginError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(_account_page(account_id))


@staff_member_required
@require_GET
def upstox_callback(request: HttpRequest) -> HttpResponse:
    """Where Upstox redirects after the dialog: exchange the code, store the token. The user
    completing the login needs the change permission too (403 before the state is used)."""
    if not _may_change(request):
        return _forbidden()
    state = request.GET.get("state")
    target = upstox_login.account_for_state(state) if state else None
    try:
        account = upstox_login.complete_login(
            request,
            code=request.GET.get("code"),
            state=state,
            error=request.GET.get("error"),
        )
    except (LoginError, SecretDecryptionError) as exc:  # an unreadable API secret says so
        messages.error(request, str(exc))
        return HttpResponseRedirect(_account_page(target.pk if target else None))
    messages.success(
        request,
        f"Logged in to Upstox: account '{account.name}' has a new token, valid until "
        f"{account.token_expires_at:%d %b %H:%M} IST. The feed picks it up by itself.",
    )
    return HttpResponseRedirect(_account_page(account.pk))


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:  # Django reads such a body as empty; the parser then refuses it
        return 0


def _unlogged(response: HttpResponse) -> HttpResponse:
    """Keep django.request from logging this 4xx with the request path, which carries the
    notifier's secret: its log_response skips a response marked as logged already."""
    response._has_been_logged = True
    return response


@csrf_exempt  # the broker posts here; the path secret and a pending admin request authenticate it
@never_cache
def upstox_notifier(request: HttpRequest, secret: str) -> HttpResponse:
    """Upstox's POST with the token of an approved v3 token request (see
    ``upstox_login.accept_notification``). 404 for an unknown address, 400 for a refusal,
    405 for another method; the answer never repeats the path secret."""
    if request.method != "POST":
        logger.warning("Refused a %s to the Upstox notifier: only POST", request.method)
        return _unlogged(HttpResponseNotAllowed(["POST"]))
    if _content_length(request) > MAX_NOTIFIER_BODY:
        logger.warning(
            "Refused an Upstox token notification: a body over %d bytes", MAX_NOTIFIER_BODY
        )
        message = f"A token notification is at most {MAX_NOTIFIER_BODY} bytes."
        return _unlogged(JsonResponse({"status": "error", "message": message}, status=413))
    try:
        account = upstox_login.accept_notification(secret, request.body)
    except NotifierRefused as exc:
        # The message names the account, never the path secret or the token.
        logger.warning("Refused an Upstox token notification: %s", exc)
        status = 404 if str(exc) == upstox_login.UNKNOWN_ADDRESS else 400
        return _unlogged(JsonResponse({"status": "error", "message": str(exc)}, status=status))
    return JsonResponse({"status": "success", "account": account.name})
