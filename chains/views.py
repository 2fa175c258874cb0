"""Chain pages (the chain views arrive with the chain book)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from brokers.models import TrackedChain


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The tracked chains, with the account that feeds each."""
    chains = TrackedChain.objects.select_related("account").order_by("underlying", "account__name")
    return render(request, "chains/index.html", {"chains": chains})
