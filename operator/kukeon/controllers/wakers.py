"""Waking cells when an object their reconcile reads changes: a Secret, a Space.

A cell's reconcile reads more than the cell: the Secrets its `secretRef`s (and its realm's
`passwordSecretRef`) name, and its space's container defaults. Without a wake-up a change
there would reach the cell only at its next retry or the periodic resync (minutes). A
`CellWaker` watches one such kind and requeues this node's cells below the changed object
(a Secret's stack, space or realm; a Space's realm/space): exactly the cells whose
reconcile can read it. The reconcile then recreates only the containers whose effective
spec (values and defaults are part of its digest) changed.

- A Secret wakes its cells on every event: a missing one that appears lets a cell failed
  with `SecretUnavailable` start at once, a changed value is staged again.
- A Space wakes its cells when its spec changes (its `generation`), not on the status
  writes every node makes to it. Spaces are watched by the operator already: their waker
  is a change listener of that watch (`Operator.on_change`), not a second watch, and it
  is called once the operator's cache holds the new version, so a woken cell reads the
  new defaults. Secrets have no handler, so their waker `follow`s a watch of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kukeon.api import SCOPE_PLACEHOLDER, AnyResource, Kind, Secret, key_of
from kukeon.store import Registry

from .membership import CellMembership, Trigger

log = logging.getLogger(__name__)

ScopeOf = Callable[[AnyResource], tuple[str, ...]]


def secret_scope(res: AnyResource) -> tuple[str, ...]:
    """A Secret's realm, space and stack, as far as it names them."""
    assert isinstance(res, Secret)
    return tuple(part for part in res.metadata.scope() if part != SCOPE_PLACEHOLDER)


class CellWaker:
    """Follow `kind` for good and requeue this node's cells below each changed object."""

    def __init__(
        self,
        *,
        kind: Kind,
        registry: Registry,
        membership: CellMembership,
        trigger: Trigger,
        scope_of: ScopeOf = key_of,
        on_spec_change_only: bool = False,
    ) -> None:
        self.kind = kind
        self.registry = registry
        self.membership = membership
        self.trigger = trigger
        self.scope_of = scope_of
        self.on_spec_change_only = on_spec_change_only
        self._generations: dict[tuple[str, ...], int] = {}

    def wake(self, res: AnyResource) -> int:
        """Requeue this node's cells below `res`; how many."""
        cells = self.membership.keys_below(self.scope_of(res))
        for key in cells:
            self.trigger(Kind.CELL, key)
        return len(cells)

    def _changed(self, res: AnyResource, *, deleted: bool) -> bool:
        if not self.on_spec_change_only:
            return True
        key = key_of(res)
        if deleted:
            self._generations.pop(key, None)
            return False  # its cells go with it
        seen = self._generations.get(key)
        self._generations[key] = res.metadata.generation
        return seen is not None and seen != res.metadata.generation

    def changed(self, res: AnyResource, deleted: bool) -> None:
        """An `Operator.on_change` listener: the same decision as `follow`'s events."""
        if self._changed(res, deleted=deleted):
            woken = self.wake(res)
            log.debug(
                "%s %s changed: requeued %d cell(s)", self.kind.value, "/".join(key_of(res)), woken
            )

    async def follow(self, *, retry: float = 1.0) -> None:
        """Watch for good; a relist after any trouble wakes every object's cells (what
        changed while the watch was down went unseen; a requeue of a converged cell
        changes nothing). So does the first list, unless only spec changes count: the
        cells' first passes run beside it at kukeond's start, and one that found no
        Secret created before the list answered would hear of it from no watch event,
        waiting for its retry's back-off instead. At start it mostly finds no cell
        known yet, or cells queued already (a requeue coalesces)."""
        relist = not self.on_spec_change_only
        while True:
            try:
                listing = await self.registry.list(self.kind)
                for res in listing.items:
                    if relist:
                        self.wake(res)
                    self._changed(res, deleted=False)  # remember the generations
                relist = True
                async for event in self.registry.watch(
                    self.kind, resource_version=listing.resource_version
                ):
                    res = event.object
                    if res is None or not self._changed(res, deleted=event.type == "DELETED"):
                        continue
                    woken = self.wake(res)
                    log.debug(
                        "%s %s %s: requeued %d cell(s)",
                        self.kind.value,
                        "/".join(key_of(res)),
                        event.type.lower(),
                        woken,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("%s watch interrupted (%r); relisting", self.kind.value, error)
                await asyncio.sleep(retry)
