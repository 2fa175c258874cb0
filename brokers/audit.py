"""Admin history (``django.contrib.admin.models.LogEntry``) for what happens to a broker
account outside its change form: OAuth logins, token notifications, token renewals and
expiries, admin actions.

Every entry names a user. Events no person caused (the ``check tokens`` task's renewals and
expiries, notifications refused before any request matched) are attributed to the system user
``optionsite-system``: an inactive account with an unusable password that cannot log in,
created the first time it is needed. Messages never carry a secret: callers pass what
happened, never a token, an API secret, a code or the notifier URL.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model

from .models import BrokerAccount

SYSTEM_USERNAME = "optionsite-system"


def system_user() -> Any:
    """The inactive user that history entries of unattended events name (created on demand)."""
    model = get_user_model()
    user, created = model.objects.get_or_create(
        **{model.USERNAME_FIELD: SYSTEM_USERNAME}, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def account_history(*, account: BrokerAccount, message: str, user: Any = None) -> LogEntry:
    """Write an admin history entry "changed" on ``account`` with ``message``, naming ``user``
    (None or an anonymous user: the system user). Returns the entry."""
    if user is None or not getattr(user, "is_authenticated", False):
        user = system_user()
    entry: LogEntry = LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[account],
        action_flag=CHANGE,
        change_message=message[:2000],
        single_object=True,
    )
    return entry
