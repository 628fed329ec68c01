"""The realm: a tenant, materialised as a containerd namespace and a cgroup subtree."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

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


class SecurityLevel(StrEnum):
    """How much of the host a realm's non-admin writers may ask for (see docs/kukectl.md).

    Modelled on Kubernetes' Pod Security Standards; enforced by the API server's admission
    (`kukeon.apiserver.admission`) on every write by a role other than admin. Only an admin
    sets or changes it.
    """

    RESTRICTED = "restricted"
    BASELINE = "baseline"
    PRIVILEGED = "privileged"


def _empty_level_as_none(value: Any) -> Any:
    return None if value == "" else value


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
    security_level: Annotated[SecurityLevel | None, BeforeValidator(_empty_level_as_none)] = None
    """restricted (when unset), baseline or privileged: what editors may ask of the host in
    this realm. Only an admin may set or change it."""

    @property
    def level(self) -> SecurityLevel:
        """The effective security level: unset means restricted."""
        return self.security_level or SecurityLevel.RESTRICTED


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
