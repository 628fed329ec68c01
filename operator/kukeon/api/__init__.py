"""The v1beta1 resource model: pydantic models of every kind, validation, defaults, manifests.

This package is the vocabulary of the whole project and imports nothing else from it:
the store, the controllers, the API server and kukectl all speak these types.
"""

from kukeon.api.cell import Cell, CellNetworkStatus, CellSpec, CellStatus, CellTty
from kukeon.api.container import (
    Capabilities,
    ContainerSecret,
    ContainerSpec,
    ContainerStatus,
    ContainerTty,
    Resources,
    RestartPolicy,
    TmpfsMount,
    TtyStage,
    VolumeKind,
    VolumeMount,
)
from kukeon.api.defaults import apply_space_defaults_to_container
from kukeon.api.kinds import (
    KIND_MODELS,
    AnyResource,
    key_of,
    parent_of,
    parse_resource,
    scope_of,
    to_document,
)
from kukeon.api.manifests import ManifestError, dump_manifests, load_manifests
from kukeon.api.meta import API_VERSION, DEFAULT_PARENT, GROUP, VERSION, Kind, ObjectMeta, Resource
from kukeon.api.node import (
    Node,
    NodeAddress,
    NodeCondition,
    NodeResources,
    NodeSpec,
    NodeState,
    NodeStatus,
)
from kukeon.api.realm import Realm, RealmSpec, RealmStatus, RegistryCredentials
from kukeon.api.space import (
    EgressAllowRule,
    EgressDefault,
    EgressPolicy,
    Space,
    SpaceContainerDefaults,
    SpaceDefaults,
    SpaceNetwork,
    SpaceNetworkStatus,
    SpaceSpec,
    SpaceStatus,
)
from kukeon.api.stack import Stack, StackSpec, StackStatus
from kukeon.api.states import (
    CellState,
    ContainerState,
    DesiredCellState,
    RealmState,
    SpaceState,
    StackState,
)
from kukeon.api.validation import FieldError, InvalidResource

__all__ = [
    "API_VERSION",
    "DEFAULT_PARENT",
    "GROUP",
    "KIND_MODELS",
    "VERSION",
    "AnyResource",
    "Capabilities",
    "Cell",
    "CellNetworkStatus",
    "CellSpec",
    "CellState",
    "CellStatus",
    "CellTty",
    "ContainerSecret",
    "ContainerSpec",
    "ContainerState",
    "ContainerStatus",
    "ContainerTty",
    "DesiredCellState",
    "EgressAllowRule",
    "EgressDefault",
    "EgressPolicy",
    "FieldError",
    "InvalidResource",
    "Kind",
    "ManifestError",
    "Node",
    "NodeAddress",
    "NodeCondition",
    "NodeResources",
    "NodeSpec",
    "NodeState",
    "NodeStatus",
    "ObjectMeta",
    "Realm",
    "RealmSpec",
    "RealmState",
    "RealmStatus",
    "RegistryCredentials",
    "Resource",
    "Resources",
    "RestartPolicy",
    "Space",
    "SpaceContainerDefaults",
    "SpaceDefaults",
    "SpaceNetwork",
    "SpaceNetworkStatus",
    "SpaceSpec",
    "SpaceState",
    "SpaceStatus",
    "Stack",
    "StackSpec",
    "StackState",
    "StackStatus",
    "TmpfsMount",
    "TtyStage",
    "VolumeKind",
    "VolumeMount",
    "apply_space_defaults_to_container",
    "dump_manifests",
    "key_of",
    "load_manifests",
    "parent_of",
    "parse_resource",
    "scope_of",
    "to_document",
]
