"""How `get` and `describe` show a CellSet: its table columns and its status lines."""

from __future__ import annotations

from kukeon.api import CellSet


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
        lines.append(f"  {condition.type:<12} {condition.status:<5} {why}".rstrip())
    if not status.conditions:
        lines.append("  <none>")
    return lines
