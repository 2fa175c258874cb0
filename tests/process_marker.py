"""Keeps the ``integration`` marker honest: a test that starts a process says so.

``make test-fast`` runs ``pytest -m "not integration"`` and must stay fast, so every test that
starts a subprocess — the simulator, runfeed, daphne, a Celery worker, a private redis-server,
Playwright's driver and Chromium, ``manage.py`` in a subprocess — carries
``@pytest.mark.integration`` (``browser`` and ``chaos`` imply it: they are added to it at
collection). This plugin, loaded by ``tests/conftest.py``, fails a test that does not:

- every ``subprocess.Popen`` (which asyncio's subprocesses and Playwright go through too) and
  every ``os.fork`` while a test's setup, call or teardown runs is recorded against that test,
  with the fixture that was being set up when it happened;
- a fixture seen starting a process is remembered for the session, so a later test that uses
  it (a session simulator already running, a module's redis-server) is held to the marker too.

The process is still started: the test's report is turned into a failure naming the missing
marker once its call (or, when setup failed, its teardown) is reported, so nothing a test or
fixture catches can hide the check. Tests of the check itself run pytest inside pytest; the
innermost running session is the one that judges a spawn.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

MARKER = "integration"
IMPLYING = ("browser", "chaos")  # markers that are kinds of integration tests


@dataclass(frozen=True)
class Spawn:
    """One process started while a test ran: what, in which phase, from which fixture."""

    what: str
    phase: str
    fixture: str | None


@dataclass
class Guard:
    """One pytest session's check: the running test and what the session has learnt."""

    item: pytest.Item | None = None
    phase: str = ""
    fixtures: list[str] = field(default_factory=list)  # fixtures being set up, innermost last
    process_fixtures: set[str] = field(default_factory=set)  # fixtures seen starting processes
    spawns: dict[str, list[Spawn]] = field(default_factory=dict)  # nodeid → spawns

    def record(self, what: str) -> None:
        if self.item is None:
            return
        fixture = self.fixtures[-1] if self.fixtures else None
        if fixture is not None:
            self.process_fixtures.add(fixture)
        self.spawns.setdefault(self.item.nodeid, []).append(Spawn(what, self.phase, fixture))


_guards: list[Guard] = []  # one per running session; the innermost (last) judges a spawn
_lock = threading.Lock()
_original_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
_guard_key = pytest.StashKey[Guard]()


def _describe(args: Any) -> str:
    argv = [os.fsdecode(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)]
    if argv and os.path.basename(argv[0]).startswith("python"):
        argv = ["python", *argv[1:]]
    text = " ".join(argv[:4])
    return text if len(argv) <= 4 else text + " …"


def _execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
    with _lock:
        guard = _guards[-1] if _guards else None
    if guard is not None:
        guard.record(_describe(args))
    return _original_execute_child(self, args, *rest, **kwargs)


def _before_fork() -> None:
    with _lock:
        guard = _guards[-1] if _guards else None
    if guard is not None:
        guard.record("os.fork()")


_fork_hook_registered = False


def pytest_configure(config: pytest.Config) -> None:
    global _fork_hook_registered
    guard = Guard()
    config.stash[_guard_key] = guard
    with _lock:
        _guards.append(guard)
        subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
        if not _fork_hook_registered:  # cannot be unregistered: it looks for a guard each time
            os.register_at_fork(before=_before_fork)
            _fork_hook_registered = True


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(_guard_key, None)
    with _lock:
        if guard in _guards:
            _guards.remove(guard)
        if not _guards:
            subprocess.Popen._execute_child = _original_execute_child  # type: ignore[attr-defined]


def marked(item: pytest.Item) -> bool:
    """True when ``item`` is allowed to start processes."""
    return item.get_closest_marker(MARKER) is not None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: browser and chaos are integration
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not marked(item) and any(item.get_closest_marker(name) for name in IMPLYING):
            item.add_marker(MARKER)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    guard = item.config.stash[_guard_key]
    guard.item = item
    try:
        return (yield)
    finally:
        guard.item = None
        guard.spawns.pop(item.nodeid, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    item.config.stash[_guard_key].phase = "setup"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    item.config.stash[_guard_key].phase = "call"
    item.stash[_called] = True
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    item.config.stash[_guard_key].phase = "teardown"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    guard = request.config.stash[_guard_key]
    guard.fixtures.append(fixturedef.argname)
    try:
        return (yield)
    finally:
        guard.fixtures.pop()


def violations(guard: Guard, item: pytest.Item, phases: tuple[str, ...]) -> list[str]:
    """Why ``item`` needed the marker: its spawns in ``phases`` and, once its setup has passed
    (``"call"`` in ``phases``), the fixtures it uses that were seen starting a process before.
    Empty when the item is marked."""
    if marked(item):
        return []
    spawns = guard.spawns.get(item.nodeid, [])
    found = [
        spawn.what + (f" (in fixture {spawn.fixture!r})" if spawn.fixture else f" ({spawn.phase})")
        for spawn in spawns
        if spawn.phase in phases
    ]
    if "call" in phases:
        started_here = {spawn.fixture for spawn in spawns}
        used = set(getattr(item, "fixturenames", ())) & guard.process_fixtures - started_here
        found += [f"fixture {name!r}, which starts a process" for name in sorted(used)]
    return list(dict.fromkeys(found))


def message(reasons: list[str]) -> str:
    listed = "\n".join(f"  - {reason}" for reason in reasons)
    return (
        f"This test starts a process but is not marked `{MARKER}`:\n{listed}\n"
        f"Mark it @pytest.mark.{MARKER} (or its module: pytestmark = pytest.mark.{MARKER}; "
        f"{' and '.join(IMPLYING)} imply it) so that `make test-fast` "
        f'(pytest -m "not {MARKER}") leaves it out.'
    )


_called = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Judge a test with its call report (setup's spawns included, so its body still runs),
    or with its teardown report: teardown's spawns, and setup's when setup failed."""
    report = yield
    if report.when == "setup":
        return report
    if report.when == "call":
        phases: tuple[str, ...] = ("setup", "call")
    elif item.stash.get(_called, False):
        phases = ("teardown",)
    else:
        phases = ("setup", "teardown")
    reasons = violations(item.config.stash[_guard_key], item, phases)
    if not reasons:
        return report
    text = message(reasons)
    if report.passed or report.skipped:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("process marker check", text))
    return report
