"""containerd over its gRPC API: namespaces, images, containers, tasks, events.

kukeon talks to containerd's own v1 gRPC services (stubs generated from the project's
``protos/`` by ``hack/gen-protos.sh`` into ``_gen/``) on its unix socket, never through
``ctr`` or ``nerdctl``. The modules mirror the nouns of containerd's Go client:

- :mod:`.client` — :class:`ContainerdClient`, the channel, the namespace header, retries
  and re-dialling across containerd restarts;
- :mod:`.namespaces` — one namespace per realm (``<realm>.kukeon.io``);
- :mod:`.content` — the content store (implements :class:`.types.BlobStore`);
- :mod:`.oci` — the OCI image model: media types, descriptors, indexes, manifests,
  configs, platform matching and digest checks, for archive import and pull alike;
- :mod:`.images` — image records and unpacking into snapshots; :mod:`.imagearchive` the
  import of OCI archives; :mod:`.pull` pulls from a registry (:mod:`.registry`, the
  distribution client, with :mod:`.reference` and :mod:`.registryauth`);
- :mod:`.snapshots`, :mod:`.leases` — rootfs snapshots and GC protection;
- :mod:`.containers`, :mod:`.tasks` — container records and their running processes;
- :mod:`.events` — the event stream (exits, OOM kills) as a reconnecting iterator;
- :mod:`.garbage` — kukeon-labelled leftovers for orphan removal.

Pure pieces (the OCI runtime spec builder ``spec.py``, the image model ``oci.py``, the
registry client ``registry.py``)
need no connection. This package imports nothing from ``kukeon.store`` or the controllers.
"""

from kukeon.runtime.containerd.client import (
    DEFAULT_ADDRESS,
    DEFAULT_SNAPSHOTTER,
    ContainerdClient,
    VersionInfo,
)
from kukeon.runtime.containerd.containers import (
    RUNTIME_RUNC_V2,
    Container,
    ContainerService,
    kukeon_labels,
    label_filter,
)
from kukeon.runtime.containerd.content import ContentInfo, ContentStore
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    BlobDigestMismatchError,
    ContainerdCallError,
    ContainerdError,
    ContainerdUnavailableError,
    ContainerNotFoundError,
    ContentNotFoundError,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
    NamespaceNotEmptyError,
    NamespaceNotFoundError,
    NotFoundError,
    SnapshotNotFoundError,
    TaskNotFoundError,
)
from kukeon.runtime.containerd.events import (
    Event,
    EventService,
    OtherEvent,
    Subscribed,
    TaskCreated,
    TaskDeleted,
    TaskExited,
    TaskOOM,
    TaskStarted,
    task_lifecycle_filters,
    topic_filter,
)
from kukeon.runtime.containerd.garbage import KukeonObjects, list_kukeon_objects
from kukeon.runtime.containerd.images import Image, ImageService, unpack_image
from kukeon.runtime.containerd.leases import Lease, LeaseService
from kukeon.runtime.containerd.namespaces import Namespace, NamespaceService, realm_namespace
from kukeon.runtime.containerd.oci import Descriptor, Manifest
from kukeon.runtime.containerd.snapshots import Mount, SnapshotInfo, SnapshotService, chain_ids
from kukeon.runtime.containerd.tasks import (
    ExitStatus,
    FifoIO,
    TaskInfo,
    TaskIO,
    TaskService,
    TaskStatus,
)
from kukeon.runtime.containerd.types import BlobStore, ImageConfig, RegistryCredential

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_SNAPSHOTTER",
    "RUNTIME_RUNC_V2",
    "AlreadyExistsError",
    "BlobDigestMismatchError",
    "BlobStore",
    "Container",
    "ContainerNotFoundError",
    "ContainerService",
    "ContainerdCallError",
    "ContainerdClient",
    "ContainerdError",
    "ContainerdUnavailableError",
    "ContentInfo",
    "ContentNotFoundError",
    "ContentStore",
    "Descriptor",
    "Event",
    "EventService",
    "ExitStatus",
    "FifoIO",
    "Image",
    "ImageConfig",
    "ImageNotFoundError",
    "ImageService",
    "InvalidImageArchiveError",
    "InvalidImageError",
    "KukeonObjects",
    "Lease",
    "LeaseService",
    "Manifest",
    "Mount",
    "Namespace",
    "NamespaceNotEmptyError",
    "NamespaceNotFoundError",
    "NamespaceService",
    "NotFoundError",
    "OtherEvent",
    "RegistryCredential",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "SnapshotService",
    "Subscribed",
    "TaskCreated",
    "TaskDeleted",
    "TaskExited",
    "TaskIO",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskOOM",
    "TaskService",
    "TaskStarted",
    "TaskStatus",
    "VersionInfo",
    "chain_ids",
    "kukeon_labels",
    "label_filter",
    "list_kukeon_objects",
    "realm_namespace",
    "task_lifecycle_filters",
    "topic_filter",
    "unpack_image",
]
