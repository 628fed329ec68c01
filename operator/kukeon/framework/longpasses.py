"""Handler passes that run far longer than a pass should: said, with where each waits.

A pass that never ends (an await on a call without a deadline, a lock another task never
lets go) leaves its object as its last status said, silently: nothing fails, nothing is
retried, and the object's next change only queues behind it. ``LongPasses`` keeps the
start of every running pass; a pass still running ``long_pass_seconds`` after its start is
logged as a WARNING naming the object and the chain of awaits it is stopped in (each
coroutine's file, line and function, down to the future or task it waits for), again at
each doubling of that age, and once at INFO when it ends at last. Kubernetes' work queues
export the same fact as ``workqueue_longest_running_processor_seconds``; here it is
``kukeon_longest_running_handler_seconds`` per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kukeon.api import Kind

from .metrics import FrameworkMetrics
from .processing import describe
from .protocols import ObjectKey

log = logging.getLogger(__name__)

_CHAIN_DEPTH = 40
"""Awaits followed at most (a chain is a few handlers' worth; a loop must not hang the log)."""


def _frame_of(awaitable: Any) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attribute, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited_by(awaitable: Any) -> Any:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, attribute, None)
        if inner is not None:
            return inner
    return None


def _short(filename: str) -> str:
    """kukeon's own files from the package down (the install's prefix says nothing)."""
    _, found, rest = filename.rpartition("/kukeon/")
    return f"kukeon/{rest}" if found else filename


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` is stopped: each coroutine of its await chain as ``file:line in
    function``, outermost first, then what the innermost awaits (a task's chain is
    followed into it)."""
    said: list[str] = []
    current: asyncio.Task[Any] | None = task
    while current is not None and len(said) < _CHAIN_DEPTH:
        awaitable: Any = current.get_coro()
        while awaitable is not None and len(said) < _CHAIN_DEPTH:
            frame = _frame_of(awaitable)
            if frame is None:
                break
            code = frame.f_code
            said.append(f"{_short(code.co_filename)}:{frame.f_lineno} in {code.co_name}")
            awaitable = _awaited_by(awaitable)
        # What the innermost coroutine awaits is the task's future (a future's iterator
        # does not say which): a task is followed into, anything else named.
        waiter = getattr(current, "_fut_waiter", None)
        if isinstance(waiter, asyncio.Task):
            said.append(f"awaiting task {waiter.get_name()!r}")
            current = waiter
        else:
            if waiter is not None:
                said.append(f"awaiting {type(waiter).__name__}")
            current = None
    return said


@dataclass(eq=False)
class _Running:
    kind: Kind
    key: ObjectKey
    task: asyncio.Task[Any] | None
    started: float
    next_said: float
    """The age at which it is said (again)."""
    said: bool = False


class LongPasses:
    """The handler passes running now, and the saying of those that run too long."""

    def __init__(
        self,
        *,
        threshold: float | None,
        metrics: FrameworkMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        """Seconds after which a running pass is said (None: never)."""
        self._metrics = metrics
        self._clock = clock
        self._running: set[_Running] = set()
        self._kinds_seen: set[Kind] = set()
        """Kinds whose gauge was set: back to 0 when none of theirs runs."""

    @contextlib.contextmanager
    def running(self, kind: Kind, key: ObjectKey) -> Iterator[None]:
        """Around one pass of the object, run by the current task."""
        started = self._clock()
        entry = _Running(
            kind=kind,
            key=key,
            task=asyncio.current_task(),
            started=started,
            next_said=self.threshold or 0.0,
        )
        self._running.add(entry)
        try:
            yield
        finally:
            self._running.discard(entry)
            if entry.said:
                log.info(
                    "the handler pass of %s ended after %.0fs",
                    describe(kind, key),
                    self._clock() - started,
                    extra={"kind": kind.value, "key": "/".join(key)},
                )

    def check(self) -> None:
        """Say each pass past its next age, and set each kind's longest-running gauge."""
        now = self._clock()
        longest: dict[Kind, float] = dict.fromkeys(self._kinds_seen, 0.0)
        for entry in list(self._running):
            age = now - entry.started
            longest[entry.kind] = max(longest.get(entry.kind, 0.0), age)
            if self.threshold is None or age < entry.next_said:
                continue
            entry.said = True
            entry.next_said = age * 2
            chain = await_chain(entry.task) if entry.task is not None else []
            log.warning(
                "the handler pass of %s has run for %.1fs and has not ended; it waits in: %s",
                describe(entry.kind, entry.key),
                age,
                " -> ".join(chain) or "(unknown)",
                extra={"kind": entry.kind.value, "key": "/".join(entry.key), "seconds": age},
            )
        for kind, seconds in longest.items():
            self._metrics.longest_running_handler.labels(kind.value).set(seconds)
        self._kinds_seen.update(longest)

    async def watch(self) -> None:
        """Check every few seconds, for ever (a supervised task of the operator)."""
        period = min(5.0, (self.threshold or 20.0) / 4)
        while True:
            await asyncio.sleep(period)
            self.check()
