"""The one access rule for chain pages, the JSON API and the WebSocket."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def may_view_chains(user: Any) -> bool:
    """True when ``user`` may see chains: anyone if CHAINS_PUBLIC, else a logged-in user."""
    return bool(settings.CHAINS_PUBLIC or (user is not None and user.is_authenticated))
