"""Broker accounts, instruments, tracked chains and exchange trading holidays."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from . import endpoints
from .exceptions import EndpointRefused, InstrumentLoadError, LoginError
from .exchange import Exchange
from .fields import EncryptedSecretField
from .registry import REGISTRY, get_spec, kind_choices
from .secret import Secret


class BrokerKind(models.TextChoices):
    """Names for code that means one kind (the simulator's accounts, the Upstox login, env
    sources); the kinds an account may have are the registry's (``kind_choices``)."""

    DHAN = "dhan", "DhanHQ"
    UPSTOX = "upstox", "Upstox"


class AccountStatus(models.TextChoices):
    OK = "ok", "OK"
    TOKEN_MISSING = "token_missing", "Token missing"
    TOKEN_EXPIRED = "token_expired", "Token expired"
    AUTH_FAILED = "auth_failed", "Authentication failed"
    ERROR = "error", "Error"


def new_notifier_secret() -> str:
    return secrets.token_urlsafe(32)


def notifier_secret_hash(secret: str) -> str:
    """The SHA-256 (hex) of a notifier path secret: what is stored instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class BrokerAccount(models.Model):
    """One login at a broker: credentials, endpoints and its last known health.

    Secrets (access token, API secret) are ``Secret`` objects encrypted at rest; they are
    never part of ``repr``/``str`` and admin never renders them.
    """

    name = models.SlugField(max_length=64, unique=True, help_text="Unique short name, e.g. 'main'.")
    kind = models.CharField(max_length=16, choices=kind_choices())
    enabled = models.BooleanField(default=True)
    client_id = models.CharField(
        max_length=128, blank=True, help_text="DhanHQ client id, or the Upstox API key."
    )
    access_token: Secret = EncryptedSecretField()
    api_secret: Secret = EncryptedSecretField(help_text="Upstox API secret (unused for DhanHQ).")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    token_issued_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the broker issued the stored token, when it said so (an older token "
        "sent to the Upstox notifier is refused); empty: unknown.",
    )
    upstox_user_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="Upstox user id (filled by the admin login): token notifications for another "
        "user are refused.",
    )
    notifier_secret_hash = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text="SHA-256 (hex) of the unguessable part of this account's Upstox notifier URL; "
        "the URL itself is shown once, when admin creates it (action 'Create a new Upstox "
        "notifier URL'). Empty: no notifier URL, every notification is refused.",
    )
    rest_base_url = models.URLField(blank=True, help_text="Blank: the broker's real REST host.")
    feed_base_url = models.CharField(
        max_length=200, blank=True, help_text="Blank: the broker's real feed host (ws/wss URL)."
    )
    login_base_url = models.URLField(blank=True, help_text="Blank: the broker's real login host.")
    master_url = models.URLField(
        max_length=300, blank=True, help_text="Blank: the broker's published instrument master."
    )
    status = models.CharField(
        max_length=16, choices=AccountStatus.choices, default=AccountStatus.TOKEN_MISSING
    )
    last_error = models.TextField(blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind and self.kind not in REGISTRY:
            raise ValidationError({"kind": f"Unknown broker kind {self.kind!r}."})
        # A host outside BROKER_HOST_ALLOWLIST, http/ws outside DEBUG (brokers.endpoints).
        refused = endpoints.account_url_problems(self, effective=False)
        if refused:
            raise ValidationError(refused)

    # --- endpoints -----------------------------------------------------------------------
    # Each getter returns the URL in use (blank: the broker's real host). ``checked`` (the
    # default) first applies brokers.endpoints (BROKER_HOST_ALLOWLIST, https/wss outside
    # DEBUG), so a URL written to the database past ``clean()`` is never used; only displays
    # and checks pass ``checked=False``.

    def _endpoint(self, field: str, *, checked: bool) -> str:
        url: str = getattr(self, field) or getattr(get_spec(self.kind), field)
        if checked:
            endpoints.check_broker_url(url, field=field, broker=self.kind)
        return url

    def effective_rest_base_url(self, *, checked: bool = True) -> str:
        """Raises EndpointRefused (a permanent BrokerError) when the URL is refused."""
        return self._endpoint(endpoints.REST_BASE_URL, checked=checked)

    def effective_feed_base_url(self, *, checked: bool = True) -> str:
        """Raises EndpointRefused (a permanent BrokerError) when the URL is refused."""
        return self._endpoint(endpoints.FEED_BASE_URL, checked=checked)

    def effective_login_base_url(self, *, checked: bool = True) -> str:
        """Raises LoginError (what a login's callers handle) when the URL is refused."""
        try:
            return self._endpoint(endpoints.LOGIN_BASE_URL, checked=checked)
        except EndpointRefused as exc:
            raise LoginError(f"Account '{self.name}': {exc.message}") from None

    def effective_master_url(self, *, checked: bool = True) -> str:
        """Raises InstrumentLoadError (what a master load's callers handle) when the URL is
        refused."""
        try:
            return self._endpoint(endpoints.MASTER_URL, checked=checked)
        except EndpointRefused as exc:
            raise InstrumentLoadError(f"Account '{self.name}': {exc.message}") from None

    # --- credentials ----------------------------------------------------------------------

    @property
    def has_token(self) -> bool:
        return bool(self.access_token)

    def missing_static_credentials(self) -> list[str]:
        """Human names of required credentials that are empty (besides the daily token)."""
        spec = get_spec(self.kind)
        return [spec.field_labels[f] for f in spec.required_static if not getattr(self, f)]

    def set_access_token(
        self, token: str, *, expires_at: object = None, issued_at: object = None
    ) -> None:
        """Store a new access token (not saved): resets a token-related failed status.
        ``issued_at`` None: the broker did not say when it issued the token."""
        self.access_token = Secret(token)
        self.token_expires_at = expires_at
        self.token_issued_at = issued_at
        if token:
            if self.status in {
                AccountStatus.TOKEN_MISSING,
                AccountStatus.TOKEN_EXPIRED,
                AccountStatus.AUTH_FAILED,
            }:
                self.status = AccountStatus.OK
                self.last_error = ""
        else:
            self.status = AccountStatus.TOKEN_MISSING

    def rotate_notifier_secret(self) -> str:
        """Give the account a new notifier path secret (not saved) and return it: only its
        hash is kept, so the caller shows it once; the previous notifier URL stops working."""
        secret = new_notifier_secret()
        self.notifier_secret_hash = notifier_secret_hash(secret)
        return secret

    def token_expired(self, *, now: object = None) -> bool:
        """True when the stored token has a known expiry that has passed."""
        if self.token_expires_at is None:
            return False
        return self.token_expires_at <= (now or timezone.now())


class TokenRequest(models.Model):
    """An Upstox v3 token request made from admin: the notifier accepts one token for it,
    while it is pending (not consumed) and within its validity window."""

    account = models.ForeignKey(
        BrokerAccount, on_delete=models.CASCADE, related_name="token_requests"
    )
    requested_at = models.DateTimeField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The admin user who asked for the token.",
    )
    valid_until = models.DateTimeField(
        help_text="The end of the approval window the broker gave (authorization_expiry)."
    )
    consumed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a notification was accepted for it (or it was superseded by a newer "
        "request); empty: pending.",
    )
    notification_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 (hex) of the accepted notification's body, to name a replay.",
    )

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["account", "consumed_at"], name="token_request_pending")]

    def __str__(self) -> str:
        return f"token request for {self.account_id and self.account.name} at {self.requested_at}"


class InstrumentKind(models.TextChoices):
    INDEX = "index", "Index"
    FUTURE = "future", "Future"
    OPTION = "option", "Option"


class OptionType(models.TextChoices):
    CALL = "CE", "Call"
    PUT = "PE", "Put"


class Instrument(models.Model):
    """One row of an account's instrument master (only what the product needs)."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="instruments")
    segment = models.CharField(max_length=16, help_text="Exchange segment as the broker names it.")
    broker_id = models.CharField(
        max_length=64, help_text="DhanHQ security id, or the Upstox instrument key."
    )
    trading_symbol = models.CharField(max_length=128)
    kind = models.CharField(max_length=8, choices=InstrumentKind.choices)
    underlying = models.CharField(max_length=32)
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    option_type = models.CharField(max_length=2, choices=OptionType.choices, blank=True)
    lot_size = models.PositiveIntegerField()
    tick_size = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="In rupees."
    )
    exchange_token = models.CharField(max_length=32, blank=True)
    load_generation = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_id"], name="instrument_unique_id"),
        ]
        indexes = [
            models.Index(
                fields=["account", "underlying", "expiry", "strike", "option_type"],
                name="instrument_chain_lookup",
            ),
            models.Index(fields=["account", "kind", "underlying"], name="instrument_kind_lookup"),
        ]
        ordering = ["underlying", "expiry", "strike", "option_type"]

    def __str__(self) -> str:
        return f"{self.trading_symbol} ({self.broker_id})"


class TrackedChain(models.Model):
    """An option chain the feed follows: an underlying's nearest expiries around ATM."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="chains")
    underlying = models.CharField(max_length=32, help_text="Symbol, e.g. NIFTY.")
    index_instrument = models.ForeignKey(
        Instrument,
        on_delete=models.PROTECT,
        related_name="tracked_chains",
        help_text="The underlying's index instrument (its spot price).",
    )
    expiries = models.PositiveSmallIntegerField(
        default=2, help_text="How many of the nearest expiries to follow."
    )
    strike_window = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Strikes on each side of ATM to follow; blank follows every strike.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "underlying"], name="tracked_chain_unique"),
            models.CheckConstraint(
                condition=models.Q(expiries__gte=1), name="tracked_chain_expiries_positive"
            ),
        ]
        ordering = ["underlying"]

    def __str__(self) -> str:
        return f"{self.underlying} @ {self.account_id and self.account.name}"

    def clean(self) -> None:
        self.underlying = self.underlying.strip().upper()
        if self.index_instrument_id is None or self.account_id is None:
            return
        index = self.index_instrument
        errors = {}
        if index.account_id != self.account_id:
            errors["index_instrument"] = "The index instrument belongs to another account."
        elif index.kind != InstrumentKind.INDEX:
            errors["index_instrument"] = "Choose an index instrument (kind 'index')."
        elif index.underlying != self.underlying:
            errors["index_instrument"] = (
                f"This is the index of {index.underlying}, not {self.underlying}."
            )
        if errors:
            raise ValidationError(errors)


class ExchangeHoliday(models.Model):
    """A weekday on which an exchange does not trade (its trading-holiday circular).

    ``brokers.calendar`` reads these rows for the pure calendar in ``brokers.exchange``:
    weekends need no row. A row without ``source`` is provisional (not yet in a circular).
    """

    exchange = models.CharField(
        max_length=8,
        choices=[(e.value, e.value) for e in Exchange],
        help_text="NSE and BSE publish their own lists; today they close on the same days.",
    )
    date = models.DateField()
    name = models.CharField(max_length=128, help_text="As the circular names it, e.g. 'Holi'.")
    source = models.CharField(
        max_length=200,
        blank=True,
        help_text="The exchange circular that declares this holiday, e.g. 'NSE/FAOP/71777'. "
        "Blank: provisional — confirm it against the exchange's circular for the year (NSE and "
        "BSE publish next year's list in December) and fill this in.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "date"], name="exchange_holiday_unique"),
        ]
        ordering = ["date", "exchange"]

    def __str__(self) -> str:
        return f"{self.exchange} {self.date.isoformat()} {self.name}"

    @property
    def confirmed(self) -> bool:
        """True when a circular is recorded for this holiday."""
        return bool(self.source)
