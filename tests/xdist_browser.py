"""One xdist work unit for every browser test file.

`make test` spreads the suite over pytest-xdist workers a file at a time (``--dist loadfile``).
A streaming chain page keeps Chromium's renderer busy; two of them in different files on
different workers share this machine's two cores with the feed, the simulator and daphne, and
under that contention a renderer was seen answering nothing for over 30 s. So every file whose
name says ``browser`` runs on one worker, one file after another; the other files are scheduled
as before.
"""

from __future__ import annotations

from typing import Any

import pytest

BROWSER_SCOPE = "browser-tests"


def is_browser_file(path: str) -> bool:
    """True when the test file at ``path`` (a nodeid's file part) drives a browser."""
    return "browser" in path.rsplit("/", 1)[-1]


@pytest.hookimpl(optionalhook=True)  # known only when pytest-xdist is loaded
def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """The loadfile scheduler with the browser files in one scope; None (xdist's own) otherwise."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class BrowserFilesTogether(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return BROWSER_SCOPE if is_browser_file(path) else path

    return BrowserFilesTogether(config, log)
