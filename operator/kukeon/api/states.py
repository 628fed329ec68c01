"""The lifecycle states of every kind, spelled exactly as kukeon prints them.

Each kind has its own enum because not every state is meaningful for every kind (a stack is
never `Creating`, only a cell is `Degraded`). kukeon once persisted states as the integer
of its Go `iota` enum; documents carrying such an integer still load, mapped through the
order kukeon declared them in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator

from kukeon.api.observed import tolerant_enum


class RealmState(StrEnum):
    PENDING = "Pending"
    CREATING = "Creating"
    READY = "Ready"
    DELETING = "Deleting"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class SpaceState(StrEnum):
    PENDING = "Pending"
    CREATING = "Creating"
    READY = "Ready"
    DELETING = "Deleting"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class StackState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class CellState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    DEGRADED = "Degraded"
    STOPPED = "Stopped"
    EXITED = "Exited"
    ERROR = "Error"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class ContainerState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    STOPPED = "Stopped"
    PAUSED = "Paused"
    PAUSING = "Pausing"
    FAILED = "Failed"
    UNKNOWN = "Unknown"
    WAITING = "Waiting"
    """It ended and waits out its restart back-off (Kubernetes' ``state.waiting``)."""


class DesiredCellState(StrEnum):
    """What the user asks a cell to be: its containers running, or stopped but kept."""

    RUNNING = "Running"
    STOPPED = "Stopped"


def _from_kukeon_int(order: Sequence[str]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(order):
            return order[value]
        return value

    return convert


# kukeon's Go declaration order of each state enum (pkg/api/model/v1beta1). A state another
# (newer) version wrote and this one does not know is kept as written (``api.observed``).
RealmStateField = Annotated[
    RealmState,
    BeforeValidator(
        _from_kukeon_int(["Pending", "Creating", "Ready", "Deleting", "Failed", "Unknown"])
    ),
    tolerant_enum(RealmState),
]
SpaceStateField = Annotated[
    SpaceState,
    BeforeValidator(_from_kukeon_int(["Pending", "Ready", "Failed", "Unknown"])),
    tolerant_enum(SpaceState),
]
StackStateField = Annotated[
    StackState,
    BeforeValidator(_from_kukeon_int(["Pending", "Ready", "Failed", "Unknown"])),
    tolerant_enum(StackState),
]
CellStateField = Annotated[
    CellState,
    BeforeValidator(_from_kukeon_int(["Pending", "Ready", "Stopped", "Failed", "Unknown"])),
    tolerant_enum(CellState),
]
ContainerStateField = Annotated[
    ContainerState,
    BeforeValidator(
        _from_kukeon_int(["Pending", "Ready", "Stopped", "Paused", "Pausing", "Failed", "Unknown"])
    ),
    tolerant_enum(ContainerState),
]
