"""Cells whose stored document cannot be decoded: left running, and said.

A cell document in etcd that does not decode (malformed JSON written by hand, a
truncated restore, a newer kukeon's document) is skipped by lists and watches, and the
orphan collector keeps what the host has of it (``layergc.local_cell_keys``): a decode
error is no request to stop a workload. Its containers run on, unmanaged (no restart, no
probe, no status written). This says so: a Warning Event ``DocumentUnreadable`` on the
cell naming the etcd key and the decode error (once per bad version), the node's
condition ``CellDocumentsUnreadable`` (written into the Node's status when it changes; the
heartbeat keeps the conditions it does not write), beside the registry's
``kukeon_registry_invalid_documents{kind="Cell"}``. A fixed document is delivered by the
watch and managed again; once a bad one is fixed or deleted, an orphan pass runs at once,
so a deleted cell's containers go now, not at the periodic pass (``GC_INTERVAL_SECONDS``).

Who says it: in a fleet every kukeond watches every cell, so each would report every bad
document, run there or not. A node reports the bad documents of the cells it has
containers of (found by their labels: the document cannot say where the cell runs), and
the fleet's leader (the scheduler's) reports every bad document, so one whose cell runs
nowhere is still said, once, and each bad document by two nodes at most.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from kukeon.api import EventReason, EventType, InvolvedObject, Kind, Node, NodeCondition
from kukeon.framework import ConvergeGate, EventRecorder
from kukeon.framework.statusbound import bounded
from kukeon.store import Conflict, InvalidStoredDocument, NotFound, Registry, StoreError

log = logging.getLogger(__name__)

CONDITION = "CellDocumentsUnreadable"
"""The Node condition: True while some cell's stored document cannot be decoded."""

LOOK_SECONDS = 2.0
"""How often the registry's record of undecodable documents is looked at (in memory:
kukeond's watch of every cell keeps it current)."""

_NAMED = 5
"""Documents named in the condition's message; the rest are counted."""

Unreadable = tuple[tuple[str, ...], str, int, str]
"""A cell's key, its etcd key, the revision of the bad document, and the decode error."""


class UnreadableCells:
    """Says which cell documents cannot be decoded; runs an orphan pass when one goes."""

    def __init__(
        self,
        *,
        registry: Registry,
        node_name: str,
        collect_orphans: Callable[[], Awaitable[list[str]]],
        local_cells: Callable[[], Awaitable[set[tuple[str, ...]]]],
        recorder: EventRecorder | None = None,
    ) -> None:
        self._registry = registry
        self._node_name = node_name
        self._collect_orphans = collect_orphans
        self._local_cells = local_cells
        """The keys of the cells this host has containers of."""
        self._recorder = recorder
        self.leads: Callable[[], bool] = lambda: True
        """Whether this node leads the fleet (reports every bad document); the fleet's
        start sets it to the scheduler's election (alone, a node leads)."""
        self.gate = ConvergeGate()
        """A look (it writes this node's Node, runs orphan passes) waits while closed."""
        self.current: list[Unreadable] = []
        """What the last look found that this node reports."""
        self._found = 0
        """How many bad documents the last look found, reported here or not."""
        self._seen: set[tuple[str, ...]] = set()
        """The keys of every bad document the last look found, reported here or not."""
        self._running: set[tuple[str, ...]] = set()
        """What ``local_cells`` last answered (kept while containerd does not answer)."""
        self._told: dict[tuple[str, ...], int] = {}
        """Cell key -> the revision of the bad document its Event named."""
        self._on_node: tuple[str, str] | None = None
        """The condition's status and message last written into the Node."""

    def condition(self, now: datetime) -> NodeCondition:
        """The node's ``CellDocumentsUnreadable`` condition, as of the last look."""
        current, found = self.current, self._found
        if not current:
            return NodeCondition(
                type=CONDITION,
                status="False",
                reason="UnreadableCellsElsewhere" if found else "CellDocumentsReadable",
                message=(
                    f"{found} cell document(s) in etcd cannot be decoded, of cells this node "
                    "does not run (their nodes and the scheduler's leader say which)"
                    if found
                    else "every cell document in etcd decodes"
                ),
                last_transition_time=now,
            )
        named = "; ".join(f"{key}: {why}" for _, key, _, why in current[:_NAMED])
        more = f"; and {len(current) - _NAMED} more" if len(current) > _NAMED else ""
        which = (
            f"{len(current)} document(s) of cells this node runs ({found} in etcd in all)"
            if found > len(current)
            else f"{len(current)} cell document(s) in etcd"
        )
        return NodeCondition(
            type=CONDITION,
            status="True",
            reason="UnreadableCellDocuments",
            message=(
                f"{which} cannot be decoded; what this node runs of them is left running, "
                f"unmanaged, until each is fixed or deleted: {named}{more}"
            ),
            last_transition_time=now,
        )

    async def run(self) -> None:
        while True:
            await self.gate.wait_open()
            await self.look()
            await asyncio.sleep(LOOK_SECONDS)

    async def _reported(self, everything: list[Unreadable]) -> list[Unreadable]:
        """Of ``everything``, what this node says: all of it when it leads, else the
        documents of the cells it has containers of."""
        if not everything or self.leads():
            return everything
        try:
            self._running = await self._local_cells()
        except Exception as error:  # containerd away: what it last answered
            log.info("listing this node's cells for %s failed (%s)", CONDITION, error)
        return [unreadable for unreadable in everything if unreadable[0] in self._running]

    async def look(self) -> None:
        """Tell of each new bad document; an orphan pass when some are fixed or gone."""
        everything = self._registry.invalid_documents_under(Kind.CELL)
        current = await self._reported(everything)
        self.current, self._found = current, len(everything)
        try:
            await self._say_on_node(self.condition(datetime.now(UTC)))
        except StoreError as error:  # etcd away: the next look writes it
            log.info("writing node condition %s failed (%s); next look again", CONDITION, error)
        for key, raw_key, revision, why in current:
            if self._told.get(key) != revision:
                self._told[key] = revision
                self._tell(key, raw_key, revision, why)
        present = {key for key, *_ in everything}
        for key in [key for key in self._told if key not in present]:
            del self._told[key]
        settled = sorted(self._seen - present)
        self._seen = present
        if settled:
            # Fixed: the watch delivered it (kept); deleted: what the host has of it goes.
            removed = await self._collect_orphans()
            log.info(
                "cell document(s) %s readable or deleted again: orphan pass removed %s",
                ", ".join("/".join(key) for key in settled),
                ", ".join(removed) or "nothing",
            )

    async def _say_on_node(self, wanted: NodeCondition) -> None:
        """Write ``wanted`` into this node's status unless it says what was last written.
        No Node (not registered yet) or an undecodable one (/readyz names it): not now."""
        said = (wanted.status, wanted.message or "")
        if said == self._on_node:
            return
        for _ in range(10):
            try:
                node = await self._registry.get(Kind.NODE, (self._node_name,))
            except (NotFound, InvalidStoredDocument):
                return
            assert isinstance(node, Node)
            kept = [c for c in node.status.conditions if c.type != CONDITION]
            for old in node.status.conditions:
                if old.type == CONDITION and old.status == wanted.status:
                    wanted = wanted.model_copy(
                        update={"last_transition_time": old.last_transition_time}
                    )
            status = node.status.model_copy(update={"conditions": [*kept, wanted]})
            try:
                await self._registry.update_status(
                    bounded(node.model_copy(update={"status": status}))
                )
            except Conflict:  # the heartbeat wrote meanwhile
                continue
            self._on_node = said
            return

    def _tell(self, key: tuple[str, ...], raw_key: str, revision: int, why: str) -> None:
        if self._recorder is None:
            return
        try:
            involved = InvolvedObject.of(Kind.CELL.value, key, None)
        except ValueError:  # a key no cell can have: the registry's warning names it
            return
        self._recorder.record(
            involved,
            EventReason.DOCUMENT_UNREADABLE,
            f"the cell's document in etcd cannot be decoded ({raw_key}, revision {revision}: "
            f"{why}); node {self._node_name} leaves what it runs of the cell running, "
            f"unmanaged, until the document is fixed or deleted",
            type=EventType.WARNING,
        )
