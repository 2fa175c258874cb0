"""Supervision of the feed worker's tasks: none dies unseen.

``asyncio.TaskGroup`` cancels the other tasks when one fails and raises what failed; ``guarded``
closes its two blind spots, and ``primary`` picks the failure that explains the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from .publisher import LockLost


class TaskDied(Exception):
    """A task of the worker ended without being asked to: the holding restarts."""


async def guarded(
    name: str, work: Coroutine[Any, Any, None], stop: asyncio.Event, *, forever: bool
) -> None:
    """Run ``work`` as a supervised task: a task group silently forgets a child that is
    cancelled by anyone but the group (a library's stray cancellation) or that returns early,
    so both become ``TaskDied`` here — seen, logged and restarted like any failure."""
    try:
        await work
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the group (or the process) is cancelling us: not ours to change
        raise TaskDied(f"the {name} was cancelled unexpectedly") from None
    if forever and not stop.is_set():
        raise TaskDied(f"the {name} ended by itself")


def primary(group: BaseExceptionGroup) -> BaseException:
    """The exception that ended a task group: a lost lock first (it explains the others),
    else the first that is not a cancellation."""
    flat: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)

    walk(group)
    for exc in flat:
        if isinstance(exc, LockLost):
            return exc
    for exc in flat:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return flat[0]
