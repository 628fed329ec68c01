"""How `get` and `describe` show a CellSet: its table columns, its status and its cells."""

from __future__ import annotations

from collections.abc import Sequence

from kukeon.api import CELLSET_LABEL, TEMPLATE_HASH_LABEL, AnyResource, Cell, CellSet, Kind, key_of
from kukeon.client.apiclient import ApiClient


def set_columns() -> list[str]:
    return ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]


def set_row(res: CellSet) -> list[str]:
    status = res.status
    return [
        res.metadata.name,
        f"{status.ready_replicas}/{res.spec.replicas}",
        str(status.updated_replicas),
        str(status.available_replicas),
    ]


def set_status_lines(res: CellSet) -> list[str]:
    status = res.status
    lines = [
        "Status:",
        f"  Replicas:            {status.replicas} ({res.spec.replicas} desired)",
        f"  Ready:               {status.ready_replicas}",
        f"  Up-to-date:          {status.updated_replicas}",
        f"  Available:           {status.available_replicas}",
        f"  Template Hash:       {status.template_hash or '<none>'}",
        f"  Observed Generation: {status.observed_generation}",
        "Conditions:",
    ]
    for condition in status.conditions:
        why = f"{condition.reason}: {condition.message}" if condition.reason else ""
        lines.append(f"  {condition.type:<14} {condition.status:<5} {why}".rstrip())
    if not status.conditions:
        lines.append("  <none>")
    return lines


def set_cell_lines(res: CellSet, cells: Sequence[Cell]) -> list[str]:
    """The ``Cells:`` table of a set's describe page: each cell's state, node and template."""
    if not cells:
        return ["Cells:", "  <none>"]
    current = res.template_hash()
    rows = [("NAME", "STATE", "NODE", "TEMPLATE")]
    for cell in sorted(cells, key=lambda c: c.metadata.name):
        hash_ = cell.metadata.labels.get(TEMPLATE_HASH_LABEL, "")
        state = "Deleting" if cell.metadata.deletion_timestamp else str(cell.status.state)
        template = f"{hash_} (current)" if hash_ == current else f"{hash_} (old)"
        rows.append((cell.metadata.name, state, cell.spec.node_name or "<none>", template))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["Cells:"] + [
        "  " + "  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]) for row in rows
    ]


async def set_members(client: ApiClient, res: AnyResource) -> list[Cell]:
    """The cells of ``res`` when it is a CellSet (labelled with its name in its stack)."""
    if not isinstance(res, CellSet):
        return []
    scope = key_of(res)[:-1]
    listed = await client.list(
        Kind.CELL, scope, label_selector=f"{CELLSET_LABEL}={res.metadata.name}"
    )
    return [cell for cell in listed.items if isinstance(cell, Cell)]
