"""Supervised background tasks: every long-lived loop of kukeond is started here.

A loop started with a bare ``asyncio.create_task`` that raises ends silently: the
exception waits in the task object until someone looks, which nobody does. That is how a
malformed document once stopped a kind's watch for good while ``/readyz`` said ok. So the
long-lived loops (a kind's list + watch, timers, the resync, heartbeats, elections, the
containerd event follower, the orphan collector...) are started by ``Supervisor.start``
instead, which (the idea of kopf's ``aiotasks.guard``, grown a restart):

- logs a crash with its traceback, once: the same error again in a row is one line with
  the count, so a crash loop cannot flood the log;
- counts it in ``kukeon_task_restarts_total{task}``;
- reports the task down (``Supervisor.down``, ``readiness`` for ``/readyz``) from the
  crash until the restarted loop has run ``recovered_after`` seconds without failing;
- restarts it after an exponential, capped delay (back to the first step once a run
  lasted ``reset_after`` seconds);
- ends it on cancellation (``stop``), never restarting it afterwards.

A loop that returns is a crash too (it was meant to run until stopped), unless started
with ``finishable=True``. Short-lived tasks (one request, one object's worker) stay plain
tasks: their failure belongs to whoever awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from kukeon.cancelling import cancel_and_wait

from .metrics import FrameworkMetrics

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Coroutine[Any, Any, None]]
"""Makes a fresh coroutine of the loop; called again for every restart."""


class TasksDown(RuntimeError):  # noqa: N818 (reads as a readiness failure: "TasksDown: ...")
    """Raised by a readiness check: names each task that is down and why."""


class SupervisedTask:
    """One long-lived loop under a ``Supervisor``: its task, state and restart count."""

    def __init__(
        self,
        *,
        name: str,
        factory: TaskFactory,
        component: str,
        finishable: bool,
        supervisor: Supervisor,
    ) -> None:
        self.name = name
        self.component = component
        self.finishable = finishable
        self.restarts = 0
        """Restarts after a crash since the task was started."""
        self.last_error: BaseException | None = None
        self.finished = False
        """A ``finishable`` loop returned: it is done, not down."""
        self._factory = factory
        self._supervisor = supervisor
        self._stopping = False
        self._crashed_at: float | None = None
        self._restarted_at: float | None = None
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=name)

    @property
    def up(self) -> bool:
        """Running, and if it crashed, restarted and alive for ``recovered_after`` seconds."""
        if self.task.done():
            return self.finished
        if self._crashed_at is None:
            return True
        restarted = self._restarted_at
        if restarted is None or restarted < self._crashed_at:
            return False
        now = asyncio.get_running_loop().time()
        return now - restarted >= self._supervisor.recovered_after

    def describe(self) -> str:
        if self.task.done() and not self.finished:
            return f"{self.name} ended: {self.last_error!r}"
        return f"{self.name} down after {self.restarts} crash(es), last {self.last_error!r}"

    async def stop(self) -> None:
        """Cancel the loop and wait for it; it is not restarted."""
        self._stopping = True
        try:
            await cancel_and_wait(self.task)
        finally:
            self._supervisor._forget(self)  # now: its done callback may not have run yet

    async def _run(self) -> None:
        supervisor = self._supervisor
        loop = asyncio.get_running_loop()
        failures = 0
        previous: tuple[type[BaseException], str] | None = None
        while True:
            started = loop.time()
            if self._crashed_at is not None:
                self._restarted_at = started
            try:
                await self._factory()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure: Exception = error
            else:
                if self.finishable:
                    self.finished = True
                    return
                failure = RuntimeError(f"{self.name} returned; it is meant to run until stopped")
            if self._stopping:
                return  # it swallowed the cancellation: stopped all the same
            now = loop.time()
            if now - started >= supervisor.reset_after:
                failures = 0
            failures += 1
            self.restarts += 1
            self._crashed_at = now
            if supervisor.metrics is not None:
                supervisor.metrics.task_restarts_total.labels(self.name).inc()
            delay = supervisor.delay(failures)
            signature = (type(failure), str(failure))
            if signature == previous:
                log.error(
                    "background task %s crashed again (%d in a row): %r; restarting in %.1fs",
                    self.name,
                    failures,
                    failure,
                    delay,
                    extra={"task": self.name},
                )
            else:
                log.error(
                    "background task %s crashed: %r; restarting in %.1fs",
                    self.name,
                    failure,
                    delay,
                    exc_info=failure,
                    extra={"task": self.name},
                )
            previous = signature
            # Logged: drop the traceback, whose frames would otherwise live on in last_error.
            self.last_error = failure.with_traceback(None)
            del failure
            await asyncio.sleep(delay)


class Supervisor:
    """Starts long-lived loops, restarts them when they crash, stops them on request."""

    def __init__(
        self,
        *,
        metrics: FrameworkMetrics | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        recovered_after: float = 1.0,
        reset_after: float = 60.0,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("Supervisor needs 0 < backoff_initial <= backoff_max")
        self.metrics = metrics
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.recovered_after = recovered_after
        self.reset_after = reset_after
        self._tasks: list[SupervisedTask] = []

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` in a row: doubling, capped."""
        return min(self.backoff_initial * 2.0 ** min(failures - 1, 64), self.backoff_max)

    def start(
        self,
        name: str,
        factory: TaskFactory,
        *,
        component: str = "controllers",
        finishable: bool = False,
    ) -> SupervisedTask:
        """Run ``factory()`` as task ``name`` now (and again after every crash).

        ``name`` is the metric's ``task`` label: keep it bounded (per kind, never per object).
        ``component`` groups tasks for readiness checks.
        """
        supervised = SupervisedTask(
            name=name,
            factory=factory,
            component=component,
            finishable=finishable,
            supervisor=self,
        )
        self._tasks.append(supervised)
        supervised.task.add_done_callback(lambda _: self._forget(supervised))
        if self.metrics is not None:
            # Present from the start, so a dashboard sees 0 rather than no series.
            self.metrics.task_restarts_total.labels(name)
        return supervised

    def _forget(self, supervised: SupervisedTask) -> None:
        # A task that ended (stopped, or finished) is no longer anyone's readiness concern.
        if supervised.finished or supervised._stopping:
            with contextlib.suppress(ValueError):
                self._tasks.remove(supervised)

    @property
    def tasks(self) -> list[SupervisedTask]:
        return list(self._tasks)

    def down(self, component: str | None = None) -> list[SupervisedTask]:
        """The tasks (of ``component``, or all) that are not up now."""
        return [
            task
            for task in self._tasks
            if (component is None or task.component == component) and not task.up
        ]

    def readiness(self, component: str) -> Callable[[], bool]:
        """A ``/readyz`` check: True while every task of ``component`` is up, else
        ``TasksDown`` naming them (the reason /readyz shows)."""

        def check() -> bool:
            down = self.down(component)
            if down:
                raise TasksDown("; ".join(task.describe() for task in down))
            return True

        return check

    async def stop(self, tasks: Iterable[SupervisedTask] | None = None) -> None:
        """Cancel ``tasks`` (all of this supervisor's when None) and wait for them."""
        chosen = list(self._tasks if tasks is None else tasks)
        for task in chosen:
            task._stopping = True
            task.task.cancel()
        for task in chosen:
            await task.stop()
