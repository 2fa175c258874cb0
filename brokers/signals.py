"""Tell feed workers when an account is saved (a new token, say): a Redis message carrying
the account's name — never its secrets — published once the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from .connections import sync_client
from .models import BrokerAccount

logger = logging.getLogger(__name__)
ACCOUNT_SAVED = "optionsite:account-saved"


def announce(name: str) -> None:
    """Publish that account ``name`` changed. Redis down: the feed notices on its next
    reconnect instead, which is said in the log."""
    try:
        sync_client().publish(ACCOUNT_SAVED, name)
    except RedisError as exc:
        logger.warning(
            "Could not announce that account %s changed (%s): its feed picks the change up "
            "at its next reconnect",
            name,
            exc,
        )


@receiver(post_save, sender=BrokerAccount, dispatch_uid="brokers.announce_account_saved")
def account_saved(sender: Any, instance: BrokerAccount, **kwargs: Any) -> None:
    transaction.on_commit(lambda: announce(instance.name))
