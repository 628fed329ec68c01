"""The space: one network (a bridge and its CNI config), an egress policy, container defaults.

A space is where the isolation envelope is declared once: `spec.defaults.container` flows
into every container created in it (see `defaults`), and `spec.network.egress` decides what
may leave its bridge.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from kukeon.api.container import Capabilities, OptionalAbsolutePath, Resources, TmpfsMount
from kukeon.api.meta import (
    DEFAULT_PARENT,
    Bool,
    DnsLabel,
    Int,
    Kind,
    KukeonModel,
    NodeLayerStatus,
    NullableList,
    OptionalString,
    Resource,
    StatusBase,
    quote,
)
from kukeon.api.states import SpaceState, SpaceStateField


class EgressDefault(StrEnum):
    """What happens to traffic that no allow rule matches."""

    ALLOW = "allow"
    DENY = "deny"


def check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port between 1 and 65535, got {value}")
    return value


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?"
)


def check_host(value: str) -> str:
    """A DNS name (resolved by the daemon when it applies the rule) or an IP address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.fullmatch(value):
            raise ValueError(f"{quote(value)} is not a host name or an IP address") from None
    return value


Port = Annotated[
    Int, AfterValidator(check_port), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]


class EgressAllowRule(KukeonModel):
    """One permitted destination: exactly one of `host` or `cidr`, optionally some TCP ports."""

    host: OptionalString = None
    """A destination host name or IP address."""
    cidr: OptionalString = Field(default=None, validate_default=True)
    """A destination network, `address/prefix-length`."""
    ports: NullableList[Port] = Field(default_factory=list)
    """TCP destination ports; empty means any port."""

    @field_validator("host")
    @classmethod
    def _valid_host(cls, host: str | None) -> str | None:
        return None if host is None else check_host(host)

    @field_validator("cidr")
    @classmethod
    def _exactly_one_destination(cls, cidr: str | None, info: ValidationInfo) -> str | None:
        if "host" not in info.data:
            return cidr  # host itself is invalid; that error is reported already
        host = info.data["host"]
        if host is None and cidr is None:
            raise ValueError("exactly one of host or cidr is required")
        if host is not None and cidr is not None:
            raise ValueError("exactly one of host or cidr may be set, not both")
        if cidr is not None:
            if "/" not in cidr:
                raise ValueError(f"{quote(cidr)} is not a CIDR (address/prefix-length)")
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{quote(cidr)} is not a valid CIDR: {quote(str(exc))}") from None
        return cidr


class EgressPolicy(KukeonModel):
    default: EgressDefault
    """allow or deny: what becomes of traffic leaving the space that no rule allows."""
    allow: NullableList[EgressAllowRule] = Field(default_factory=list)
    """Destinations the space's cells may always reach."""


class SpaceNetwork(KukeonModel):
    egress: EgressPolicy | None = None
    """What the space's cells may reach beyond their bridge (unset: everything but another
    realm's cells, which no policy reaches); not what a `hostNetwork` container or a cell
    on its own `cniConfigPath` network sends, which never crosses the bridge."""


class SpaceContainerDefaults(KukeonModel):
    """Isolation defaults a container of the space inherits for the fields it leaves unset."""

    user: OptionalString = None
    """As a container's `user`."""
    read_only_root_filesystem: Bool | None = None
    """As a container's `readOnlyRootFilesystem`."""
    capabilities: Capabilities | None = None
    """As a container's `capabilities`."""
    security_opts: NullableList[str] = Field(default_factory=list)
    """As a container's `securityOpts`."""
    tmpfs: NullableList[TmpfsMount] = Field(default_factory=list)
    """As a container's `tmpfs`."""
    resources: Resources | None = None
    """As a container's `resources`."""


class SpaceDefaults(KukeonModel):
    container: SpaceContainerDefaults | None = None
    """What a container of the space takes for the fields it leaves unset."""


class SpaceSpec(KukeonModel):
    realm_id: DnsLabel = DEFAULT_PARENT
    """The realm the space is in (`default` when unset)."""
    cni_config_path: OptionalAbsolutePath = None
    """Directory the space's CNI conflist is written to (the system one when unset)."""
    network: SpaceNetwork | None = None
    """The space network's policy."""
    defaults: SpaceDefaults | None = None
    """Isolation defaults for the space's containers."""


class SpaceNetworkStatus(KukeonModel):
    """The space's network as the node observed it: bridge, subnet and CNI conflist."""

    bridge_name: OptionalString = None
    subnet: OptionalString = None
    gateway: OptionalString = None
    cni_config_file: OptionalString = None


class SpaceNodeStatus(NodeLayerStatus):
    """One node's materialisation of a space: its cgroup and its network on that host."""

    bridge_name: OptionalString = None
    subnet: OptionalString = None
    """Allocated by the node from its own subnet pool: unique among the node's spaces."""
    gateway: OptionalString = None
    cni_config_file: OptionalString = None


class SpaceStatus(StatusBase):
    state: SpaceStateField = SpaceState.PENDING
    network: SpaceNetworkStatus = Field(default_factory=SpaceNetworkStatus)
    nodes: dict[str, SpaceNodeStatus] = Field(default_factory=dict)
    """Per node: what that node materialised (only nodes with cells in the space)."""


class Space(Resource[SpaceSpec, SpaceStatus]):
    kind: Literal[Kind.SPACE] = Kind.SPACE
    spec: SpaceSpec = Field(default_factory=SpaceSpec)
    status: SpaceStatus = Field(default_factory=SpaceStatus)
