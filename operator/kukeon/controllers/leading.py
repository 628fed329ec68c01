"""The loop a leader-elected controller runs while it leads: passes, woken by watches.

The scheduler and the set controller lead the same way: a pass at once, then a pass at
every wake-up and at least every ``interval`` seconds, with watches that wake the loop
when something it must decide about changes. A pass that fails on the store is logged and
the next one does the whole work again (``woken=True``); anything else is a bug and ends
the loop (the operator's supervisor reports it and the election runs it again). The
watches run on the operator's ``Supervisor`` while the loop runs and stop with it.

``LeaderLoop`` holds the wake-up event; ``lead`` runs the loop and ``follow`` is the body
of one watch: from the current revision, waking the loop for each event ``wakes`` picks,
and starting again after ``interval`` when the watch breaks.

On an operator (``watch_with``) a watch is not a stream of its own: the operator lists and
watches the kind once for every reader (``Operator.watch``, its cache) and its change
listener wakes the loop, after the cache holds the change, so the woken pass reads it
there (issue 18: one informer per kind per kukeond).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kukeon.api import Kind
from kukeon.framework import Operator, Supervisor
from kukeon.framework.cache import revision_of
from kukeon.framework.protocols import AnyResource
from kukeon.framework.waits import wait_event
from kukeon.store import EtcdAway, Registry, StoreError, WatchEvent

log = logging.getLogger(__name__)


def _level(error: StoreError) -> int:
    """Warning, or debug for etcd known away (the store said it once)."""
    return logging.DEBUG if isinstance(error, EtcdAway) else logging.WARNING


Pass = Callable[[bool], Awaitable[None]]
"""One pass; its argument says whether something woke it (else the interval did)."""


@dataclass(frozen=True)
class Watch:
    """One watch of a leader: its task name, the kind, which events wake the loop."""

    name: str
    kind: Kind
    wakes: Callable[[WatchEvent], bool]


class LeaderLoop:
    """The wake-up event and the loop of one leader-elected controller."""

    def __init__(self, *, what: str, registry: Registry, interval: float) -> None:
        self.what = what
        """What a pass is, for the logs ("scheduling pass")."""
        self.registry = registry
        self.interval = interval
        self._wake = asyncio.Event()
        self._followed: set[str] = set()
        """Watches the operator's change listeners stand for (``watch_with``)."""

    def wake(self) -> None:
        """Run the next pass now."""
        self._wake.set()

    def watch_with(self, op: Operator, watches: Sequence[Watch]) -> None:
        """Have ``op`` watch the kinds of ``watches`` and wake the loop from its change
        listener instead of a watch stream of the loop's own (before ``op`` starts)."""
        for watch in watches:
            op.watch(watch.kind)
            op.on_change(watch.kind, functools.partial(self._changed, watch))
            self._followed.add(watch.name)

    def _changed(self, watch: Watch, obj: AnyResource, deleted: bool) -> None:
        event = WatchEvent("DELETED" if deleted else "MODIFIED", obj, revision_of(obj))
        if watch.wakes(event):
            self._wake.set()

    async def lead(
        self, run_pass: Pass, watches: Sequence[Watch], tasks: Supervisor | None = None
    ) -> None:
        """Run ``run_pass`` at every wake-up, at least every ``interval``, until cancelled;
        ``watches`` run on ``tasks`` (a private supervisor when None) meanwhile, unless the
        operator's listeners stand for them (``watch_with``)."""
        supervisor = tasks if tasks is not None else Supervisor()
        watchers = [
            supervisor.start(watch.name, functools.partial(self.follow, watch))
            for watch in watches
            if watch.name not in self._followed
        ]
        try:
            woken = True
            while True:
                self._wake.clear()
                failed = False
                try:
                    await run_pass(woken)
                except StoreError as error:
                    # etcd known away fails a pass at once, each interval: said once (by
                    # the store), not at every pass.
                    log.log(_level(error), "%s failed (%s); trying again", self.what, error)
                    failed = True  # the next pass does the whole work again
                woken = await wait_event(self._wake, self.interval) or failed
        finally:
            await supervisor.stop(watchers)

    async def follow(self, watch: Watch) -> None:
        """Wake the loop at each event ``watch`` picks; on trouble the interval still runs."""
        while True:
            try:
                revision = await self.registry.current_revision()
                async for event in self.registry.watch(watch.kind, resource_version=revision):
                    if watch.wakes(event):
                        self._wake.set()
            except StoreError as error:  # anything else is a bug: the supervisor reports it
                level = min(_level(error), logging.INFO)
                log.log(level, "%s interrupted (%r); restarting", watch.name, error)
                await asyncio.sleep(self.interval)
