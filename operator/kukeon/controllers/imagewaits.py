"""Waking the cells that wait for an image the moment it arrives on this node.

A cell whose image is neither in its realm's namespace, nor in the node's archive store,
nor pullable fails `ImageUnavailable` and is retried after the queue's back-off, which
grows to minutes. What ends such a wait is mostly an import (`kukectl image import`) or a
pull of that image (`kukectl image pull`, or another cell's pass): `ImageProvider` tells
`arrived` the names it recorded, and the cells of this node waiting for one of them are
requeued at once (`Operator.trigger`), as a parent that turns Ready wakes its children.

The waits live in memory only: a kukeond that starts runs every cell's pass anyway. A
cell's pass says when it starts (`begin`) and when it ends waiting for an image
(`waiting`); an arrival between the two wakes it all the same (the pass may have looked
before the image came), so no import is missed for being made during a pass.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

from kukeon.api import AnyResource, Cell, Kind, key_of

from .imagearchives import name_candidates
from .membership import Trigger

log = logging.getLogger(__name__)

RECENT_ARRIVALS = 64
"""Arrivals remembered for the passes under way; a pass older than all of them is woken."""


def spellings(names: Iterable[str]) -> frozenset[str]:
    """Every name these images may be asked for or recorded under (`name_candidates`):
    `busybox` and `docker.io/library/busybox:latest` meet, `busybox:1` does not."""
    return frozenset(spelling for name in names for spelling in name_candidates(name))


class ImageWaits:
    """This node's cells waiting for an image, woken when one of its names arrives."""

    def __init__(self, trigger: Trigger | None = None) -> None:
        self.trigger = trigger
        """Set by ``Controllers.register``: requeues a cell (``Operator.trigger``)."""
        self._waiting: dict[tuple[str, ...], frozenset[str]] = {}
        self._arrivals: deque[tuple[int, frozenset[str]]] = deque(maxlen=RECENT_ARRIVALS)
        self._count = 0

    def begin(self, key: tuple[str, ...]) -> int:
        """A pass of the cell starts: it waits for nothing until it says so again. Returns
        the mark `waiting` compares later arrivals with."""
        self._waiting.pop(key, None)
        return self._count

    def waiting(self, key: tuple[str, ...], image: str, *, since: int) -> None:
        """The pass that began at `since` ends waiting for `image`: wake the cell when it
        arrives, or now when it arrived meanwhile."""
        wanted = spellings([image])
        missed = self._count - since
        recent = [names for mark, names in self._arrivals if mark > since]
        if missed > len(recent) or any(wanted & names for names in recent):
            self._wake([key])
            return
        self._waiting[key] = wanted

    def forget(self, key: tuple[str, ...]) -> None:
        self._waiting.pop(key, None)

    def arrived(self, names: Iterable[str]) -> int:
        """Images of these names are now on this node: requeue the cells waiting for one
        of them (in any realm: an admin's import serves every realm from the archive store,
        and a pull that worked once works again); how many."""
        names = sorted(names)
        arrived = spellings(names)
        if not arrived:
            return 0
        self._count += 1
        self._arrivals.append((self._count, arrived))
        woken = [key for key, wanted in self._waiting.items() if wanted & arrived]
        for key in woken:
            del self._waiting[key]
        self._wake(woken)
        if woken:
            log.debug("image %s arrived: requeued %d cell(s)", ", ".join(names), len(woken))
        return len(woken)

    def changed(self, obj: AnyResource, deleted: bool) -> None:
        """An `Operator.on_change` listener of cells: a deleted cell waits no more."""
        if deleted and isinstance(obj, Cell):
            self.forget(key_of(obj))

    def _wake(self, keys: Iterable[tuple[str, ...]]) -> None:
        if self.trigger is None:
            return
        for key in keys:
            self.trigger(Kind.CELL, key)


__all__ = ["ImageWaits", "spellings"]
