"""Admin for broker accounts, instruments, tracked chains and exchange holidays.

Secrets are write-only: the form has empty password inputs (blank = unchanged) and a "clear"
box; a saved secret is never rendered back, not even partly.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from . import staff_devices, upstox_login
from .audit import account_history
from .endpoints import (
    ENDPOINT_FIELDS,
    EndpointChange,
    account_url_problems,
    secrets_clear_on_endpoint_change,
)
from .exceptions import (
    InstrumentFileError,
    InstrumentLoadError,
    LoginError,
    SecretDecryptionError,
)
from .fields import secret_state
from .loading import instruments_load, open_master
from .masters import KeepFilter
from .models import BrokerAccount, ExchangeHoliday, Instrument, TrackedChain
from .registry import REGISTRY, BrokerSpec
from .secret import Secret

_SECRET_WIDGET = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


def _formfield(field: models.Field, **kwargs: Any) -> forms.Field | None:
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"  # a scheme-less host is an https URL
    return field.formfield(**kwargs)


def token_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT access token as an aware UTC datetime, read without
    verifying the signature (the broker verifies it; this only dates it); None when ``token``
    is not a JWT with a numeric ``exp``. Never logs or raises with the token in the message."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload["exp"] if isinstance(payload, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(exp, UTC)
    except (ValueError, KeyError, OverflowError, OSError):  # not a JWT or no usable exp
        return None


class BrokerAccountForm(forms.ModelForm):
    new_access_token = forms.CharField(
        label="Access token",
        required=False,
        strip=True,
        widget=_SECRET_WIDGET,
        help_text="Write-only. Leave blank to keep the stored token.",
    )
    clear_access_token = forms.BooleanField(label="Remove the stored access token", required=False)
    new_api_secret = forms.CharField(
        label="API secret",
        required=False,
        strip=True,
        widget=_SECRET_WIDGET,
        help_text="Upstox only. Write-only. Leave blank to keep the stored secret.",
    )
    clear_api_secret = forms.BooleanField(label="Remove the stored API secret", required=False)
    # Set by ``save``: what a change of endpoint removed (admin history and message say it).
    endpoint_change: EndpointChange | None = None

    class Meta:
        model = BrokerAccount
        formfield_callback = _formfield
        fields = [
            "name",
            "kind",
            "enabled",
            "client_id",
            "token_expires_at",
            "upstox_user_id",
            "rest_base_url",
            "feed_base_url",
            "login_base_url",
            "master_url",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ENDPOINT_FIELDS:
            field = self.fields.get(name)
            if field is None:
                continue  # read-only for this user
            field.help_text = (
                f"{field.help_text} Only hosts in BROKER_HOST_ALLOWLIST, over "
                f"{'wss' if name == 'feed_base_url' else 'https'}. Changing it removes the "
                "stored secrets: enter them again."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("access_token", "api_secret"):
            if data.get(f"new_{name}") and data.get(f"clear_{name}"):
                self.add_error(f"clear_{name}", "Either enter a new value or remove it, not both.")
        return data

    def save(self, commit: bool = True) -> BrokerAccount:
        account: BrokerAccount = super().save(commit=False)
        data = self.cleaned_data
        # A changed endpoint removes the stored secrets; the ones typed below are kept.
        self.endpoint_change = secrets_clear_on_endpoint_change(account)
        if data.get("new_access_token"):
            # A new token's expiry is its own: the JWT's ``exp`` (DhanHQ, Upstox), else the
            # expiry typed with it, else unknown until the next token check — never the
            # previous token's, which the form posts back unchanged.
            token = data["new_access_token"]
            expires = token_expiry(token)
            if expires is None and "token_expires_at" in self.changed_data:
                expires = data["token_expires_at"]
            account.set_access_token(token, expires_at=expires)
        elif data.get("clear_access_token"):
            account.set_access_token("")
        if data.get("new_api_secret"):
            account.api_secret = Secret(data["new_api_secret"])
        elif data.get("clear_api_secret"):
            account.api_secret = Secret("")
        if commit:
            account.save()
        return account


@admin.action(
    description="Load instrument master (download from the account's master URL)",
    permissions=["change"],
)
def load_instrument_master(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BrokerAccount]
) -> None:
    keep = KeepFilter(
        kinds=frozenset(settings.INSTRUMENT_KINDS),
        underlyings=frozenset(settings.INSTRUMENT_UNDERLYINGS) or None,
    )
    for account in queryset:
        try:
            # The master URL is checked against BROKER_HOST_ALLOWLIST here (InstrumentLoadError).
            url = account.effective_master_url()
            with open_master(url=url) as (stream, name):
                report = instruments_load(
                    account=account, stream=stream, source_name=name, keep=keep
                )
        except (InstrumentFileError, InstrumentLoadError) as exc:
            message = f"{account.name}: instrument master not loaded — {exc}"
            account_history(account=account, user=request.user, message=message)
            modeladmin.message_user(request, message, level=messages.ERROR)
            continue
        summary = report.summary_lines()[0]
        account_history(
            account=account, user=request.user, message=f"Loaded the instrument master: {summary}"
        )
        modeladmin.message_user(request, summary, level=messages.SUCCESS)


@admin.action(
    description="Request an Upstox token (approve it in the Upstox app)", permissions=["change"]
)
def request_upstox_token(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BrokerAccount]
) -> None:
    for account in queryset:
        try:
            pending = upstox_login.request_token(account, user=request.user)
        except (LoginError, SecretDecryptionError) as exc:  # an unreadable API secret says so
            account_history(
                account=account, user=request.user, message=f"Token request failed: {exc}"
            )
            modeladmin.message_user(request, str(exc), level=messages.ERROR)
            continue
        until = timezone.localtime(pending.valid_until).strftime("%H:%M")
        account_history(
            account=account,
            user=request.user,
            message=f"Requested an Upstox token: the notifier accepts one token for it until "
            f"{until} IST.",
        )
        modeladmin.message_user(
            request,
            f"{account.name}: approve the token request in the Upstox app before {until} IST; "
            "the token then arrives at the account's notifier URL (the one registered with "
            "the Upstox app).",
            level=messages.SUCCESS,
        )


# The new notifier URLs are rendered into this one answer, never into a message (messages may
# be kept in a cookie) or a stored page: only their hashes are kept.
_NOTIFIER_URLS_PAGE = Template(
    """{% extends "admin/base_site.html" %}
{% block content %}
<p>Register it now as the notifier (webhook) URL of your Upstox app.
<strong>It is shown only this once</strong>: only a hash of it is stored. The previous URL no
longer works; to get another, run the action again.</p>
<table>
{% for name, url in urls %}<tr><th>{{ name }}</th><td><code>{{ url }}</code></td></tr>{% endfor %}
</table>
<p><a href="{{ back }}">Back to broker accounts</a></p>
{% endblock %}"""
)


@admin.action(
    description="Create a new Upstox notifier URL (shown once; the old one stops working)",
    permissions=["change"],
)
def rotate_notifier_url(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BrokerAccount]
) -> HttpResponse | None:
    urls = []
    for account in queryset:
        try:
            urls.append((account.name, upstox_login.rotate_notifier(account, user=request.user)))
        except LoginError as exc:
            modeladmin.message_user(request, str(exc), level=messages.ERROR)
    if not urls:
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "New Upstox notifier URL",
        "urls": urls,
        "back": reverse("admin:brokers_brokeraccount_changelist"),
    }
    response = HttpResponse(_NOTIFIER_URLS_PAGE.render(RequestContext(request, context)))
    add_never_cache_headers(response)
    return response


def _spec(obj: BrokerAccount) -> BrokerSpec | None:
    """The registry entry of the account's kind; None while no known kind is chosen (the add
    form; the model's validation names a kind nobody registered)."""
    return REGISTRY.get(obj.kind)


def _login_field(field: str) -> str:
    return "upstox_login_info" if field == "upstox_login" else field


def _login_html(obj: BrokerAccount, *, button: bool) -> str:
    """How the account logs in; ``button`` False: for a user without the change permission."""
    spec = _spec(obj)
    if spec is None:
        return "Choose the broker kind and save the account first."
    if spec.token.login_view is None:
        return (
            f"{spec.label} tokens are pasted above (or set by syncaccounts); they "
            f"{spec.token.lifetime}."
        )
    if obj.pk is None:
        return "Save the account first."
    notifier = (
        "set; it was shown once, when it was created (the action 'Create a new Upstox notifier "
        "URL' replaces it)"
        if obj.notifier_secret_hash
        else "none yet: run the action 'Create a new Upstox notifier URL' and register the URL "
        "it shows"
    )
    if button:
        action = format_html(
            '<a class="button" href="{}">Log in to Upstox</a>',
            reverse(spec.token.login_view, args=[obj.pk]),
        )
    else:
        action = "Logging in needs the change permission on broker accounts."
    return format_html(
        "{}<br>Register this redirect URI with your Upstox app: <code>{}</code><br>"
        "Notifier URL for token requests: {}",
        action,
        upstox_login.redirect_uri(),
        notifier,
    )


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    form = BrokerAccountForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "kind",
        "enabled",
        "status_badge",
        "token_present",
        "token_expires_at",
        "last_checked_at",
        "last_error_short",
    ]
    list_filter = ["kind", "enabled", "status"]
    search_fields = ["name", "client_id"]
    readonly_fields = [
        "status",
        "secrets_state",
        "token_left",
        "upstox_login",
        "upstox_login_info",
        "last_error",
        "last_checked_at",
        "effective_urls",
    ]
    actions = [load_instrument_master, request_upstox_token, rotate_notifier_url]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "client_id"]}),
        (
            "Secrets (write-only)",
            {
                "fields": [
                    "secrets_state",
                    "token_left",
                    "new_access_token",
                    "clear_access_token",
                    "token_expires_at",
                    "new_api_secret",
                    "clear_api_secret",
                ]
            },
        ),
        (
            "Upstox daily login",
            {
                "description": "Upstox tokens expire every day at 03:30 IST.",
                "fields": ["upstox_login", "upstox_user_id"],
            },
        ),
        ("Health", {"fields": ["status", "last_checked_at", "last_error"]}),
        (
            "Endpoints (blank = the broker's real hosts)",
            {
                "classes": ["collapse"],
                "fields": [
                    "effective_urls",
                    "rest_base_url",
                    "feed_base_url",
                    "login_base_url",
                    "master_url",
                ],
            },
        ),
    ]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: BrokerAccount) -> str:
        # A class, not a style attribute: the Content-Security-Policy refuses inline styles.
        state = "ok" if obj.status == "ok" else "error"
        return format_html(
            '<strong class="account-status {}">{}</strong>', state, obj.get_status_display()
        )

    @admin.display(description="Token", boolean=True)
    def token_present(self, obj: BrokerAccount) -> bool:
        return obj.has_token and not obj.token_expired()

    @admin.display(description="Last error")
    def last_error_short(self, obj: BrokerAccount) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:77] + "…"

    @admin.display(description="Stored secrets")
    def secrets_state(self, obj: BrokerAccount) -> str:
        token = secret_state(obj.access_token)
        if obj.has_token and obj.token_expires_at:
            when = timezone.localtime(obj.token_expires_at).strftime("%d %b %Y %H:%M %Z")
            token += f", {'expired' if obj.token_expired() else 'expires'} {when}"
        parts = [f"access token: {token}"]
        spec = _spec(obj)
        if spec:
            for field in spec.secret_fields:
                parts.append(f"{spec.field_labels[field]}: {secret_state(getattr(obj, field))}")
        return "; ".join(parts)

    @admin.display(description="Token valid for")
    def token_left(self, obj: BrokerAccount) -> str:
        if not obj.has_token:
            return "no token"
        if obj.token_expires_at is None:
            return "unknown (the broker did not say)"
        left = obj.token_expires_at - timezone.now()
        when = timezone.localtime(obj.token_expires_at).strftime("%d %b %H:%M %Z")
        if left.total_seconds() <= 0:
            return f"expired at {when}: an admin must log in again"
        hours, rest = divmod(int(left.total_seconds()), 3600)
        return f"{hours}h {rest // 60}m (login needed by {when})"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        # Without the change permission: the login facts, without a button that would 403.
        return [
            (title, {**options, "fields": [_login_field(f) for f in options["fields"]]})
            for title, options in fieldsets
        ]

    @admin.display(description="Log in")
    def upstox_login(self, obj: BrokerAccount) -> str:
        return _login_html(obj, button=True)

    @admin.display(description="Log in")
    def upstox_login_info(self, obj: BrokerAccount) -> str:
        return _login_html(obj, button=False)

    @admin.display(description="Endpoints in use")
    def effective_urls(self, obj: BrokerAccount) -> str:
        if not obj.kind or obj.kind not in REGISTRY:
            return "-"
        refused = account_url_problems(obj, effective=True)
        return format_html(
            "REST {}<br>feed {}<br>login {}<br>master {}{}",
            obj.effective_rest_base_url(checked=False),
            obj.effective_feed_base_url(checked=False),
            obj.effective_login_base_url(checked=False),
            obj.effective_master_url(checked=False),
            format_html("<br><strong>Refused, not used:</strong> {}", " ".join(refused.values()))
            if refused
            else "",
        )

    def save_model(
        self, request: HttpRequest, obj: BrokerAccount, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        endpoint_change = getattr(form, "endpoint_change", None)
        if endpoint_change is not None and endpoint_change.removed:
            self.message_user(
                request,
                f"{obj.name}: {endpoint_change.history_text()} Enter them again below.",
                level=messages.WARNING,
            )

    def construct_change_message(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, add: bool = False
    ) -> Any:
        """Admin's own change record, plus a sentence when a changed endpoint removed the
        stored secrets (the entry names the user, as every admin change does)."""
        message = super().construct_change_message(request, form, formsets, add)
        endpoint_change = getattr(form, "endpoint_change", None)
        if endpoint_change is None or not endpoint_change.removed:
            return message
        from django.contrib.admin.models import LogEntry

        changed = LogEntry(change_message=json.dumps(message)).get_change_message()
        return f"{changed} {endpoint_change.history_text()}".strip()


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = [
        "trading_symbol",
        "account",
        "segment",
        "broker_id",
        "kind",
        "underlying",
        "expiry",
        "strike",
        "option_type",
        "lot_size",
        "tick_size",
    ]
    list_filter = [
        "account",
        "kind",
        ("underlying", admin.AllValuesFieldListFilter),
        ("expiry", admin.AllValuesFieldListFilter),
        "option_type",
    ]
    search_fields = ["trading_symbol", "broker_id", "underlying"]
    list_select_related = ["account"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # instruments come from the broker's master (loadinstruments)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TrackedChain)
class TrackedChainAdmin(admin.ModelAdmin):
    list_display = [
        "underlying",
        "account",
        "index_instrument",
        "expiries",
        "strike_window",
        "enabled",
    ]
    list_filter = ["account", "enabled"]
    search_fields = ["underlying"]
    autocomplete_fields = ["index_instrument"]


class HolidayYearFilter(admin.SimpleListFilter):
    title = "year"
    parameter_name = "year"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        years = ExchangeHoliday.objects.dates("date", "year", order="DESC")
        return [(str(d.year), str(d.year)) for d in years]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()  # a hand-made URL: no year matches
        return queryset.filter(date__year=int(value))


@admin.register(ExchangeHoliday)
class ExchangeHolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "weekday", "exchange", "name", "confirmed", "source"]
    list_filter = ["exchange", HolidayYearFilter]
    search_fields = ["name", "source"]
    date_hierarchy = "date"
    ordering = ["-date", "exchange"]

    @admin.display(description="Day")
    def weekday(self, obj: ExchangeHoliday) -> str:
        return obj.date.strftime("%A")

    @admin.display(description="Confirmed", boolean=True)
    def confirmed(self, obj: ExchangeHoliday) -> bool:
        return obj.confirmed


# Staff's second factors: each user sees their own devices (brokers.staff_devices).
staff_devices.register(admin.site)
