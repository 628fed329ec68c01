"""The realm: a tenant, materialised as a containerd namespace and a cgroup subtree."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SerializationInfo,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from kukeon.api.container import (
    EPHEMERAL_STORAGE_MIN,
    MEMORY_LIMIT_MAX,
    MEMORY_LIMIT_MIN,
    PIDS_LIMIT_MAX,
    NonEmptyString,
    containerd_identifier,
    is_containerd_identifier,
)
from kukeon.api.imageref import normalize_registry_host
from kukeon.api.meta import (
    GROUP,
    INT64_MAX,
    Bool,
    Int,
    Kind,
    KukeonModel,
    NodeLayerStatus,
    NullableList,
    OptionalString,
    Resource,
    quote,
)
from kukeon.api.meta import StatusBase as _StatusBase
from kukeon.api.secret import SecretKeyRef
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


def default_namespace(realm: str, instance: str = "") -> str:
    """The containerd namespace of a realm that does not name one: `<realm>.kukeon.io`
    (`<realm>.<instance>.kukeon.io` for another control plane's on the same containerd),
    shortened as ``containerd_identifier`` says when containerd would refuse that (a `_`
    marks it: neither a realm name nor an instance tag holds one)."""
    middle = f".{instance}" if instance else ""
    return containerd_identifier(f"{realm}{middle}", mark="_", suffix=f".{GROUP}")


REVEAL_CONTEXT = "kukeon.reveal"
"""Serialisation context key under which a password is written as itself (client side)."""
REDACTED_PASSWORD = "***"
"""What every serialisation shows of an inline registry password (see `RegistryCredentials`)."""


class RegistryCredentials(KukeonModel):
    """Credentials for one registry, the one `serverAddress` names (required on every write).

    The password is `passwordSecretRef` (a key of a Secret of the realm) or, for kukeon
    compatibility, inline `password`: stored encrypted and always serialised as `"***"`;
    an update that sends `"***"` back keeps the stored password.
    """

    username: NonEmptyString
    """The registry user."""
    password: OptionalString = None
    """The password inline (stored encrypted, shown as `***`); or `passwordSecretRef`."""
    password_secret_ref: SecretKeyRef | None = Field(default=None, validate_default=True)
    """A key of a realm-scoped Secret holding the password."""
    server_address: OptionalString = None
    """The registry, `host[:port]` (a URL such as `https://index.docker.io/v1/` is read
    as its host). Required: a write without it is refused (422). A credential stored
    without it (before it was required) is sent to no registry, the realm's status says
    so: it went to any registry a cell of the realm named, so whoever writes cells there
    read the password by naming a registry of theirs."""

    @field_validator("password_secret_ref")
    @classmethod
    def _one_password(cls, ref: SecretKeyRef | None, info: ValidationInfo) -> SecretKeyRef | None:
        if "password" not in info.data:
            return ref
        if (info.data["password"] is None) == (ref is None):
            raise ValueError("exactly one of password or passwordSecretRef is required")
        return ref

    @field_serializer("password")
    def _redacted(self, password: str | None, info: SerializationInfo) -> str | None:
        if password is None:
            return None
        # Only a client sending its own manifest asks for the value (`to_request_document`).
        reveal = isinstance(info.context, dict) and info.context.get(REVEAL_CONTEXT) is True
        return password if reveal else REDACTED_PASSWORD


QUOTA_OBJECTS_MAX = 10_000_000
QUOTA_BYTES_MAX = 1 << 40
WRITE_RATE_MAX = 1 << 30


class RealmQuota(KukeonModel):
    """How much of the shared etcd the realm's objects may take (Kubernetes' ResourceQuota,
    kept on the realm). A limit left unset is kukeond's default (`--realm-quota-objects`,
    `--realm-quota-storage-bytes`, `realmWriteBytesPerSecond`); only an admin sets or
    changes any.

    What counts: the realm's spaces, stacks, cells, cell sets, secrets and cell profiles,
    whoever wrote them (a cell set's cells included); `spaces` counts its spaces alone. A
    create over a limit is refused (HTTP 403), as is a spec update that makes a document
    bigger; deletes always pass.
    """

    objects: Int | None = Field(default=None, ge=0, le=QUOTA_OBJECTS_MAX)
    """How many objects the realm may hold."""
    storage_bytes: Int | None = Field(default=None, ge=0, le=QUOTA_BYTES_MAX)
    """How many bytes their stored documents (keys and values, as etcd holds them) may take."""
    spaces: Int | None = Field(default=None, ge=0, le=QUOTA_OBJECTS_MAX)
    """How many spaces the realm may hold. Each takes a bridge and a subnet of a node's
    subnet pool on every node it runs cells on (one naming a `cniConfigPath` too: that is
    only where its conflist goes), so a realm without it may take a node's whole pool and
    leave no subnet for any other realm's spaces. Unset: no limit (kukeond has no default);
    a space create over it is refused (HTTP 403)."""
    image_storage_bytes: Int | None = Field(default=None, ge=0, le=QUOTA_BYTES_MAX)
    """How many bytes of image content (containerd's blobs as stored: compressed layers,
    configs, manifests; a blob two of its images share counts once) the realm may hold on
    each node: a `kukectl image import` or `kukectl image pull` that would pass it is
    refused (403), and so is a node's pull or import of the image a cell names (the cell
    fails with ImageUnavailable). 0: no bound; unset: kukeond's `realmImageStorageBytes`
    (0, none, unless set)."""
    write_bytes_per_second: Int | None = Field(default=None, ge=0, le=WRITE_RATE_MAX)
    """How many bytes the realm's writes through an API server may add to etcd a second,
    sustained (its write budget; every version stays in etcd's history until compacted):
    past it a write by a non-admin is answered 429 with Retry-After. 0: no bound; unset:
    kukeond's `realmWriteBytesPerSecond`. Each kukeond's API server counts its own."""


REALM_PIDS_START_MIN = 8
"""The least ``spec.limits.pids`` a write may set: runc's init holds up to 6 tasks (its Go
threads count) while it starts a container, so under it no container of the realm starts
(4 failed, 6 started one on a 2-core host); stored realms below it still load."""


class RealmLimits(KukeonModel):
    """Ceilings on what the realm's containers together use on each node, set on the realm's
    cgroup (`<root>/<realm>`) so the kernel enforces them for everything below it: memory
    (`memory.max`, v1 `memory.limit_in_bytes`) and processes (`pids.max`). Per node: a
    realm on three nodes may use three times as much. Only an admin sets or changes them.
    CPU needs none: each realm's cgroup has the same weight as its siblings, so a realm
    busy on every core gets its share, not the others'.
    """

    memory_bytes: Int | None = Field(default=None, ge=MEMORY_LIMIT_MIN, le=MEMORY_LIMIT_MAX)
    """At most this much memory (page cache included) for the realm's containers; a write
    sets 6 MiB (6291456) or more, what runc's init needs to start one container."""
    pids: Int | None = Field(default=None, ge=1, le=PIDS_LIMIT_MAX)
    """At most this many processes and threads; unset: kukeond's `realmPidsLimit`; a write
    sets 8 or more (runc's init holds up to 6 while it starts a container)."""
    container_ephemeral_storage_bytes: Int | None = Field(
        default=None, ge=EPHEMERAL_STORAGE_MIN, le=INT64_MAX
    )
    """Each of the realm's containers' ephemeral-storage limit (bytes written into its own
    root filesystem, `resources.ephemeralStorageLimitBytes`), as a Kubernetes LimitRange's
    default and max together: a container that sets none (nor its space's defaults) gets
    this one, and one asking for more is held to this. Its cell's status shows the limit
    in force (`status.containers[].ephemeralStorageLimitBytes`). Unset: none."""


class RealmSpec(KukeonModel):
    namespace: OptionalString = None
    """containerd namespace of the realm; `<name>.kukeon.io` when unset."""

    @field_validator("namespace")
    @classmethod
    def _a_containerd_namespace(cls, value: str | None) -> str | None:
        if value is not None and not is_containerd_identifier(value):
            raise ValueError(
                f"{quote(value)} is not a containerd namespace name: at most 76 letters and "
                "digits in runs joined by single '.', '_' or '-'"
            )
        return value

    registry_credentials: NullableList[RegistryCredentials] = Field(default_factory=list)
    """Credentials for the realm's pulls: the one whose `serverAddress` names the image's
    registry (none: the pull is anonymous); one per registry (a second is refused)."""
    security_level: Annotated[SecurityLevel | None, BeforeValidator(_empty_level_as_none)] = None
    """restricted (when unset), baseline or privileged: what editors may ask of the host in
    this realm. Only an admin may set or change it."""
    quota: RealmQuota | None = None
    """Limits on the realm's objects and their stored bytes; unset: kukeond's defaults."""
    limits: RealmLimits | None = None
    """Memory and process ceilings of the realm's containers on each node (its cgroup)."""

    @property
    def level(self) -> SecurityLevel:
        """The effective security level: unset means restricted."""
        return self.security_level or SecurityLevel.RESTRICTED


def shadowed_credentials(spec: RealmSpec) -> list[tuple[str, str]]:
    """(field, why) for each credential no pull would use: the node takes the first whose
    `serverAddress` names the image's registry (compared as hosts, so
    `https://index.docker.io/v1/` is `docker.io`). One without `serverAddress` is none's
    (`has_server_address`)."""
    found: list[tuple[str, str]] = []
    first: dict[str, int] = {}
    for index, credential in enumerate(spec.registry_credentials):
        if not has_server_address(credential):
            continue
        host = normalize_registry_host(credential.server_address or "")
        if host in first:
            why = (
                f"registryCredentials[{first[host]}] is for registry {host} too and is the one "
                "used: keep one credential per registry"
            )
            found.append((f"spec.registryCredentials[{index}]", why))
        else:
            first[host] = index
    return found


def has_server_address(credential: RegistryCredentials) -> bool:
    """Whether the credential names its registry (a blank address names none)."""
    return bool((credential.server_address or "").strip())


UNADDRESSED_CREDENTIAL = (
    "is required: a credential is sent only to the registry it names (one without it went "
    "to any registry a cell of the realm named, so whoever writes cells there could read "
    "its password); set the registry's host[:port]"
)
"""Why a credential without `serverAddress` is refused on write and sent nowhere."""


def unaddressed_credentials(spec: RealmSpec) -> list[str]:
    """What to say of each credential without `serverAddress` (refused on write; one stored
    before that is sent to no registry): kukeond says it where a pull would have used it."""
    return [
        f"registryCredentials[{index}] (user {quote(credential.username)}) has no "
        "serverAddress: kukeond sends it to no registry; set serverAddress to the registry "
        "it is for"
        for index, credential in enumerate(spec.registry_credentials)
        if not has_server_address(credential)
    ]


class RealmStatus(_StatusBase):
    state: RealmStateField = RealmState.PENDING
    containerd_namespace_ready: Bool = False
    nodes: dict[str, NodeLayerStatus] = Field(default_factory=dict)
    """Per node: what that node materialised (only nodes with cells in the realm)."""


class Realm(Resource[RealmSpec, RealmStatus]):
    """A realm. `spec.namespace` defaults to `<name>.kukeon.io`."""

    kind: Literal[Kind.REALM] = Kind.REALM
    spec: RealmSpec = Field(default_factory=RealmSpec)
    status: RealmStatus = Field(default_factory=RealmStatus)

    @model_validator(mode="before")
    @classmethod
    def _forget_an_unusable_default(cls, data: Any) -> Any:
        """A realm stored before defaults were shortened may carry `<name>.kukeon.io` that
        containerd refuses (a name with `--`): it is read as unset, so filled again."""
        if not isinstance(data, dict):
            return data
        spec, metadata = data.get("spec"), data.get("metadata")
        if not isinstance(spec, dict) or not isinstance(metadata, dict):
            return data
        legacy = f"{metadata.get('name')}.{GROUP}"
        if spec.get("namespace") == legacy and not is_containerd_identifier(legacy):
            return {**data, "spec": {**spec, "namespace": None}}
        return data

    @model_validator(mode="after")
    def _fill_namespace(self) -> Realm:
        if self.spec.namespace is None:
            namespace = default_namespace(self.metadata.name)
            self.spec = self.spec.model_copy(update={"namespace": namespace})
        return self
