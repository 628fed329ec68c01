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
    DnsLabel,
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
    int, AfterValidator(check_port), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]


class EgressAllowRule(KukeonModel):
    """One permitted destination: exactly one of `host` or `cidr`, optionally some TCP ports."""

    host: OptionalString = None
    cidr: OptionalString = Field(default=None, validate_default=True)
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
    allow: NullableList[EgressAllowRule] = Field(default_factory=list)


class SpaceNetwork(KukeonModel):
    egress: EgressPolicy | None = None


class SpaceContainerDefaults(KukeonModel):
    """Isolation defaults a container of the space inherits for the fields it leaves unset."""

    user: OptionalString = None
    read_only_root_filesystem: bool | None = None
    capabilities: Capabilities | None = None
    security_opts: NullableList[str] = Field(default_factory=list)
    tmpfs: NullableList[TmpfsMount] = Field(default_factory=list)
    resources: Resources | None = None


class SpaceDefaults(KukeonModel):
    container: SpaceContainerDefaults | None = None


class SpaceSpec(KukeonModel):
    realm_id: DnsLabel = DEFAULT_PARENT
    cni_config_path: OptionalAbsolutePath = None
    """Directory the space's CNI conflist is written to (the system one when unset)."""
    network: SpaceNetwork | None = None
    defaults: SpaceDefaults | None = None


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
