"""Fixtures of the chain tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chains import store


@pytest.fixture
def clean_redis() -> Iterator[None]:
    """The test's Redis database empty before and after (snapshots, feed status, counters)."""
    store.sync_client().flushdb()
    yield
    store.sync_client().flushdb()
