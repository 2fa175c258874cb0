"""One chaos stack per test module: starting the product's processes costs more than a fault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import ChaosStack

# Reconnect backoff capped at 4 s here so that a worker whose backoff does not reset recovers
# within the module's time; the attempt numbers in its log still show the defect.
FEED_ENV = {"FEED_BACKOFF_CAP": "4"}


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[ChaosStack]:
    with ChaosStack(feed_env=FEED_ENV) as stack:
        yield stack


@pytest.fixture
def stack(chaos_stack: ChaosStack) -> ChaosStack:
    """The module's stack, back in the state every fault starts from."""
    chaos_stack.ready()
    return chaos_stack
