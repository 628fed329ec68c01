"""The stack: a cgroup subtree that groups related cells of one space."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kukeon.api.container import OptionalDnsLabel
from kukeon.api.meta import (
    DEFAULT_PARENT,
    DnsLabel,
    Kind,
    KukeonModel,
    NodeLayerStatus,
    Resource,
    StatusBase,
)
from kukeon.api.states import StackState, StackStateField


class StackSpec(KukeonModel):
    """`id` repeats `metadata.name` (either may be omitted, the other fills it)."""

    id: OptionalDnsLabel = None
    """Repeats metadata.name (either may be omitted, the other fills it)."""
    realm_id: DnsLabel = DEFAULT_PARENT
    """The realm the stack is in (`default` when unset)."""
    space_id: DnsLabel = DEFAULT_PARENT
    """The space the stack is in (`default` when unset)."""


class StackStatus(StatusBase):
    state: StackStateField = StackState.PENDING
    nodes: dict[str, NodeLayerStatus] = Field(default_factory=dict)
    """Per node: what that node materialised (only nodes with cells in the stack)."""


class Stack(Resource[StackSpec, StackStatus]):
    has_spec_id: ClassVar[bool] = True

    kind: Literal[Kind.STACK] = Kind.STACK
    spec: StackSpec = Field(default_factory=StackSpec)
    status: StackStatus = Field(default_factory=StackStatus)
