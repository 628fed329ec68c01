"""A cell's image pulls, run beside its passes instead of inside them (kubelet's puller).

A pull from a slow registry can take hours; run inside a cell's pass it held one of
kukeond's handler workers (a realm editor's slow registry could hold them all), the cell's
deletion (its finalize waits for the pass) and kukeond's stop (its grace). Here the pass
that finds its image missing starts the pull as a task of its own, one per namespace and
image at a time (another cell wanting it joins), says so in the cell's status and ends
(`ImagePullingError`, a ``Requeue``). The cells that asked are woken when the pull ends,
pulled or failed (`wake`), and their next pass takes the outcome: the image, or the
failure the pass itself used to raise (same reason, Events, back-off).

Each version of a cell says which of its pulls it still waits for (`need`, given
`pulls_needed` by ``Controllers``' cell listener, the one place a cell leaves a pull): its
containers' images while it runs here, none once it is stopped, being deleted, or no
longer on this node. A pull no cell waits for any more is cancelled: its lease is released
with a collection run (nothing it fetched stays). A pass of a version since replaced joins
no pull its cell no longer needs. kukeond's stop cancels every pull (`close`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kukeon.api import Cell, DesiredCellState
from kukeon.cancelling import cancel_and_wait
from kukeon.framework import Requeue
from kukeon.runtime.containerd.registry import InvalidReferenceError, parse_reference

log = logging.getLogger(__name__)

Waiter = tuple[str, ...]
"""A cell's key: whose pass waits for a pull."""
PullKey = tuple[str, str]
"""The namespace and the image reference (normalised) a pull brings."""

PULL_RECHECK_SECONDS = 600.0
"""A pass that ends for a pull comes back after this at the latest: the pull's end wakes
the cell anyway; this only bounds a wake that was lost."""


def pull_reference(image: str) -> str | None:
    """The reference a pull of `image` is keyed by (None: no registry could serve it)."""
    try:
        return str(parse_reference(image))
    except InvalidReferenceError:
        return None


def pulls_needed(cell: Cell, *, here: bool) -> frozenset[str]:
    """The images (as `pull_reference` keys them) whose pulls this version of the cell
    waits for: its containers', none while it is stopped, being deleted or not run on this
    node (``here``)."""
    if (
        not here
        or cell.spec.desired_state == DesiredCellState.STOPPED
        or cell.metadata.deletion_timestamp is not None
    ):
        return frozenset()
    references = (pull_reference(container.image) for container in cell.spec.containers)
    return frozenset(reference for reference in references if reference is not None)


class ImagePullingError(Requeue):
    """The pass ends while its image is pulled beside it (not a failure: the cell says
    Pulling, and the pull's end wakes it)."""

    def __init__(self, image: str, namespace: str) -> None:
        super().__init__(
            f"image {image!r} is being pulled into realm namespace {namespace}",
            delay=PULL_RECHECK_SECONDS,
            reason="ImagePulling",
            # The pull's failure fails the next pass: it backs off one step further than
            # the last, as kubelet's ImagePullBackOff (a reset made a registry that refuses
            # at once be asked twice a second, for ever).
            keeps_backoff=True,
        )
        self.image = image


class PullNotJoinedError(Requeue):
    """The pass ends without its image and joined no pull (`BackgroundPulls.ask` said
    False): a pass of a version of the cell since replaced, whose status and Events are
    the newer version's pass's to write, or one cut by kukeond's stop."""

    def __init__(self, image: str, namespace: str) -> None:
        super().__init__(
            f"image {image!r} missing in realm namespace {namespace}: this pass joins no "
            "pull (the cell changed since it began, or kukeond stops)",
            delay=PULL_RECHECK_SECONDS,
            reason="ImagePullNotJoined",
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
        self._needs: dict[Waiter, frozenset[str]] = {}
        """What each cell's latest version needs pulled (`need`); a cell not here is not
        judged (no version of it seen)."""
        self._closed = False

    def pulled(self, key: PullKey, waiter: Waiter) -> bool:
        """Whether a pull this waiter waited for brought the image (told once)."""
        return (key, waiter) in self._outcomes and self._outcomes.pop((key, waiter)) is None

    def ask(
        self, key: PullKey, waiter: Waiter, pull: Callable[[], Awaitable[object]]
    ) -> Exception | bool:
        """The waiter's pass finds the image missing: the failure of the pull it waited
        for (reported once), else it waits for the pull under way or for one started now
        with `pull` (True: the pass says it is pulling). False when it joins none: a pass
        of a version since replaced, or kukeond stops; such a pass says nothing."""
        outcome = self._outcomes.pop((key, waiter), None)
        if outcome is not None:
            return outcome
        needs = self._needs.get(waiter)
        if needs is not None and key[1] not in needs:
            # A pass of a version since replaced (stopped, moved, another image): it joins
            # nothing and says nothing, as a Kubernetes controller holding a stale
            # generation writes no status; the newer version's pass, if this node runs
            # one, asks for its own.
            return False
        running = self._pulls.get(key)
        if running is None:
            if self._closed:
                return False  # kukeond stops: the pass ends, no pull starts
            running = self._pulls[key] = _Pull()
            running.task = asyncio.create_task(
                self._run(key, running, pull), name=f"kukeon-pull {key[0]} {key[1]}"
            )
        running.waiters.add(waiter)
        return True

    def need(self, waiter: Waiter, references: frozenset[str] | None) -> None:
        """The cell's latest version needs these images pulled (`pulls_needed`; None: the
        cell is gone): it leaves every other pull (one nobody waits for any more is
        cancelled) and forgets their outcomes; a later pass asks again for what it needs."""
        if references is None:
            self._needs.pop(waiter, None)
        else:
            self._needs[waiter] = references
        kept = references or frozenset()
        for told in [told for told in self._outcomes if told[1] == waiter]:
            if told[0][1] not in kept:
                del self._outcomes[told]
        for key, running in list(self._pulls.items()):
            if key[1] in kept or waiter not in running.waiters:
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


__all__ = [
    "PULL_RECHECK_SECONDS",
    "BackgroundPulls",
    "ImagePullingError",
    "PullKey",
    "PullNotJoinedError",
    "pull_reference",
    "pulls_needed",
]
