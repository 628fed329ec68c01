"""The cell: a pod of containers sharing the root container's network namespace.

Besides kukeon's v1beta1 fields, a cell carries what this control plane needs to run it on
a fleet: `desiredState` (keep it running, or stop it without deleting it), `nodeName` (the
node that runs it) and `nodeSelector` (labels a node must carry to be chosen).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from kukeon.api.container import ContainerSpec, ContainerStatus, OptionalDnsLabel
from kukeon.api.meta import (
    DEFAULT_PARENT,
    Bool,
    DnsLabel,
    DnsSubdomain,
    Int,
    Kind,
    KukeonModel,
    NullableList,
    OptionalString,
    Resource,
    StatusBase,
    StringMap,
)
from kukeon.api.states import CellState, CellStateField, DesiredCellState


def _empty_as_none(value: object) -> object:
    return None if value == "" else value


OptionalDnsSubdomain = Annotated[DnsSubdomain | None, BeforeValidator(_empty_as_none)]


def _ip_address(value: str | None) -> str | None:
    if value is not None:
        ipaddress.ip_address(value)  # its ValueError is the field's 422
    return value


OptionalIpAddress = Annotated[OptionalString, AfterValidator(_ip_address)]
"""An IPv4 or IPv6 address: the cell's peers are listed by it (controllers.cellpeers)."""


class CellTty(KukeonModel):
    """`default` names the attachable container that `attach` picks when none is given."""

    default: OptionalDnsLabel = None
    """The attachable container `attach` connects to when none is named."""


TERMINATION_GRACE_MAX = 3600
"""The longest stop grace a cell may ask for (an hour)."""


class CellSpec(KukeonModel):
    id: OptionalDnsLabel = None
    """Repeats metadata.name (either may be omitted, the other fills it)."""
    realm_id: DnsLabel = DEFAULT_PARENT
    """The realm the cell is in (`default` when unset)."""
    space_id: DnsLabel = DEFAULT_PARENT
    """The space the cell is in, whose network its first interface is on (`default`)."""
    stack_id: DnsLabel = DEFAULT_PARENT
    """The stack the cell is in (`default` when unset)."""
    root_container_id: OptionalDnsLabel = None
    """The root container; else the one with root: true, else the first."""
    tty: CellTty | None = None
    """Which attachable container `attach` picks by default."""
    containers: NullableList[ContainerSpec]
    auto_delete: Bool = False
    """Delete the cell once its root container has exited (after it was Ready)."""
    nested_cgroup_runtime: Bool = False
    """Delegate every cgroup controller the host offers, for a runtime nested inside."""
    host_users: Bool | None = None
    """Kubernetes' pod field: false runs the cell's containers in a user namespace, their ids
    0-65535 mapped to the realm's range of host ids on its node (root inside is no one on
    the host); refused with privileged, hostNetwork, hostPID, hostCgroup, devices and
    nestedCgroupRuntime. Unset or true: the host's users. Fixed for the cell's life (an update
    changing it is refused): docs/user-namespaces.md."""
    desired_state: DesiredCellState = DesiredCellState.RUNNING
    """Running, or Stopped: containers stopped but the cell kept."""
    termination_grace_period_seconds: Int | None = Field(
        default=None, ge=0, le=TERMINATION_GRACE_MAX
    )
    """Seconds a container has to exit after its stop signal (SIGTERM) before SIGKILL, when
    the cell is stopped, deleted, or a container replaced or restarted (Kubernetes' pod
    field, docker's --stop-timeout); 0: SIGKILL at once; kukeond's `stopGraceSeconds` (10 s)
    when unset. A probe's own `terminationGracePeriodSeconds` wins for its stops."""
    node_name: OptionalDnsSubdomain = None
    """The node that runs the cell, a DNS-1123 name; set by the user or the scheduler."""
    node_selector: StringMap = Field(default_factory=dict)
    """Labels a node must carry to be chosen for the cell."""

    def in_user_namespace(self) -> bool:
        """Whether the cell's containers run in a user namespace (`hostUsers: false`)."""
        return self.host_users is False

    def root_container(self) -> ContainerSpec:
        """The container that owns the network namespace, resolved as kukeon does.

        `rootContainerId` if set, else the container with `root: true`, else the first.
        Raises LookupError when the cell has no containers or names a missing one
        (a validated cell never does).
        """
        if self.root_container_id is not None:
            for container in self.containers:
                if container.id == self.root_container_id:
                    return container
            raise LookupError(f"no container with id {self.root_container_id!r}")
        for container in self.containers:
            if container.root:
                return container
        if not self.containers:
            raise LookupError("the cell has no containers")
        return self.containers[0]

    def joined_spaces(self) -> list[str]:
        """The spaces whose networks the cell joins: every container's `networks` (they all
        share the root container's network namespace), root container first, each once."""
        if not self.containers:
            return []
        root = self.root_container()
        seen: dict[str, None] = {}
        for container in [root, *(c for c in self.containers if c.id != root.id)]:
            for name in container.networks:
                seen.setdefault(name, None)
        return list(seen)

    def joined_space_keys(self) -> frozenset[tuple[str, str]]:
        """(realm, space) of each space the cell joins beyond its own."""
        return frozenset(
            (self.realm_id, name) for name in self.joined_spaces() if name != self.space_id
        )


class CellInterfaceStatus(KukeonModel):
    """One interface of the cell's network namespace."""

    interface: str
    """`eth0` (the space's network, or the root container's `cniConfigPath`), `eth1`..."""
    space: OptionalString = None
    """The space whose network it is on; unset for the root container's own `cniConfigPath`."""
    network: OptionalString = None
    """The CNI network's name."""
    ip: OptionalIpAddress = None


class CellNetworkStatus(KukeonModel):
    bridge_name: OptionalString = None
    ip: OptionalIpAddress = None
    """The cell's address on its first interface (shared by all its containers)."""
    interfaces: NullableList[CellInterfaceStatus] = Field(default_factory=list)
    """Every interface: the first one, then one per space its containers' `networks` join."""


class CellStatus(StatusBase):
    state: CellStateField = CellState.PENDING
    # One-way latch: set the first time the cell is seen Ready; gates autoDelete.
    ready_observed: Bool = False
    network: CellNetworkStatus = Field(default_factory=CellNetworkStatus)
    containers: NullableList[ContainerStatus] = Field(default_factory=list)


class Cell(Resource[CellSpec, CellStatus]):
    has_spec_id: ClassVar[bool] = True

    kind: Literal[Kind.CELL] = Kind.CELL
    spec: CellSpec
    status: CellStatus = Field(default_factory=CellStatus)
