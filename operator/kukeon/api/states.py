"""The lifecycle states of every kind, spelled exactly as kukeon prints them.

Each kind has its own enum because not every state is meaningful for every kind (a stack is
never `Creating`, only a cell is `Degraded`). kukeon once persisted states as the integer
of its Go `iota` enum; documents carrying such an integer still load, mapped through the
order kukeon declared them in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    """Where a container's run stands, as Kubernetes' ``state`` (waiting, running,
    terminated); whether it serves is its ``ready`` flag, apart."""

    PENDING = "Pending"
    RUNNING = "Running"
    """Its task runs (``ready`` says whether its probes let it serve). Written ``Ready``
    before, which read as the readiness its ``ready: false`` beside it denied: that
    spelling is still read, as ``Running`` (`RENAMED_CONTAINER_STATES`)."""
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


def _from_kukeon_int(
    order: Sequence[str], renamed: Mapping[str, str] | None = None
) -> Callable[[Any], Any]:
    """The state a stored value means: an integer by its place in `order`, a value since
    renamed (`renamed`: old spelling -> new) by its new spelling."""

    def convert(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(order):
            return order[value]
        if renamed and isinstance(value, str):
            return renamed.get(value, value)
        return value

    return convert


RENAMED_CONTAINER_STATES = {"Ready": "Running"}
"""Container states written under another spelling by earlier versions, read as the new
one: a cell stored before (or by an older node of the fleet) loads as it was meant."""


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
        _from_kukeon_int(
            ["Pending", "Running", "Stopped", "Paused", "Pausing", "Failed", "Unknown"],
            RENAMED_CONTAINER_STATES,
        )
    ),
    tolerant_enum(ContainerState),
]
