"""A cell's image pulls, run beside its passes instead of inside them (kubelet's puller).

A pull from a slow registry can take hours; run inside a cell's pass it held one of
kukeond's handler workers (a realm editor's slow registry could hold them all), the cell's
deletion (its finalize waits for the pass) and kukeond's stop (its grace). Here the pass
that finds its image missing starts the pull as a task of its own, one per namespace and
image at a time (another cell wanting it joins), says so in the cell's status and ends
(`ImagePullingError`, a ``Requeue``). The cells that asked are woken when the pull ends,
pulled or failed (`wake`), and their next pass takes the outcome: the image, or the
failure the pass itself used to raise (same reason, Events, back-off).

A pull no cell of its namespace waits for any more (each deleted, or now naming another
image) is cancelled: its lease is released (nothing it fetched is kept). kukeond's stop
cancels every pull (`close`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kukeon.cancelling import cancel_and_wait
from kukeon.framework import Requeue

log = logging.getLogger(__name__)

Waiter = tuple[str, ...]
"""A cell's key: whose pass waits for a pull."""
PullKey = tuple[str, str]
"""The namespace and the image reference (normalised) a pull brings."""

PULL_RECHECK_SECONDS = 600.0
"""A pass that ends for a pull comes back after this at the latest: the pull's end wakes
the cell anyway; this only bounds a wake that was lost."""


class ImagePullingError(Requeue):
    """The pass ends while its image is pulled beside it (not a failure: the cell says
    Pulling, and the pull's end wakes it)."""

    def __init__(self, image: str, namespace: str) -> None:
        super().__init__(
            f"image {image!r} is being pulled into realm namespace {namespace}",
            delay=PULL_RECHECK_SECONDS,
            reason="ImagePulling",
        )
        self.image = image


@dataclass
class _Pull:
    task: asyncio.Task[None] | None = None
    waiters: set[Waiter] = field(default_factory=set)


class BackgroundPulls:
    """The pulls under way for cells, and what each ended with for the cells that waited."""

    def __init__(self) -> None:
        self.wake: Callable[[Waiter], object] | None = None
        """Set by ``Controllers``: requeues a cell (``Operator.trigger``)."""
        self._pulls: dict[PullKey, _Pull] = {}
        self._outcomes: dict[tuple[PullKey, Waiter], Exception | None] = {}
        """Each waiter's pull that ended and its next pass has not taken yet: None when
        it pulled, else the failure to report."""
        self._closed = False

    def pulled(self, key: PullKey, waiter: Waiter) -> bool:
        """Whether a pull this waiter waited for brought the image (told once)."""
        return (key, waiter) in self._outcomes and self._outcomes.pop((key, waiter)) is None

    def ask(
        self, key: PullKey, waiter: Waiter, pull: Callable[[], Awaitable[object]]
    ) -> Exception | bool:
        """The waiter's pass finds the image missing: the failure of the pull it waited
        for (reported once), else it waits for the pull under way or for one started now
        with `pull` (True when started or joined now: the pass says it is pulling)."""
        outcome = self._outcomes.pop((key, waiter), None)
        if outcome is not None:
            return outcome
        self._leave_others(key, waiter)
        running = self._pulls.get(key)
        if running is None:
            if self._closed:
                return True  # kukeond stops: the pass ends, no pull starts
            running = self._pulls[key] = _Pull()
            running.task = asyncio.create_task(
                self._run(key, running, pull), name=f"kukeon-pull {key[0]} {key[1]}"
            )
        running.waiters.add(waiter)
        return True

    def leave(self, waiter: Waiter) -> None:
        """The cell is gone: it waits for nothing; a pull nobody waits for is cancelled."""
        for key in [key for key in self._outcomes if key[1] == waiter]:
            del self._outcomes[key]
        self._leave_others(None, waiter)

    def _leave_others(self, kept: PullKey | None, waiter: Waiter) -> None:
        """The waiter now waits for `kept` (None: nothing): its other pulls lose it."""
        for key, running in list(self._pulls.items()):
            if key == kept or waiter not in running.waiters:
                continue
            running.waiters.discard(waiter)
            if not running.waiters and running.task is not None:
                log.info("pull of %s into %s cancelled: no cell waits for it", key[1], key[0])
                del self._pulls[key]
                running.task.cancel()

    async def _run(
        self, key: PullKey, running: _Pull, pull: Callable[[], Awaitable[object]]
    ) -> None:
        outcome: Exception | None = None
        try:
            await pull()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the pull's failure, reported by its waiters' passes
            # Kept until each waiter's pass takes it: its text, not the frames (and what
            # they hold: a manifest, a chunk) of the pull that raised it.
            error.__cause__ = error.__context__ = None
            outcome = error.with_traceback(None)
        finally:
            if self._pulls.get(key) is running:
                del self._pulls[key]
        for waiter in running.waiters:
            self._outcomes[(key, waiter)] = outcome
        for waiter in running.waiters:
            if self.wake is not None:
                self.wake(waiter)

    def under_way(self) -> int:
        return len(self._pulls)

    async def close(self) -> None:
        """kukeond stops: every pull is cancelled (its lease released), none starts."""
        self._closed = True
        pulls, self._pulls = list(self._pulls.values()), {}
        await cancel_and_wait(*(running.task for running in pulls if running.task is not None))


__all__ = ["PULL_RECHECK_SECONDS", "BackgroundPulls", "ImagePullingError", "PullKey"]
