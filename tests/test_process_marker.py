"""The process marker check (tests/process_marker.py), run on small test files by pytest
inside this pytest: a test that starts a process without the ``integration`` marker fails,
naming the command, the fixture and the marker; ``browser`` and ``chaos`` count as it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# The check alone: none of the suite's other plugins (each would be imported afresh per run).
ARGS = ["-p", "tests.process_marker"] + [
    arg
    for plugin in ("django", "xdist", "asyncio", "anyio", "hypothesispytest", "cacheprovider")
    for arg in ("-p", f"no:{plugin}")
]
HEADER = """
import subprocess
import pytest

def start():
    subprocess.run(["true"], check=True)
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=HEADER + body)
    return pytester.runpytest_inprocess(*ARGS, *args)


def test_an_unmarked_test_that_starts_a_process_fails_naming_it_and_the_marker(pytester):
    result = run(pytester, "def test_spawns():\n    start()\n")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*This test starts a process but is not marked `integration`:*",
        "*- true (call)*",
        "*Mark it @pytest.mark.integration*",
    ])  # fmt: skip


def test_a_marked_test_may_start_processes_and_a_test_that_starts_none_needs_no_mark(pytester):
    body = (
        "@pytest.mark.integration\ndef test_marked():\n    start()\n\n"
        "def test_pure():\n    assert 1 + 1 == 2\n"
    )
    run(pytester, body).assert_outcomes(passed=2)


@pytest.mark.parametrize("marker", ["browser", "chaos"])
def test_browser_and_chaos_imply_integration_and_leave_the_fast_lane(pytester, marker):
    body = f"@pytest.mark.{marker}\ndef test_kind():\n    start()\n"
    run(pytester, body).assert_outcomes(passed=1)
    run(pytester, body, "-m", "not integration").assert_outcomes(deselected=1)


def test_a_process_started_by_a_session_fixture_fails_every_unmarked_test_using_it(pytester):
    body = """
@pytest.fixture(scope="session")
def server():
    start()

@pytest.mark.integration
def test_first_starts_it(server):
    pass

def test_later_reuses_it(server):
    pass

def test_pure():
    pass
"""
    result = run(pytester, body)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_later_reuses_it*", "*fixture 'server', which starts*"])


def test_the_fixture_that_started_the_process_is_named(pytester):
    body = "@pytest.fixture\ndef feed():\n    start()\n\ndef test_feed(feed):\n    pass\n"
    result = run(pytester, body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- true (in fixture 'feed')*"])


def test_a_failing_test_keeps_its_own_failure_and_gets_the_check_as_a_section(pytester):
    result = run(pytester, "def test_fails():\n    start()\n    assert False, 'its own'\n")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: its own*", "*process marker check*"])


def test_a_process_started_by_a_failing_fixture_is_reported_at_teardown(pytester):
    body = "@pytest.fixture\ndef broken():\n    start()\n    raise RuntimeError('no')\n\n"
    body += "def test_uses(broken):\n    pass\n"
    result = run(pytester, body)
    result.assert_outcomes(errors=2)  # the fixture's error, then the check at teardown
    result.stdout.fnmatch_lines(["*RuntimeError: no*", "*not marked `integration`*"])


def test_asyncio_subprocesses_are_seen(pytester):
    body = """
import asyncio

def test_async_spawn():
    async def main():
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()
    asyncio.run(main())
"""
    run(pytester, body).assert_outcomes(failed=1)
