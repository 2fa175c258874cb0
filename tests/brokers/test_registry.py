"""One registry entry per broker kind holds all kind-specific knowledge; unknown kinds are refused;
product code outside a broker's own folder never branches on a kind."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from django.urls import reverse

from brokers.adapters import AccountConfig, FeedAdapter, account_status_for, adapter_for
from brokers.exceptions import BrokerError, UnknownBrokerKind
from brokers.fields import EncryptedSecretField
from brokers.models import AccountStatus, BrokerAccount, BrokerKind
from brokers.ratelimit import Window
from brokers.registry import REGISTRY, BrokerSpec, TokenSpec, get_spec, kind_choices
from brokers.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("brokers", "chains", "optionsite", "templates")
# Where kind-specific code belongs: a broker's own folder, the registry, the simulator (which
# plays both brokers) and migrations (history).
KIND_HOMES = ("brokers/dhan/", "brokers/upstox/", "brokers/registry.py", "brokers/simulator/")
# Modules that are one broker's feature end to end: their kind checks are guards, not branches.
KIND_MODULES = {
    # Upstox's OAuth login and token notifier (Django views' service): it refuses accounts
    # that are not Upstox accounts.
    "brokers/upstox_login.py",
}

_LITERAL = "[\"'](?:" + "|".join(map(re.escape, REGISTRY)) + ")[\"']"
_ADAPTERS = "|".join(spec.adapter.__name__ for spec in REGISTRY.values())
KIND_BRANCH = re.compile(
    rf"(?:==|!=)\s*{_LITERAL}"  # account.kind == "upstox"
    rf"|{_LITERAL}\s*(?:==|!=)"  # "upstox" == account.kind
    rf"|\bin\s*[(\[{{][^)\]}}]*{_LITERAL}"  # kind in ("dhan", "upstox")
    rf"|\bcase\s+{_LITERAL}"  # match kind: case "dhan":
    rf"|[{{,]\s*{_LITERAL}\s*:"  # {"dhan": ..., "upstox": ...}: a second registry
    r"|(?:==|!=|\bin)\s*BrokerKind\.[A-Z_]+"  # kind != BrokerKind.UPSTOX
    r"|BrokerKind\.[A-Z_]+\s*(?:==|!=)"
    rf"|\b(?:{_ADAPTERS})\b"  # isinstance(adapter, DhanAdapter), DhanAdapter.method(...)
    r"|\bKIND_[A-Z_]+"  # KIND_DHAN-style constants
)


def _product_files() -> list[Path]:
    files = []
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix not in {".py", ".html"} or "/migrations/" in rel:
                continue
            if rel.startswith(KIND_HOMES) or rel in KIND_MODULES:
                continue
            files.append(path)
    return files


def kind_branches(files: list[Path], *, root: Path = ROOT) -> list[str]:
    """``file:line: text`` of every line in ``files`` that branches on a broker kind."""
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if KIND_BRANCH.search(line):
                rel = path.relative_to(root).as_posix()
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_product_code_never_branches_on_a_broker_kind():
    files = _product_files()
    assert len(files) > 30  # the walk found the product
    branches = kind_branches(files)
    assert not branches, (
        "Kind-specific code outside brokers/<kind>/ and brokers/registry.py — look the kind up "
        "with brokers.registry.get_spec (add a BrokerSpec field) or add an adapter method:\n"
        + "\n".join(branches)
    )


@pytest.mark.parametrize(
    "line",
    [
        'if account.kind == "upstox":',
        "how = 'x' if obj.kind != 'dhan' else 'y'",
        'if kind in ("dhan", "upstox"):',
        '    case "dhan":',
        'ADAPTERS = {"dhan": A, "upstox": B}',
        "if account.kind != BrokerKind.UPSTOX:",
        "if isinstance(adapter, DhanAdapter):",
        "status = UpstoxAdapter.disconnect_status(code)",
        "KIND_DHAN = 1",
    ],
)
def test_the_branch_finder_reports_each_form_of_kind_branch_with_its_place(line, tmp_path):
    path = tmp_path / "chains" / "views.py"
    path.parent.mkdir()
    path.write_text(f"x = 1\n{line}\n", encoding="utf-8")
    assert kind_branches([path], root=tmp_path) == [f"chains/views.py:2: {line.strip()}"]


@pytest.mark.parametrize(
    "line",
    [
        "spec = get_spec(account.kind)",
        "if obj.kind not in REGISTRY:",
        "if index.kind != InstrumentKind.INDEX:",
        'account = BrokerAccount(name=name, kind="dhan")',
        'changes.append("client id")',
    ],
)
def test_the_branch_finder_leaves_registry_lookups_alone(line):
    assert not KIND_BRANCH.search(line), line


# --- the registry -----------------------------------------------------------------------------

OPTIONAL_EMPTY = {"secret_fields", "disconnect_statuses"}  # a broker may have none


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_has_every_field(kind):
    spec = REGISTRY[kind]
    assert isinstance(spec, BrokerSpec) and spec.kind == kind
    for field in dataclasses.fields(BrokerSpec):
        value = getattr(spec, field.name)
        if field.name not in OPTIONAL_EMPTY:
            assert value not in ("", None, (), {}), f"{kind}: {field.name} is empty"
    for field in dataclasses.fields(TokenSpec):
        if field.name not in {"renewable", "login_view"}:
            assert getattr(spec.token, field.name), f"{kind}: token.{field.name} is empty"


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_is_consistent_with_its_adapter_and_the_account_model(kind):
    spec = REGISTRY[kind]
    assert issubclass(spec.adapter, FeedAdapter) and spec.adapter.kind == kind
    # Renewable exactly when the adapter implements renew_token.
    assert spec.token.renewable == (spec.adapter.renew_token is not FeedAdapter.renew_token)
    model_fields = {f.name: f for f in BrokerAccount._meta.get_fields()}
    for name in (*spec.required_static, *spec.secret_fields, "access_token"):
        assert name in model_fields and name in spec.field_labels
    for name in spec.secret_fields:
        assert isinstance(model_fields[name], EncryptedSecretField)
    statuses = {*spec.disconnect_statuses.values(), *spec.error_statuses.values()}
    assert statuses <= set(AccountStatus.values)
    assert all(isinstance(w, Window) for windows in spec.rate_limits.values() for w in windows)
    assert spec.rest_base_url.startswith("https://") and spec.feed_base_url.startswith("wss://")
    assert callable(spec.parse_master)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_token_words_name_the_place_and_the_account(kind):
    token = REGISTRY[kind].token
    for words in (
        token.how_to_get(admin="admin → Broker accounts", name="main"),
        token.how_to_replace(admin="admin → Broker accounts", name="main"),
    ):
        assert "admin → Broker accounts → main" in words and "{" not in words
    if token.login_view is not None:
        assert reverse(token.login_view, args=[1])


def test_model_choices_and_named_kinds_come_from_the_registry():
    assert BrokerAccount._meta.get_field("kind").choices == kind_choices()
    assert [kind for kind, _label in kind_choices()] == list(REGISTRY)
    for member in BrokerKind:
        assert get_spec(member.value).label == member.label


def test_unknown_kind_is_refused_naming_the_known_ones():
    with pytest.raises(UnknownBrokerKind) as refused:
        get_spec("zerodha")
    message = str(refused.value)
    assert "'zerodha'" in message and all(kind in message for kind in REGISTRY)


def test_adapter_for_an_unknown_kind_is_refused():
    config = AccountConfig("main", "zerodha", "1", Secret("t"), "https://x", "wss://x")
    with pytest.raises(UnknownBrokerKind, match="known kinds are dhan, upstox"):
        adapter_for(config)


def test_a_refusal_from_an_unknown_broker_is_refused():
    with pytest.raises(UnknownBrokerKind, match="'zerodha'"):
        account_status_for(BrokerError("no", broker="zerodha", permanent=True, code="X"))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(REGISTRY))
async def test_adapter_for_builds_the_registered_adapter(kind):
    config = AccountConfig("main", kind, "1", Secret("t"), "https://x", "wss://x")
    adapter = adapter_for(config)
    try:
        assert type(adapter) is REGISTRY[kind].adapter
    finally:
        await adapter.aclose()


# --- what the codes mean ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "code", "http_status", "status"),
    [
        ("dhan", "DH-902", 401, "error"),  # no data plan, whatever the HTTP status
        ("dhan", "806", None, "error"),
        ("dhan", "DH-901", None, "token_expired"),
        ("dhan", "DH-906", 401, "token_expired"),  # a 401 says the token expired
        ("dhan", "DH-906", 400, "auth_failed"),
        ("dhan", "no-token", None, "auth_failed"),
        ("dhan", "DH-904", 429, None),  # a rate limit is not about the account
        ("upstox", "UDAPI100050", 401, "token_expired"),
        ("upstox", "UDAPI100016", 400, "auth_failed"),
        ("upstox", "no-token", None, "auth_failed"),
        ("upstox", None, 401, "token_expired"),
        ("upstox", "UDAPI10005", 429, None),
    ],
)
def test_account_status_of_a_refusal(broker, code, http_status, status):
    error = BrokerError("x", broker=broker, permanent=True, code=code, http_status=http_status)
    assert account_status_for(error) == status


@pytest.mark.parametrize(
    ("code", "status"),
    [(807, "token_expired"), (808, "auth_failed"), (806, "error"), (804, "error"), (805, None)],
)
def test_dhan_disconnect_codes_mean_an_account_status_or_a_reconnect(code, status):
    assert get_spec("dhan").disconnect_status(code) == status


def test_upstox_has_no_disconnect_codes():
    assert get_spec("upstox").disconnect_status(807) is None
