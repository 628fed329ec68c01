"""What the scheduler leader has heard of each node's heartbeat in its term.

A lease this leader saw alive and then gone is a node etcd heard nothing from for the
lease's TTL: it is marked NotReady at once. A lease this leader has not seen alive since
its term began proves nothing yet (a pass failed on the store starts its wait over, and
forgets no node heard): a leader that has just taken its own lease, after etcd refused
writes (full, or out of reach), runs its first pass before the nodes' heartbeat loops,
backing off, take theirs again (its own node's too, about a second later), and marking
them then was a false NodeLost, each cell Unknown and Ready again right after. Such a node
is judged only once the leader has gone ``grace`` seconds without hearing it (kukeond's
``daemon.node.heartbeat_grace``: the lease TTL, at least 20 s), as Kubernetes' node
lifecycle controller waits its node-monitor-grace-period from its own start before it
judges a node it has not heard (``unheard_for``).

What cannot be taken back waits for more than one read (``gone``): dropping a deleted
cell's finalizer (the document goes, and a node still running the cell keeps its
containers with no document to stop them for), marking a cell ``Pending``/``NodeNotFound``,
and releasing what realms, spaces and stacks hold for a node. A node counts as absent for
these only once this leader has itself gone ``grace`` seconds without seeing its lease
alive, counted from the latest of its last sight of it, the term's start and the last
pass that failed on the store; and never this process's own node while its heartbeat
lease is held here (``holds_own_lease``). A lease missing from one read can be a node
taking a new one (its old one lost, the grant refused while etcd is full), or a term that
just began after etcd refused writes; the NotReady mark, which the node's next heartbeat
undoes, is still taken at once for a node heard and then gone. Kubernetes' pod garbage
collector likewise deletes the pods of a node only once the node has been missing for
its quarantine (40 s) and a fresh read confirms it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

HEARTBEAT_GRACE = 40.0
"""Seconds a leader waits for a node it has not heard since its term began before it marks
the node NotReady (kukeond passes ``daemon.node.heartbeat_grace``: 40 s by default)."""


class Heartbeats:
    """The heartbeats one leader heard: when it last saw each node's lease alive."""

    def __init__(
        self,
        *,
        own_node: str,
        grace: float = HEARTBEAT_GRACE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.own_node = own_node
        self.grace = grace
        self._monotonic = monotonic
        self._heard: dict[str, float] = {}
        """The nodes whose lease a pass of this term saw alive -> when (monotonic) it
        last did."""
        self.since: float | None = None
        """When (monotonic) this leader began to listen: its term's start, or its last pass
        that failed on the store (None: no pass yet)."""
        self.holds_own_lease: Callable[[], bool] = lambda: False
        """Whether this process holds its own node's heartbeat lease now (``start_fleet``
        gives the node agent's; False: it keeps none, as a scheduler run alone)."""

    def listen_afresh(self) -> None:
        """Forget which heartbeats were heard: the term begins."""
        self._heard.clear()
        self.since = self._monotonic()

    def failed(self) -> None:
        """A pass failed on the store: the nodes not heard yet get their grace from now.
        The ones heard are kept: a lease etcd let expire is a node silent for its TTL
        whatever failed here (one etcd member gone, a refused write), and a leader holding
        its own lease kept etcd's leases renewable; forgetting them at every failed pass put
        off each node's loss by the whole grace (a kill -9 of a node during an etcd
        member's failover went unmarked for 20 s)."""
        self.since = self._monotonic()

    def hear(self, alive: Collection[str]) -> None:
        """A pass read these leases alive."""
        now = self._monotonic()
        self._heard.update(dict.fromkeys(alive, now))

    def unheard_for(self, node: str, alive: Collection[str]) -> float:
        """Seconds this leader has gone without hearing ``node``'s heartbeat, for the
        NotReady mark: 0 when its lease is alive, infinite when a pass of this term saw it
        alive before (etcd let its lease expire: a TTL of silence), else how long since the
        leader began to listen."""
        if node in alive:
            return 0.0
        if node in self._heard or self.since is None:
            return float("inf")
        return self._monotonic() - self.since

    def gone(self, node: str, alive: Collection[str]) -> bool:
        """Whether ``node`` counts as absent for what cannot be taken back: no lease in
        this read, and none seen by this leader for ``grace`` seconds since the latest of
        its last sight, the term's start and the last failed pass; never this process's own
        node while it holds its lease. Asked outside a pass (no term began), the caller's
        ``alive`` is the only evidence there is."""
        if node in alive or (node == self.own_node and self.holds_own_lease()):
            return False
        since = self.since
        if since is None:
            return True
        return self._monotonic() - max(self._heard.get(node, since), since) >= self.grace


__all__ = ["HEARTBEAT_GRACE", "Heartbeats"]
