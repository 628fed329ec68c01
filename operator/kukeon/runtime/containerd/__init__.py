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

Pure pieces need no connection: the OCI runtime spec builder ``spec.py`` (with its parts
``capabilities``, ``mounts``, ``userdb``, ``specerrors``; ``hostlookup`` reads the host and
blocks, so callers run it in a thread), the image model ``oci.py`` and the registry client
``registry.py``. This package imports nothing from ``kukeon.store`` or the controllers.

The names below are what the rest of kukeon uses; the records and services of each noun
are imported from their module.
"""

from kukeon.runtime.containerd.client import (
    ContainerdClient,
)
from kukeon.runtime.containerd.containers import (
    kukeon_labels,
    label_filter,
)
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    BlobDigestMismatchError,
    ContainerdError,
    ContainerdUnavailableError,
    ContainerNotFoundError,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
    NamespaceNotEmptyError,
    NamespaceNotFoundError,
    TaskNotFoundError,
)
from kukeon.runtime.containerd.events import (
    OtherEvent,
    Subscribed,
    TaskExited,
    TaskOOM,
    task_lifecycle_filters,
)
from kukeon.runtime.containerd.garbage import list_kukeon_objects
from kukeon.runtime.containerd.namespaces import realm_namespace
from kukeon.runtime.containerd.snapshots import chain_ids
from kukeon.runtime.containerd.tasks import (
    ExitStatus,
    FifoIO,
    TaskIO,
    TaskStatus,
)
from kukeon.runtime.containerd.types import ImageConfig

__all__ = [
    "AlreadyExistsError",
    "BlobDigestMismatchError",
    "ContainerNotFoundError",
    "ContainerdClient",
    "ContainerdError",
    "ContainerdUnavailableError",
    "ExitStatus",
    "FifoIO",
    "ImageConfig",
    "ImageNotFoundError",
    "InvalidImageArchiveError",
    "InvalidImageError",
    "NamespaceNotEmptyError",
    "NamespaceNotFoundError",
    "OtherEvent",
    "Subscribed",
    "TaskExited",
    "TaskIO",
    "TaskNotFoundError",
    "TaskOOM",
    "TaskStatus",
    "chain_ids",
    "kukeon_labels",
    "label_filter",
    "list_kukeon_objects",
    "realm_namespace",
    "task_lifecycle_filters",
]
