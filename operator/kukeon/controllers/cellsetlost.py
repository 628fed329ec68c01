"""A set's cells on a lost node are placed elsewhere after ``lostNode.replaceAfterSeconds``.

The scheduler marks a node whose heartbeat lease is gone ``NotReady`` (and its cells
``Unknown``, so the set counts them unavailable), and moves the cells it placed there
after ``--node-lost-timeout`` (300 s by default). A set asks for less: once the node has
been NotReady for ``replaceAfterSeconds`` (default 60), the set controller clears the
``nodeName`` of each of the set's scheduler-placed cells there, and the scheduler places
them on a Ready node, the same cells under the same names, so the set never has more
cells than before. Cells pinned with ``nodeName`` in the template stay and wait. How long
a node has been NotReady is this leader's monotonic count (``nodelost.LostTimer``), which
no step of the wall clock advances.

The old copies: a node cut off from etcd fences itself (stops its scheduler-placed cells)
after ``fenceAfterSeconds``, by default the lease TTL, so before the node is even
NotReady; a node whose kukeond is down cannot, and its copies run until it returns, when
it stops them before it reports Ready (``controllers.departures``: ``stopOnReturn``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from kukeon.api import Cell, CellSet, Node, NodeState, key_of
from kukeon.api.placement import is_scheduler_placed
from kukeon.store import Conflict, NotFound, Registry

log = logging.getLogger(__name__)


def not_ready(nodes: Iterable[Node]) -> list[Node]:
    """The nodes the scheduler marked NotReady (what a set moves its cells off)."""
    return [node for node in nodes if node.status.state == NodeState.NOT_READY]


def to_move(cellset: CellSet, cells: Sequence[Cell], lost: Mapping[str, float]) -> list[Cell]:
    """The set's scheduler-placed cells on nodes lost for ``replaceAfterSeconds``."""
    after = cellset.spec.lost_node.replace_after_seconds
    return [
        cell
        for cell in cells
        if lost.get(cell.spec.node_name or "", -1.0) >= after
        and is_scheduler_placed(cell)
        and cell.metadata.deletion_timestamp is None
    ]


async def move_off_lost_nodes(registry: Registry, cells: Sequence[Cell]) -> None:
    """Clear each cell's ``nodeName`` (compare-and-swap): the scheduler places it again."""
    for cell in cells:
        log.info(
            "cell %s: node %s lost, placing it elsewhere",
            "/".join(key_of(cell)),
            cell.spec.node_name,
        )
        moved = cell.model_copy(update={"spec": cell.spec.model_copy(update={"node_name": None})})
        try:
            await registry.update(moved, placement=True)
        except (Conflict, NotFound):
            continue  # changed meanwhile: the next pass decides again
