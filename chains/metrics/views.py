"""``GET /metrics``: the Prometheus text format, to the clients ``METRICS_ALLOW`` lets in.

A request is let in when one of these holds:

- it carries ``Authorization: Bearer <METRICS_TOKEN>`` (when METRICS_TOKEN is set);
- ``staff`` is in METRICS_ALLOW and a staff user is logged in;
- its client address (``chains.origin.client_ip``: behind this site's proxies, the address the
  outermost one saw) is in one of the networks METRICS_ALLOW lists.

Anything else is answered 403 with what to set; the default (``staff`` only) exposes nothing
to the public. A wrong bearer token is refused, whatever else would have let the request in.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..origin import client_ip
from . import registry

REFUSED = (
    "/metrics is not open to this client. Scrape it with the bearer token METRICS_TOKEN, from "
    "an address listed in METRICS_ALLOW (e.g. METRICS_ALLOW=staff,10.0.0.0/8), or log in as "
    "staff.\n"
)


def allowed(request: HttpRequest) -> bool:
    """Whether ``request`` may read the metrics (see the module's docstring)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        expected: str = settings.METRICS_TOKEN
        return bool(
            expected and scheme.lower() == "bearer" and constant_time_compare(token, expected)
        )
    if "staff" in settings.METRICS_ALLOW and request.user.is_staff:
        return True  # AnonymousUser.is_staff is False
    address = client_ip(request)
    if address is None or not settings.METRICS_ALLOW_NETWORKS:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # an address daphne could not parse: not in any network
        return False
    return any(ip in network for network in settings.METRICS_ALLOW_NETWORKS)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics (200, Prometheus text format) or 403 saying how to get access."""
    if not allowed(request):
        return HttpResponse(REFUSED, status=403, content_type="text/plain; charset=utf-8")
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
