"""The realm: a tenant, materialised as a containerd namespace and a cgroup subtree."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kukeon.api.container import NonEmptyString
from kukeon.api.meta import (
    GROUP,
    Kind,
    KukeonModel,
    NodeLayerStatus,
    NullableList,
    OptionalString,
    Resource,
)
from kukeon.api.meta import StatusBase as _StatusBase
from kukeon.api.states import RealmState, RealmStateField


def default_namespace(realm: str) -> str:
    """The containerd namespace of a realm that does not name one."""
    return f"{realm}.{GROUP}"


class RegistryCredentials(KukeonModel):
    """Credentials for one registry; without `serverAddress` they match any image's registry."""

    username: NonEmptyString
    password: str
    server_address: OptionalString = None


class RealmSpec(KukeonModel):
    namespace: OptionalString = None
    """containerd namespace of the realm; `<name>.kukeon.io` when unset."""
    registry_credentials: NullableList[RegistryCredentials] = Field(default_factory=list)


class RealmStatus(_StatusBase):
    state: RealmStateField = RealmState.PENDING
    containerd_namespace_ready: bool = False
    nodes: dict[str, NodeLayerStatus] = Field(default_factory=dict)
    """Per node: what that node materialised (only nodes with cells in the realm)."""


class Realm(Resource[RealmSpec, RealmStatus]):
    """A realm. `spec.namespace` defaults to `<name>.kukeon.io`."""

    kind: Literal[Kind.REALM] = Kind.REALM
    spec: RealmSpec = Field(default_factory=RealmSpec)
    status: RealmStatus = Field(default_factory=RealmStatus)

    @model_validator(mode="after")
    def _fill_namespace(self) -> Realm:
        if self.spec.namespace is None:
            namespace = default_namespace(self.metadata.name)
            self.spec = self.spec.model_copy(update={"namespace": namespace})
        return self
