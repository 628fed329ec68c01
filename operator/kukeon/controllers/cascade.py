"""Server-side cascading deletion: the children of a realm, space or stack marked for deletion.

``DELETE`` with a propagation policy (or ``cascade=true``) only marks the object
(``deletionTimestamp``, ``kukeon.io/children`` kept): the request returns at once, whatever
the number of children, as Kubernetes' garbage collector does the rest behind a deletion.
This loop, run by the leader of the ``cascade`` election (one kukeond of the fleet), finds
the marked parents and deletes their direct children: a space or stack is marked in turn,
a cell is deleted as a user would (its node's cell controller tears it down and releases
it); the parent goes when its last child has (``Registry.continue_cascade``). Nothing is
kept in memory: after a restart, or on another leader, the marks say what is left to do.

The marked parents are read from the operator's cache (``CachedReads``: etcd when the
kind is not watched); a mark the cache does not show yet wakes the loop when it arrives,
and ``continue_cascade`` reads the children from etcd itself.

Children go before their parent (Kubernetes' foreground order) for both policies: a cell's
teardown needs its realm (the containerd namespace) and its space (the network).
"""

from __future__ import annotations

import logging

from kukeon.api import Kind, key_of
from kukeon.framework import Operator, OperatorContext, Supervisor
from kukeon.framework.cache import CachedReads
from kukeon.store import Registry, WatchEvent

from .leading import LeaderLoop, Watch

log = logging.getLogger(__name__)

CASCADE = "cascade"
PARENT_KINDS = (Kind.REALM, Kind.SPACE, Kind.STACK)


class CascadeDeleter:
    """Deletes the children of marked parents, a pass at every wake-up or ``interval``."""

    def __init__(self, *, registry: Registry, interval: float = 2.0) -> None:
        self.registry = registry
        self.interval = interval
        self.tasks: Supervisor | None = None
        """The operator's, so the watches are supervised (and counted) like every loop."""
        self._loop = LeaderLoop(what="cascade pass", registry=registry, interval=interval)
        self.reads = CachedReads(registry)
        """The per-pass list of parents: the operator's cache once registered on one."""
        self.passes = 0

    def use(self, op: Operator) -> None:
        """Run on ``op``: its supervisor, its cache for the parents and its watch of them."""
        self.tasks = op.tasks
        self.reads.source = lambda: op.cache
        self._loop.watch_with(op, self.watches())

    def watches(self) -> list[Watch]:
        """The parents' watches: one marked for deletion wakes the loop."""
        return [Watch(f"kukeon-cascade-watch {kind.value}", kind, _marked) for kind in PARENT_KINDS]

    async def lead(self) -> None:
        """The leader's loop (``LeaderLoop``): a pass at every wake-up, at least every
        ``interval`` seconds; the parents' watches wake it when one is marked."""

        async def run_pass(_woken: bool) -> None:
            await self.run_pass()

        await self._loop.lead(run_pass, self.watches(), self.tasks)

    async def run_pass(self) -> int:
        """One step under every marked parent; returns how many children were left."""
        self.passes += 1
        left = 0
        for kind in PARENT_KINDS:
            for parent in await self.reads.list(kind):
                if parent.metadata.deletion_timestamp is None:
                    continue
                key = key_of(parent)
                remaining = await self.registry.continue_cascade(kind, key)
                if remaining:
                    log.info(
                        "deleting %s %s: %d children left", kind.value, "/".join(key), remaining
                    )
                left += remaining
        return left


def _marked(event: WatchEvent) -> bool:
    """A parent marked for deletion (or changed while marked): its children have work."""
    return event.object.metadata.deletion_timestamp is not None


def register_cascade(op: Operator, deleter: CascadeDeleter) -> None:
    """Put ``deleter.lead`` on ``op`` as the ``cascade`` singleton (leader only)."""

    deleter.use(op)

    @op.singleton(CASCADE)
    async def lead(_ctx: OperatorContext) -> None:
        await deleter.lead()


__all__ = ["CASCADE", "CascadeDeleter", "register_cascade"]
