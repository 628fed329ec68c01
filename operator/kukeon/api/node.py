"""The node: one kukeond host of the fleet, registered by that kukeond itself.

A node is a top-level kind (no parent). Its labels (`metadata.labels`) are what a cell's
`nodeSelector` matches; `spec.unschedulable` is the cordon. The status is written by the
node's own kukeond (capacity, addresses, heartbeat) and by the scheduler leader, which
marks a node `NotReady` when its heartbeat lease is gone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from kukeon.api.meta import (
    Bool,
    Int,
    Kind,
    KukeonModel,
    NullableList,
    OptionalString,
    Resource,
    Timestamp,
)
from kukeon.api.observed import tolerant_enum, tolerant_word

SCHEDULED_BY_ANNOTATION = "kukeon.io/scheduled-by"
"""On a cell whose `nodeName` the scheduler chose (value `scheduler`); absent: user-pinned."""
SCHEDULED_BY_SCHEDULER = "scheduler"


class NodeState(StrEnum):
    READY = "Ready"
    NOT_READY = "NotReady"
    UNKNOWN = "Unknown"


class NodeSpec(KukeonModel):
    unschedulable: Bool = False
    """Cordoned: the scheduler places no new cell here (running cells stay)."""


class NodeAddress(KukeonModel):
    type: str
    """`InternalIP`, `Hostname`, ..."""
    address: str


class NodeResources(KukeonModel):
    cpus: Int = Field(default=0, ge=0)
    memory_bytes: Int = Field(default=0, ge=0)
    cgroup_mode: OptionalString = None
    """`v2`, `v1` or `hybrid`, as detected on the host."""
    containerd_version: OptionalString = None
    runc_version: OptionalString = None
    cni_plugins: NullableList[str] = Field(default_factory=list)


RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
"""The node condition that is `True` while the node's kukeond cannot reach its containerd: its
cells run on (their shims hold them) but nothing is started, stopped or observed there, so
the scheduler places no new cell on it (the node stays Ready: its cells are not moved)."""


DISK_PRESSURE = "DiskPressure"
"""The node condition that is `True` while the filesystem of kukeond's state directory (its
containers' logs, network leases and records, an embedded etcd's data) is nearly full: the
scheduler places no new cell there (a cell that runs goes on; its logs say what they
dropped)."""


class NodeCondition(KukeonModel):
    type: str
    """`Ready`, `MemoryPressure`, `DiskPressure`, `RuntimeUnavailable`,
    `CellDocumentsUnreadable`, `KeyRotationInterrupted`."""
    status: Annotated[Literal["True", "False", "Unknown"], tolerant_word()] = "Unknown"
    reason: OptionalString = None
    message: OptionalString = None
    last_transition_time: Timestamp = None


class NodeStatus(KukeonModel):
    state: Annotated[NodeState, tolerant_enum(NodeState)] = NodeState.UNKNOWN
    reason: OptionalString = None
    message: OptionalString = None
    addresses: NullableList[NodeAddress] = Field(default_factory=list)
    api_endpoint: OptionalString = None
    """`https://<InternalIP>:<port>` of the node's TCP API, where the other nodes forward
    requests for its cells (logs, exec, kill); None when it serves no TCP listener."""
    capacity: NodeResources = Field(default_factory=NodeResources)
    allocatable: NodeResources = Field(default_factory=NodeResources)
    """What cells may use: capacity minus what the host keeps for itself."""
    conditions: NullableList[NodeCondition] = Field(default_factory=list)
    last_heartbeat_time: Timestamp = None
    observed_generation: Int = Field(default=0, ge=0)
    node_name: OptionalString = None
    """The kukeond that wrote this status last (the node itself, or the scheduler leader)."""
    updated_at: Timestamp = None


class Node(Resource[NodeSpec, NodeStatus]):
    """A kukeond host; its name is the daemon's `nodeName`."""

    kind: Literal[Kind.NODE] = Kind.NODE
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus = Field(default_factory=NodeStatus)
