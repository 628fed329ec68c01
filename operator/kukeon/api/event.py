"""Events: what happened to an object, as Kubernetes' core/v1 Events say it.

An Event is a short record a kukeond writes when something happens to a realm, space,
stack or cell (a container was created, started, restarted, OOM-killed; an image was
pulled; a cell failed to build, was stopped, deleted). It is not a resource of the
hierarchy: nobody writes it through the API, it has no spec and no status, and it goes by
itself (its etcd key is attached to a lease, ``eventTtlSeconds`` of kukeond). The same
thing happening again to the same object (same reason and message) is not a new Event:
the existing one gets ``count`` + 1 and a new ``lastTimestamp``.

```yaml
apiVersion: kukeon.io/v1beta1
kind: Event
metadata: {name: web.4f0c2a7d19e3b5a1, realm: prod, resourceVersion: "812"}
involvedObject: {kind: Cell, realm: prod, space: edge, stack: web, name: web, uid: 7c1e...}
reason: Restarted
message: restarted container app
type: Normal
count: 3
firstTimestamp: 2026-12-03T09:12:00Z
lastTimestamp: 2026-12-03T09:14:31Z
source: {component: kukeond, node: n1}
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from kukeon.api.meta import (
    API_VERSION,
    INT64_MAX,
    ApiVersion,
    DnsLabel,
    DnsSubdomain,
    Int,
    KukeonModel,
    OptionalString,
    Timestamp,
    storable_text,
)
from kukeon.api.names import Kind

EVENT_KIND = "Event"
EVENT_LIST_KIND = "EventList"
EVENT_KINDS: tuple[Kind, ...] = (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL, Kind.CELL_SET)
"""Kinds an Event may be about: those under a realm (the realm holds its Events)."""
EVENT_MESSAGE_MAX = 1024
"""Longer messages are cut (an error's text can be long; an Event is a note)."""


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(StrEnum):
    """Every reason kukeond writes (docs/kukectl.md lists them with their meaning)."""

    # cells
    PULLING = "Pulling"
    PULLED = "Pulled"
    CREATED = "Created"
    STARTED = "Started"
    EXITED = "Exited"
    OOM_KILLED = "OOMKilled"
    BACK_OFF = "BackOff"
    RESTARTED = "Restarted"
    FAILED = "Failed"
    KILLING = "Killing"
    STOPPED = "Stopped"
    DELETED = "Deleted"
    UNHEALTHY = "Unhealthy"
    """A probe failed (Kubernetes' reason); a liveness or startup failure also ``Killing``."""
    PROBE_WARNING = "ProbeWarning"
    """An httpGet probe passed on a redirect it did not follow (to another host), as the
    kubelet's: once each time the redirect changes, not at every check."""
    EVICTED = "Evicted"
    """A container wrote past its ephemeral-storage limit and is stopped (the kubelet's)."""
    LOG_COPIER_REPLACED = "LogCopierReplaced"
    """A container's log copier exited while it ran (what it wrote meanwhile is lost)."""
    LOG_KEEPER_REPLACED = "LogKeeperReplaced"
    """A running container's output pipes had no keeper (killed, or never forked by an older
    kukeond's logger): kukeond started one."""
    NETWORK_RECOVERED = "NetworkNamespaceRecovered"
    """A running cell's network namespace file was gone: taken back from its task."""
    HOST_ADDRESS_MISSING = "HostAddressMissing"
    """A cell publishes a port on a ``hostIP`` its node does not have (no connection there)."""
    CREDENTIAL_IGNORED = "RegistryCredentialIgnored"
    """A pull started in a realm holding a registry credential without ``serverAddress``
    (stored before it was required): the credential is sent to no registry."""
    FENCED = "Fenced"
    """The cell's copy was stopped while its node could not renew its heartbeat lease, and
    is started again now that it can."""
    DOCUMENT_UNREADABLE = "DocumentUnreadable"
    """The cell's document in etcd cannot be decoded: what runs of it is left unmanaged."""
    # realms, spaces and stacks, per node
    READY = "Ready"
    REMOVED = "Removed"
    NFT_RULES_RESTORED = "NetworkRulesRestored"
    """Another process changed the node's nft table (a ruleset flush): written again."""
    NFT_RULES_NOT_RESTORED = "NetworkRulesNotRestored"
    """... and what went was not back in time (route_localnet left at 0 without the guard)."""
    # cell sets (Kubernetes' ReplicaSet reasons)
    SUCCESSFUL_CREATE = "SuccessfulCreate"
    SUCCESSFUL_DELETE = "SuccessfulDelete"
    FAILED_CREATE = "FailedCreate"


class InvolvedObject(KukeonModel):
    """The object the Event is about: its kind, full key and uid."""

    kind: str
    realm: DnsLabel
    space: OptionalString = None
    stack: OptionalString = None
    name: DnsLabel
    uid: OptionalString = None

    @property
    def key(self) -> tuple[str, ...]:
        """The object's key, as the registry has it (realm first)."""
        parts = [self.realm]
        if self.kind != "Realm":
            parts += [part for part in (self.space, self.stack) if part]
            parts.append(self.name)
        return tuple(parts)

    @property
    def path(self) -> str:
        """``cell/edge/web/api``: the kind, then the key below the realm (``realm/prod``)."""
        below = self.key[1:] if self.kind != "Realm" else self.key
        return f"{self.kind.lower()}/{'/'.join(below)}"

    @classmethod
    def of(cls, kind: str, key: Sequence[str], uid: str | None) -> InvolvedObject:
        """The involved object of ``kind`` at ``key`` (realm, [space, [stack,]] name)."""
        parts = list(key)
        space = parts[1] if len(parts) > 2 else None
        stack = parts[2] if len(parts) > 3 else None
        return cls(kind=kind, realm=parts[0], space=space, stack=stack, name=parts[-1], uid=uid)


class EventSource(KukeonModel):
    component: str = "kukeond"
    node: OptionalString = None
    """The kukeond that saw it happen."""


class EventMeta(KukeonModel):
    name: DnsSubdomain
    realm: DnsLabel
    resource_version: OptionalString = None
    """The etcd mod_revision of the stored Event."""


class Event(KukeonModel):
    api_version: ApiVersion = API_VERSION
    kind: Literal["Event"] = "Event"
    metadata: EventMeta
    involved_object: InvolvedObject
    reason: str = Field(min_length=1, max_length=128)
    message: str = ""
    type: EventType = EventType.NORMAL
    count: Int = Field(default=1, ge=1, le=INT64_MAX)
    first_timestamp: Timestamp = None
    last_timestamp: Timestamp = None
    source: EventSource = Field(default_factory=EventSource)

    @property
    def aggregation_key(self) -> tuple[str, ...]:
        """What makes two occurrences the same Event: the object and what happened."""
        obj = self.involved_object
        return (obj.kind, *obj.key, obj.uid or "", self.type, self.reason, self.message)

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def event_name(aggregation_key: Sequence[str], object_name: str) -> str:
    """``<object>.<16 hex digits>``: the same occurrence always gets the same name, so a
    repeat finds its Event in etcd, and different ones do not collide in a realm."""
    digest = hashlib.sha256("\x00".join(aggregation_key).encode()).hexdigest()[:16]
    return f"{object_name}.{digest}"


def new_event(
    *,
    involved: InvolvedObject,
    reason: str,
    message: str,
    type: EventType,
    at: datetime,
    node: str | None,
) -> Event:
    """One occurrence, named by what it is (``event_name``), with a count of 1; a NUL or
    lone surrogate of ``message`` (a runtime's error quoting a file name) escaped."""
    message = storable_text(message)
    text = (
        message if len(message) <= EVENT_MESSAGE_MAX else message[: EVENT_MESSAGE_MAX - 3] + "..."
    )
    draft = Event(
        metadata=EventMeta(name=f"{involved.name}.0", realm=involved.realm),
        involved_object=involved,
        reason=reason,
        message=text,
        type=type,
        first_timestamp=at,
        last_timestamp=at,
        source=EventSource(node=node),
    )
    name = event_name(draft.aggregation_key, involved.name)
    return draft.model_copy(update={"metadata": EventMeta(name=name, realm=involved.realm)})
