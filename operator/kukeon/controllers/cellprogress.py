"""What a cell's pass writes before its end: a pull's note, an exit recorded at once."""

from __future__ import annotations

from kukeon.api import Cell, CellState, ContainerSpec, ContainerStatus
from kukeon.framework import HandlerContext

from .reporting import report


def ordered_containers(cell: Cell) -> list[ContainerSpec]:
    """Root container first, the others in manifest order."""
    if not cell.spec.containers:
        return []
    root = cell.spec.root_container()
    return [root, *(c for c in cell.spec.containers if c.id != root.id)]


class PassProgress:
    """The cell as last written during a pass: a pull's note, an exit recorded at once."""

    def __init__(self, ctx: HandlerContext, cell: Cell) -> None:
        self.ctx = ctx
        self.cell = cell
        self.previous = {status.id: status for status in cell.status.containers}
        """The containers' statuses when the pass began."""

    async def pulling(self, image: str) -> None:
        # A pull may take minutes: say so (run --wait and get show it); the pass's own
        # report replaces the note. A retry after a failure keeps the failure said (the
        # Pulling Event still tells): a Failed cell whose reason is "Pulling" says neither.
        if self.cell.status.state in (CellState.FAILED, CellState.ERROR):
            return
        if self.cell.status.state == CellState.DEGRADED:
            return  # an update held (a sibling's pull too) or a back-off: still true
        self.cell = await report(
            self.ctx, self.cell, observe=False, reason="Pulling", message=f"pulling image {image}"
        )

    async def record(self, *statuses: ContainerStatus) -> None:
        """Write these containers' statuses now: an exit time containerd does not know,
        that later passes must find to keep the restart's timer where it started, or a
        restart made by a pass that fails after it."""
        if not statuses:
            return
        written = {status.id for status in statuses}
        containers = [c for c in self.cell.status.containers if c.id not in written]
        containers.extend(statuses)
        order = {c.id: index for index, c in enumerate(ordered_containers(self.cell))}
        containers.sort(key=lambda c: order.get(c.id, len(order)))
        self.cell = await report(self.ctx, self.cell, observe=False, containers=containers)
