"""The connection to containerd: one gRPC channel on its unix socket, shared by every noun.

containerd's API is namespaced by a metadata header, not by the URL, so every call goes
through :meth:`ContainerdClient.call`, which adds ``containerd-namespace`` (and
``containerd-lease`` when a lease protects what the call creates), and which rides out a
containerd restart: a call that finds the socket gone is retried with a short backoff, and
after repeated failures the channel is re-dialled, until ``retry_timeout`` runs out and
:class:`~kukeon.runtime.containerd.errors.ContainerdUnavailableError` is raised. runc shims
outlive containerd, so after a restart the same tasks are found again.

The nouns mirror containerd's Go client, one module each: ``namespaces``, ``content``,
``images``, ``snapshots``, ``leases``, ``containers``, ``tasks``, ``events``; this client
hands them out bound to a containerd namespace (``client.tasks("realm.kukeon.io")``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar

import grpc
from google.protobuf import empty_pb2

from kukeon.retrying import Backoff
from kukeon.runtime.containerd._gen.services.containers.v1 import containers_pb2_grpc
from kukeon.runtime.containerd._gen.services.content.v1 import content_pb2_grpc
from kukeon.runtime.containerd._gen.services.diff.v1 import diff_pb2_grpc
from kukeon.runtime.containerd._gen.services.events.v1 import events_pb2_grpc
from kukeon.runtime.containerd._gen.services.images.v1 import images_pb2_grpc
from kukeon.runtime.containerd._gen.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from kukeon.runtime.containerd._gen.services.leases.v1 import leases_pb2_grpc
from kukeon.runtime.containerd._gen.services.namespaces.v1 import namespace_pb2_grpc
from kukeon.runtime.containerd._gen.services.snapshots.v1 import snapshots_pb2_grpc
from kukeon.runtime.containerd._gen.services.tasks.v1 import tasks_pb2_grpc
from kukeon.runtime.containerd._gen.services.version.v1 import version_pb2_grpc
from kukeon.runtime.containerd.errors import ContainerdUnavailableError, translate
from kukeon.runtime.containerd.layersize import UnpackLimits

if TYPE_CHECKING:
    from kukeon.runtime.containerd.containers import ContainerService
    from kukeon.runtime.containerd.content import ContentStore
    from kukeon.runtime.containerd.events import EventService
    from kukeon.runtime.containerd.images import ImageService
    from kukeon.runtime.containerd.leases import LeaseService
    from kukeon.runtime.containerd.namespaces import NamespaceService
    from kukeon.runtime.containerd.snapshots import SnapshotService
    from kukeon.runtime.containerd.tasks import TaskService

log = logging.getLogger(__name__)

DEFAULT_ADDRESS: Final = "/run/containerd/containerd.sock"
NAMESPACE_HEADER: Final = "containerd-namespace"
LEASE_HEADER: Final = "containerd-lease"
DEFAULT_SNAPSHOTTER: Final = "overlayfs"
# Namespace header for calls that are not about one namespace (Version, Namespaces.List).
# Reading does not create a namespace, so naming containerd's default one is harmless.
_GLOBAL_NAMESPACE: Final = "default"

_T = TypeVar("_T")
Metadata = tuple[tuple[str, str], ...]

# Reconnect quickly after a containerd restart instead of gRPC's default (1 s growing to 2 min).
_CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
)
_REDIAL_AFTER_FAILURES: Final = 3


@dataclass(frozen=True, slots=True)
class Stubs:
    """The service stubs of one channel; replaced as a whole when the channel is re-dialled."""

    version: version_pb2_grpc.VersionAsyncStub
    namespaces: namespace_pb2_grpc.NamespacesAsyncStub
    containers: containers_pb2_grpc.ContainersAsyncStub
    tasks: tasks_pb2_grpc.TasksAsyncStub
    images: images_pb2_grpc.ImagesAsyncStub
    content: content_pb2_grpc.ContentAsyncStub
    snapshots: snapshots_pb2_grpc.SnapshotsAsyncStub
    diff: diff_pb2_grpc.DiffAsyncStub
    leases: leases_pb2_grpc.LeasesAsyncStub
    events: events_pb2_grpc.EventsAsyncStub
    introspection: introspection_pb2_grpc.IntrospectionAsyncStub

    @classmethod
    def for_channel(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            version=version_pb2_grpc.VersionStub(channel),
            namespaces=namespace_pb2_grpc.NamespacesStub(channel),
            containers=containers_pb2_grpc.ContainersStub(channel),
            tasks=tasks_pb2_grpc.TasksStub(channel),
            images=images_pb2_grpc.ImagesStub(channel),
            content=content_pb2_grpc.ContentStub(channel),
            snapshots=snapshots_pb2_grpc.SnapshotsStub(channel),
            diff=diff_pb2_grpc.DiffStub(channel),
            leases=leases_pb2_grpc.LeasesStub(channel),
            events=events_pb2_grpc.EventsStub(channel),
            introspection=introspection_pb2_grpc.IntrospectionStub(channel),
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    revision: str


@dataclass(frozen=True, slots=True)
class Subject:
    """What a call is about, so a gRPC refusal becomes a typed error naming it."""

    kind: str
    name: str


_PATIENCE: ContextVar[float | None] = ContextVar("containerd_patience", default=None)


@contextlib.contextmanager
def patience(seconds: float) -> Iterator[None]:
    """Within this block (and the tasks it starts), a call gives up on an unreachable
    containerd after at most ``seconds`` instead of the client's ``retry_timeout``: a cell's
    pass says HostUnobservable within seconds, and its retries wait in the queue's backoff,
    not in the call."""
    token = _PATIENCE.set(seconds)
    try:
        yield
    finally:
        _PATIENCE.reset(token)


class ContainerdClient:
    """An asyncio client of containerd's gRPC API on a unix socket.

    Use it as ``async with ContainerdClient(address) as client:`` or call :meth:`close`.
    No connection is made until the first call; :meth:`wait_ready` waits for the daemon.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        retry_timeout: float = 30.0,
        call_timeout: float | None = 120.0,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        unpack_limits: UnpackLimits | None = None,
    ) -> None:
        self.address = address.removeprefix("unix://")
        self.unpack_limits = unpack_limits or UnpackLimits()
        """What bounds the layers an image unpack applies (``images.ImageService.unpack``)."""
        self._plugin_roots: dict[tuple[str, str], str | None] = {}
        self._interceptors = list(interceptors)
        self.retry_timeout = retry_timeout
        self.call_timeout = call_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stubs: Stubs | None = None
        self._generation = 0
        self._closing_channels: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> ContainerdClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None:
            await channel.close(None)
        if self._closing_channels:
            await asyncio.gather(*self._closing_channels, return_exceptions=True)

    @property
    def stubs(self) -> Stubs:
        if self._stubs is None:
            self._dial()
        assert self._stubs is not None
        return self._stubs

    @property
    def generation(self) -> int:
        """How many channels have been dialled; changes when the client re-dials."""
        return self._generation

    def _dial(self) -> None:
        channel = grpc.aio.insecure_channel(
            f"unix://{self.address}", options=_CHANNEL_OPTIONS, interceptors=self._interceptors
        )
        self._channel = channel
        self._stubs = Stubs.for_channel(channel)
        self._generation += 1

    def redial(self, *, generation: int) -> None:
        """Replace the channel, unless someone already did since ``generation`` was read.

        The old channel is closed in the background with a grace period, so calls still
        running on it (an event stream that has not noticed yet) end on their own.
        """
        if generation != self._generation or self._channel is None:
            return
        old = self._channel
        self._dial()
        closing = asyncio.ensure_future(old.close(grace=1.0))
        self._closing_channels.add(closing)
        closing.add_done_callback(self._closing_channels.discard)

    # --- calls ------------------------------------------------------------------------

    @staticmethod
    def metadata(namespace: str | None, *, lease: str | None = None) -> Metadata:
        entries = [(NAMESPACE_HEADER, namespace or _GLOBAL_NAMESPACE)]
        if lease:
            entries.append((LEASE_HEADER, lease))
        return tuple(entries)

    async def call(
        self,
        operation: str,
        invoke: Callable[[Stubs, Metadata], Awaitable[_T]],
        *,
        namespace: str | None,
        lease: str | None = None,
        subject: Subject | None = None,
    ) -> _T:
        """Run one unary call, retrying while containerd is unreachable.

        ``invoke(stubs, metadata)`` makes the call, for example
        ``lambda s, md: s.tasks.Get(request, metadata=md, timeout=...)``. It may run more
        than once: a call that failed with UNAVAILABLE never reached containerd, or reached
        one that died; creates repeated after that answer ALREADY_EXISTS, which callers
        that converge treat as done. With a ``subject``, other refusals are raised as typed
        errors naming it; without one, as ``grpc.aio.AioRpcError``.
        """
        metadata = self.metadata(namespace, lease=lease)
        loop = asyncio.get_running_loop()
        limit = _PATIENCE.get()
        deadline = loop.time() + min(self.retry_timeout, limit or self.retry_timeout)
        backoff = Backoff(0.05, 1.0)
        failures = 0
        while True:
            generation = self._generation
            stubs = self.stubs
            try:
                return await invoke(stubs, metadata)
            except grpc.aio.AioRpcError as error:
                # CANCELLED after a re-dial: the old channel was closed under this call.
                replaced = (
                    error.code() == grpc.StatusCode.CANCELLED and generation != self._generation
                )
                if error.code() != grpc.StatusCode.UNAVAILABLE and not replaced:
                    if subject is None:
                        raise
                    raise translate(
                        error,
                        operation=operation,
                        kind=subject.kind,
                        name=subject.name,
                        namespace=namespace,
                    ) from error
                failures += 1
                if loop.time() + backoff.current > deadline:
                    raise ContainerdUnavailableError(
                        address=self.address,
                        operation=operation,
                        detail=error.details() or "unavailable",
                    ) from error
                if failures % _REDIAL_AFTER_FAILURES == 0:
                    self.redial(generation=generation)
                await backoff.sleep()

    async def collect(
        self,
        operation: str,
        open_stream: Callable[[Stubs, Metadata], AsyncIterable[_T]],
        *,
        namespace: str | None,
        subject: Subject | None = None,
    ) -> list[_T]:
        """Read a whole server stream into a list, retrying it from the start if cut."""

        async def read_all(stubs: Stubs, metadata: Metadata) -> list[_T]:
            return [item async for item in open_stream(stubs, metadata)]

        return await self.call(operation, read_all, namespace=namespace, subject=subject)

    async def version(self) -> VersionInfo:
        response = await self.call(
            "Version",
            lambda s, md: s.version.Version(
                empty_pb2.Empty(), metadata=md, timeout=self.call_timeout
            ),
            namespace=None,
        )
        return VersionInfo(version=response.version, revision=response.revision)

    async def snapshotter_root(self, snapshotter: str) -> str | None:
        """The directory the snapshotter keeps its snapshots in (its plugin's ``root``
        export), None when containerd does not say (a snapshotter without a local root);
        asked once."""
        return await self._plugin_root(
            "io.containerd.snapshotter.v1",
            snapshotter,
            what=f"snapshotter {snapshotter}'s snapshots",
            # Not a reason to unpack nothing: only imageUnpackedMaxBytes bounds it then.
            unbounded="image unpacks",
        )

    async def content_root(self) -> str | None:
        """The directory of containerd's content store (its ``content`` plugin's ``root``
        export), where a pull's blobs land; None when containerd does not say; asked once."""
        return await self._plugin_root(
            "io.containerd.content.v1", "content", what="the content store", unbounded="pulls"
        )

    async def _plugin_root(
        self, plugin_type: str, plugin_id: str, *, what: str, unbounded: str
    ) -> str | None:
        key = (plugin_type, plugin_id)
        if key not in self._plugin_roots:
            request = introspection_pb2.PluginsRequest(
                filters=[f"type=={plugin_type},id=={plugin_id}"]
            )
            try:
                response = await self.call(
                    "list plugins",
                    lambda s, md: s.introspection.Plugins(
                        request, metadata=md, timeout=self.call_timeout
                    ),
                    namespace=None,
                )
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "containerd does not say where it keeps %s (%s): %s are not bounded by "
                    "that disk's free space",
                    what,
                    error.details() or error.code().name,
                    unbounded,
                )
                self._plugin_roots[key] = None
                return None
            roots = [plugin.exports.get("root") for plugin in response.plugins]
            self._plugin_roots[key] = next((root for root in roots if root), None)
            if self._plugin_roots[key] is None:
                log.warning(
                    "containerd exports no root directory of %s: %s are not bounded by its "
                    "disk's free space",
                    what,
                    unbounded,
                )
        return self._plugin_roots[key]

    async def wait_ready(self, *, within: float = 30.0) -> VersionInfo:
        """Wait until containerd answers (it may still be starting), at most ``within`` s."""
        saved = self.retry_timeout
        self.retry_timeout = within
        try:
            return await self.version()
        finally:
            self.retry_timeout = saved

    # --- nouns ------------------------------------------------------------------------

    @property
    def namespaces(self) -> NamespaceService:
        from kukeon.runtime.containerd.namespaces import NamespaceService

        return NamespaceService(client=self)

    def content(self, namespace: str, *, lease: str | None = None) -> ContentStore:
        from kukeon.runtime.containerd.content import ContentStore

        return ContentStore(client=self, namespace=namespace, lease=lease)

    def images(self, namespace: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> ImageService:
        from kukeon.runtime.containerd.images import ImageService

        return ImageService(client=self, namespace=namespace, snapshotter=snapshotter)

    def snapshots(
        self, namespace: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER
    ) -> SnapshotService:
        from kukeon.runtime.containerd.snapshots import SnapshotService

        return SnapshotService(client=self, namespace=namespace, snapshotter=snapshotter)

    def leases(self, namespace: str) -> LeaseService:
        from kukeon.runtime.containerd.leases import LeaseService

        return LeaseService(client=self, namespace=namespace)

    def containers(
        self, namespace: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER
    ) -> ContainerService:
        from kukeon.runtime.containerd.containers import ContainerService

        return ContainerService(client=self, namespace=namespace, snapshotter=snapshotter)

    def tasks(self, namespace: str) -> TaskService:
        from kukeon.runtime.containerd.tasks import TaskService

        return TaskService(client=self, namespace=namespace)

    @property
    def events(self) -> EventService:
        from kukeon.runtime.containerd.events import EventService

        return EventService(client=self)
