"""Which broker URLs may be used: the one place that decides.

Broker credentials travel to an account's endpoints (REST, feed, login, instrument master) and
to the feed address a broker hands out (Upstox's authorize answer), so each of those URLs must
pass ``EndpointPolicy.check`` before anything is sent to it:

- it is absolute, names a host (a DNS name or an IP literal) and carries no ``user:password@``
  part (credentials are sent by this product, never stored in a URL);
- its host matches ``BROKER_HOST_ALLOWLIST``: an exact host, or ``.example.com`` for that domain
  and its subdomains (as in ALLOWED_HOSTS; there is no wildcard);
- outside DEBUG its scheme is ``https://`` (REST, login, master) or ``wss://`` (feed). Plain
  ``http://``/``ws://`` is allowed outside DEBUG only to a loopback host (127.0.0.0/8, ::1,
  localhost) that is also allowlisted: such traffic never leaves the machine (the local
  simulator in the tests and the demo).

Where it is enforced: ``BrokerAccount.clean()`` (admin refuses the URL), the system check
``brokers.E010`` (a URL written to the database directly is reported at ``check --database``),
and at every use: the account's ``effective_*_url()`` getters, ``brokers.accounts.load_account``
(feed, token check, REST repopulate: the account is marked ``error``) and the Upstox adapter for
the feed URI its authorize call returns.

Changing where an account's requests go removes its stored secrets
(``secrets_clear_on_endpoint_change``, run on every save), so a saved secret never follows a
changed URL: they must be entered again.

The policy itself is pure Python (adapters receive it in their ``AccountConfig``); only
``current_policy`` reads Django's settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.db.models.signals import pre_save

from .exceptions import EndpointRefused, SecretDecryptionError
from .secret import Secret

if TYPE_CHECKING:
    from .models import BrokerAccount

SETTING = "BROKER_HOST_ALLOWLIST"
# The default of BROKER_HOST_ALLOWLIST (optionsite/settings.py): the brokers' real hosts.
BROKER_HOSTS = (".dhan.co", ".upstox.com")

REST_BASE_URL = "rest_base_url"
FEED_BASE_URL = "feed_base_url"
LOGIN_BASE_URL = "login_base_url"
MASTER_URL = "master_url"
ENDPOINT_FIELDS = (REST_BASE_URL, FEED_BASE_URL, LOGIN_BASE_URL, MASTER_URL)
# Not an account field: the single-use feed address in a broker's authorize answer.
AUTHORIZED_FEED_URI = "the feed URI in the broker's authorize answer"

_WEBSOCKET = frozenset({FEED_BASE_URL, AUTHORIZED_FEED_URI})
_LOOPBACK_NAMES = frozenset({"localhost"})
# A DNS name as resolvers read it: letters, digits and inner hyphens per label. Anything else
# (a backslash, '%', '_') could be read as another host by another URL parser.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses that never leave the machine."""
    host = _normal_host(host)
    address = _ip(host)
    return address.is_loopback if address is not None else host in _LOOPBACK_NAMES


def host_matches(host: str, allowlist: Iterable[str]) -> bool:
    """True when ``host`` equals an entry, or an entry ``.domain`` is its domain or a parent."""
    host = _normal_host(host)
    for entry in allowlist:
        pattern = _normal_host(entry.strip()).removeprefix("[").removesuffix("]")  # [::1]
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif pattern and host == pattern:
            return True
    return False


def allowlist_problems(allowlist: Iterable[str]) -> list[str]:
    """Entries of BROKER_HOST_ALLOWLIST that cannot mean a host (each with why)."""
    problems = []
    for entry in allowlist:
        name = _normal_host(entry.strip()).removeprefix(".")
        if not name:
            problems.append(f"{entry!r} is empty")
        elif "*" in entry:
            problems.append(f"{entry!r}: there is no wildcard, list each broker host or domain")
        elif _ip(name.strip("[]")) is None and not _DNS_NAME.fullmatch(name):
            problems.append(f"{entry!r} is not a host name, '.domain' or IP address")
    return problems


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """The rules in force: the allowed hosts and whether DEBUG is on (see the module doc)."""

    allowlist: tuple[str, ...] = BROKER_HOSTS
    debug: bool = False

    def host_allowed(self, host: str) -> bool:
        """True when ``host`` is in the allowlist (exactly, or under a ``.domain`` entry)."""
        return host_matches(host, self.allowlist)

    def problem(self, url: str, *, field: str) -> str | None:
        """Why ``url`` may not be used as ``field`` (a sentence saying what to do), or None.

        The sentence names the host, never the whole URL (it may carry a code or a password).
        """
        secure, plain = ("wss", "ws") if field in _WEBSOCKET else ("https", "http")
        if any(c.isspace() or ord(c) < 32 for c in url):
            return f"{field} contains spaces or control characters: enter a plain URL."
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in (secure, plain):
            return f"{field} must be a {secure}:// URL (got {scheme or 'no'} scheme)."
        if "@" in parts.netloc:
            return (
                f"{field} must not contain a user name or password ('user:pass@'): enter the "
                "credentials in their own fields, never in a URL."
            )
        if parts.fragment or url.endswith("#"):
            return f"{field} must not contain a '#' fragment: enter a plain URL."
        if (parts.query or url.endswith("?")) and field != AUTHORIZED_FEED_URI:
            # Queries are added by the code that uses a base URL (the DhanHQ feed's carries the
            # token); one typed into a base URL would be garbled into theirs.
            return f"{field} must not contain a '?' query: enter the URL without one."
        host = parts.hostname or ""
        try:
            parts.port  # noqa: B018 - a bad port raises ValueError here
        except ValueError:
            return f"{field} has an invalid port."
        if not host:
            return f"{field} has no host: enter a full URL such as {secure}://api.example.com."
        if _ip(host) is None and not _DNS_NAME.fullmatch(_normal_host(host)):
            return f"{field} host {host!r} is not a valid host name."
        if not self.host_allowed(host):
            return (
                f"{field} host {_normal_host(host)!r} is not in {SETTING}: add it there if "
                "this is really your broker's host."
            )
        if scheme == plain and not self.debug and not is_loopback(host):
            return (
                f"{field} must use {secure}:// (got {plain}://): outside DEBUG, plain {plain} is "
                "allowed only to a loopback host (127.0.0.1, ::1, localhost) such as the local "
                "simulator."
            )
        return None

    def check(self, url: str, *, field: str, broker: str) -> None:
        """Return when ``url`` may be used as ``field``; raise EndpointRefused otherwise."""
        problem = self.problem(url, field=field)
        if problem is not None:
            raise EndpointRefused(problem, broker=broker)


def current_policy() -> EndpointPolicy:
    """The policy of the settings in force (BROKER_HOST_ALLOWLIST, DEBUG)."""
    from django.conf import settings

    return EndpointPolicy(tuple(settings.BROKER_HOST_ALLOWLIST), bool(settings.DEBUG))


def host_allowed(host: str) -> bool:
    """True when ``host`` is in BROKER_HOST_ALLOWLIST."""
    return current_policy().host_allowed(host)


def check_broker_url(url: str, *, field: str, broker: str, debug: bool | None = None) -> None:
    """Raise EndpointRefused (permanent, the message names the setting or the rule) unless
    ``url`` may be used as ``field`` under BROKER_HOST_ALLOWLIST and DEBUG (or ``debug``)."""
    policy = current_policy()
    if debug is not None:
        policy = EndpointPolicy(policy.allowlist, debug)
    policy.check(url, field=field, broker=broker)


def account_url_problems(
    account: BrokerAccount, *, effective: bool, policy: EndpointPolicy | None = None
) -> dict[str, str]:
    """Endpoint field → why its URL is refused, for ``account``.

    ``effective`` False checks the URLs typed in the account (blank ones are skipped);
    True checks the URLs in use (a blank field means the broker's real host).
    """
    from .registry import REGISTRY

    policy = policy or current_policy()
    spec = REGISTRY.get(account.kind)
    problems = {}
    for field in ENDPOINT_FIELDS:
        url = getattr(account, field)
        if not url and effective and spec is not None:
            url = getattr(spec, field)
        if url:
            problem = policy.problem(url, field=field)
            if problem is not None:
                problems[field] = problem
    return problems


# --- a changed endpoint removes the stored secrets -------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """What ``secrets_clear_on_endpoint_change`` found: the endpoint fields whose URL in use
    changed, and the human names of the stored secrets it removed."""

    fields: tuple[str, ...]
    removed: tuple[str, ...]

    def history_text(self) -> str:
        """A sentence for admin history (never a secret or a URL)."""
        what = " and ".join(self.removed)
        return (
            f"Endpoint changed ({', '.join(self.fields)}): the stored {what} "
            f"{'was' if len(self.removed) == 1 else 'were'} removed and must be entered again."
        )


def _in_use(account: BrokerAccount, field: str) -> str:
    from .registry import REGISTRY

    spec = REGISTRY.get(account.kind)
    return str(getattr(account, field) or (getattr(spec, field) if spec is not None else ""))


def secrets_clear_on_endpoint_change(account: BrokerAccount) -> EndpointChange | None:
    """Compare ``account`` with its stored row; when a URL in use changed (an endpoint field,
    or the kind whose real hosts a blank field means), remove every secret it still carries
    unchanged from the row — access token (with its expiry; status → token missing) and API
    secret — so that no saved secret is sent to the new address. A secret typed together with
    the change is the user's new one and stays. Not saved.

    Returns None for a new account or unchanged endpoints, else what changed and was removed.
    """
    from .models import BrokerAccount
    from .registry import REGISTRY

    if account.pk is None:
        return None
    stored = BrokerAccount.objects.filter(pk=account.pk).first()
    if stored is None:
        return None
    fields = tuple(f for f in ENDPOINT_FIELDS if _in_use(stored, f) != _in_use(account, f))
    if not fields:
        return None
    spec = REGISTRY.get(stored.kind)
    labels = dict(spec.field_labels) if spec is not None else {}
    removed = []
    if _unchanged(account.access_token, stored.access_token):
        account.set_access_token("")
        removed.append(labels.get("access_token", "access token"))
    if _unchanged(account.api_secret, stored.api_secret):
        account.api_secret = Secret("")
        removed.append(labels.get("api_secret", "API secret"))
    change = EndpointChange(fields, tuple(removed))
    if removed:
        account.last_error = (
            f"{change.history_text()} Enter them in admin → Broker accounts → {account.name}."
        )
    return change


def _unchanged(current: Secret, stored: Secret) -> bool:
    """True when ``current`` is a secret and the same as the stored one."""
    if not current:
        return False
    try:
        return current == stored
    except SecretDecryptionError:
        return True  # the stored one cannot even be read: it goes too (it is no loss)


# What removing the secrets changes on the account (``set_access_token("")`` and the message).
_CLEARED_FIELDS = (
    "access_token",
    "api_secret",
    "token_expires_at",
    "token_issued_at",
    "status",
    "last_error",
)


def _clear_on_save(sender: Any, instance: BrokerAccount, **kwargs: Any) -> None:
    """Every save path (admin, commands, shell): a changed endpoint removes stored secrets."""
    if kwargs.get("raw"):
        return  # loaddata writes rows as they are
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not {*ENDPOINT_FIELDS, "kind"} & set(update_fields):
        return
    change = secrets_clear_on_endpoint_change(instance)
    if change is not None and change.removed and update_fields is not None:
        # A partial save would write the new URL but keep the old secrets: remove them too.
        missing = [f for f in _CLEARED_FIELDS if f not in update_fields and hasattr(instance, f)]
        type(instance).objects.filter(pk=instance.pk).update(
            **{f: getattr(instance, f) for f in missing}
        )


pre_save.connect(
    _clear_on_save, sender="brokers.BrokerAccount", dispatch_uid="brokers.endpoint_secrets"
)
