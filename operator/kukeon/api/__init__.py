"""The v1beta1 resource model: pydantic models of every kind, validation, defaults, manifests.

This package is the vocabulary of the whole project and imports nothing else from it:
the store, the controllers, the API server and kukectl all speak these types. The names
below are what the rest of kukeon uses; the models of nested fields (a realm's registry
credentials, a container's volume mounts...) are imported from their own modules.

The names load on first use (PEP 562): a client that needs only the kinds' names
(``kukeon.api.names``, no pydantic) does not define every model by importing one module of
the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kukeon.api.cell import Cell, CellNetworkStatus, CellSpec, CellStatus
    from kukeon.api.cellprofile import PROFILE_ENV, PROFILE_LABEL, CellProfile, CellProfileSpec
    from kukeon.api.cellset import CELLSET_LABEL, TEMPLATE_HASH_LABEL, CellSet, CellSetSpec
    from kukeon.api.container import (
        Capabilities,
        ContainerSecret,
        ContainerSpec,
        ContainerTty,
        Resources,
        TmpfsMount,
        TtyStage,
        VolumeKind,
    )
    from kukeon.api.containerstatus import ContainerStatus, ContainerTerminated
    from kukeon.api.defaults import apply_space_defaults_to_container
    from kukeon.api.event import (
        EVENT_KIND,
        EVENT_KINDS,
        EVENT_LIST_KIND,
        Event,
        EventReason,
        EventType,
        InvolvedObject,
        new_event,
    )
    from kukeon.api.kinds import (
        KIND_MODELS,
        AnyResource,
        key_of,
        parent_of,
        parse_resource,
        scope_of,
        secret_parent,
        to_document,
        to_request_document,
    )
    from kukeon.api.manifests import ManifestError, dump_manifests, load_manifests
    from kukeon.api.meta import (
        API_VERSION,
        DEFAULT_PARENT,
        GROUP,
        SCOPED_KINDS,
        VERSION,
        Kind,
        NodeLayerState,
        NodeLayerStatus,
        ObjectMeta,
        Resource,
    )
    from kukeon.api.node import (
        SCHEDULED_BY_ANNOTATION,
        SCHEDULED_BY_SCHEDULER,
        Node,
        NodeAddress,
        NodeCondition,
        NodeResources,
        NodeSpec,
        NodeState,
        NodeStatus,
    )
    from kukeon.api.realm import (
        REDACTED_PASSWORD,
        Realm,
        RealmStatus,
    )
    from kukeon.api.secret import (
        SCOPE_PLACEHOLDER,
        Secret,
        SecretKeyRef,
        key_status,
        lookup_scopes,
        secret_scope,
    )
    from kukeon.api.space import (
        Space,
        SpaceContainerDefaults,
        SpaceDefaults,
        SpaceNetworkStatus,
        SpaceNodeStatus,
        SpaceSpec,
        SpaceStatus,
    )
    from kukeon.api.stack import Stack, StackStatus
    from kukeon.api.states import (
        CellState,
        ContainerState,
        DesiredCellState,
        RealmState,
        SpaceState,
        StackState,
    )
    from kukeon.api.validation import FieldError, InvalidResource

# Where each name lives: its module of the package.
_HOMES = {
    "Cell": "cell",
    "CellNetworkStatus": "cell",
    "CellSpec": "cell",
    "CellStatus": "cell",
    "PROFILE_ENV": "cellprofile",
    "PROFILE_LABEL": "cellprofile",
    "CellProfile": "cellprofile",
    "CellProfileSpec": "cellprofile",
    "CELLSET_LABEL": "cellset",
    "TEMPLATE_HASH_LABEL": "cellset",
    "CellSet": "cellset",
    "CellSetSpec": "cellset",
    "Capabilities": "container",
    "ContainerSecret": "container",
    "ContainerSpec": "container",
    "ContainerStatus": "containerstatus",
    "ContainerTerminated": "containerstatus",
    "ContainerTty": "container",
    "Resources": "container",
    "TmpfsMount": "container",
    "TtyStage": "container",
    "VolumeKind": "container",
    "apply_space_defaults_to_container": "defaults",
    "EVENT_KIND": "event",
    "EVENT_KINDS": "event",
    "EVENT_LIST_KIND": "event",
    "Event": "event",
    "EventReason": "event",
    "EventType": "event",
    "InvolvedObject": "event",
    "new_event": "event",
    "KIND_MODELS": "kinds",
    "AnyResource": "kinds",
    "key_of": "kinds",
    "parent_of": "kinds",
    "parse_resource": "kinds",
    "scope_of": "kinds",
    "secret_parent": "kinds",
    "to_document": "kinds",
    "to_request_document": "kinds",
    "ManifestError": "manifests",
    "dump_manifests": "manifests",
    "load_manifests": "manifests",
    "API_VERSION": "names",
    "DEFAULT_PARENT": "names",
    "GROUP": "names",
    "SCOPED_KINDS": "names",
    "VERSION": "names",
    "Kind": "names",
    "NodeLayerState": "meta",
    "NodeLayerStatus": "meta",
    "ObjectMeta": "meta",
    "Resource": "meta",
    "SCHEDULED_BY_ANNOTATION": "node",
    "SCHEDULED_BY_SCHEDULER": "node",
    "Node": "node",
    "NodeAddress": "node",
    "NodeCondition": "node",
    "NodeResources": "node",
    "NodeSpec": "node",
    "NodeState": "node",
    "NodeStatus": "node",
    "REDACTED_PASSWORD": "realm",
    "Realm": "realm",
    "RealmStatus": "realm",
    "SCOPE_PLACEHOLDER": "names",
    "Secret": "secret",
    "SecretKeyRef": "secret",
    "key_status": "secret",
    "lookup_scopes": "secret",
    "secret_scope": "secret",
    "Space": "space",
    "SpaceContainerDefaults": "space",
    "SpaceDefaults": "space",
    "SpaceNetworkStatus": "space",
    "SpaceNodeStatus": "space",
    "SpaceSpec": "space",
    "SpaceStatus": "space",
    "Stack": "stack",
    "StackStatus": "stack",
    "CellState": "states",
    "ContainerState": "states",
    "DesiredCellState": "states",
    "RealmState": "states",
    "SpaceState": "states",
    "StackState": "states",
    "FieldError": "validation",
    "InvalidResource": "validation",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "CELLSET_LABEL",
    "DEFAULT_PARENT",
    "EVENT_KIND",
    "EVENT_KINDS",
    "EVENT_LIST_KIND",
    "GROUP",
    "KIND_MODELS",
    "PROFILE_ENV",
    "PROFILE_LABEL",
    "REDACTED_PASSWORD",
    "SCHEDULED_BY_ANNOTATION",
    "SCHEDULED_BY_SCHEDULER",
    "SCOPED_KINDS",
    "SCOPE_PLACEHOLDER",
    "TEMPLATE_HASH_LABEL",
    "VERSION",
    "AnyResource",
    "Capabilities",
    "Cell",
    "CellNetworkStatus",
    "CellProfile",
    "CellProfileSpec",
    "CellSet",
    "CellSetSpec",
    "CellSpec",
    "CellState",
    "CellStatus",
    "ContainerSecret",
    "ContainerSpec",
    "ContainerState",
    "ContainerStatus",
    "ContainerTerminated",
    "ContainerTty",
    "DesiredCellState",
    "Event",
    "EventReason",
    "EventType",
    "FieldError",
    "InvalidResource",
    "InvolvedObject",
    "Kind",
    "ManifestError",
    "Node",
    "NodeAddress",
    "NodeCondition",
    "NodeLayerState",
    "NodeLayerStatus",
    "NodeResources",
    "NodeSpec",
    "NodeState",
    "NodeStatus",
    "ObjectMeta",
    "Realm",
    "RealmState",
    "RealmStatus",
    "Resource",
    "Resources",
    "Secret",
    "SecretKeyRef",
    "Space",
    "SpaceContainerDefaults",
    "SpaceDefaults",
    "SpaceNetworkStatus",
    "SpaceNodeStatus",
    "SpaceSpec",
    "SpaceState",
    "SpaceStatus",
    "Stack",
    "StackState",
    "StackStatus",
    "TmpfsMount",
    "TtyStage",
    "VolumeKind",
    "apply_space_defaults_to_container",
    "dump_manifests",
    "key_of",
    "key_status",
    "load_manifests",
    "lookup_scopes",
    "new_event",
    "parent_of",
    "parse_resource",
    "scope_of",
    "secret_parent",
    "secret_scope",
    "to_document",
    "to_request_document",
]
