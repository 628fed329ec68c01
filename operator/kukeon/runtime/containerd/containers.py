"""Container records: an OCI runtime spec, an image and a rootfs snapshot, labelled as kukeon's.

A containerd container is metadata only; :mod:`tasks` runs it. Creating one here also
prepares its rootfs snapshot (keyed by the container id, on the image's top chain id),
under a lease until the container record references it, so GC cannot take it in between.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import any_pb2

from kukeon.runtime.containerd._gen.services.containers.v1 import containers_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.errors import ContainerNotFoundError
from kukeon.runtime.containerd.remap import Remap, ensure_remapped
from kukeon.runtime.containerd.spec import (
    LABEL_CELL,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
    container_labels,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

RUNTIME_RUNC_V2: Final = "io.containerd.runc.v2"
SPEC_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

MANAGED_FILTER: Final = f'labels."{LABEL_MANAGED}"==true'
# The labels are the spec builder's (it also writes them as annotations); re-exported here
# under the name the client's callers use.
kukeon_labels = container_labels


def label_filter(labels: Mapping[str, str]) -> str:
    """A containerd filter matching objects carrying all of ``labels``."""
    return ",".join(f'labels."{key}"=={_quote(value)}' for key, value in labels.items())


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def spec_to_any(spec: Mapping[str, Any]) -> any_pb2.Any:
    """An OCI runtime spec (or process) dict as containerd stores it: JSON in an Any."""
    return any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode())


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    image: str
    labels: Mapping[str, str]
    runtime: str
    snapshotter: str
    snapshot_key: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


class ContainerService:
    def __init__(self, *, client: ContainerdClient, namespace: str, snapshotter: str) -> None:
        self._client = client
        self.namespace = namespace
        self.snapshotter = snapshotter

    async def create(
        self,
        container_id: str,
        *,
        image: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        snapshot_key: str | None = None,
        runtime: str = RUNTIME_RUNC_V2,
        remap: Remap | None = None,
    ) -> Container:
        """Create the container and its rootfs snapshot on ``image`` (unpacked if needed).

        ``spec`` is an OCI runtime spec whose ``root.path`` is ``rootfs``. Raises
        :class:`AlreadyExistsError` when the id is taken; the snapshot of an earlier,
        interrupted attempt with the same key is reused. With ``remap`` (a container in a
        user namespace) the rootfs is prepared on the image's snapshot shifted to the
        range's ids (:mod:`.remap`), made under the same lease if missing.
        """
        key = snapshot_key or container_id
        all_labels = dict(labels or {})
        parent = await self._client.images(self.namespace, snapshotter=self.snapshotter).unpack(
            image
        )
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        message = containers_pb2.Container(
            id=container_id,
            image=image,
            labels=all_labels,
            runtime=containers_pb2.Container.Runtime(name=runtime),
            spec=spec_to_any(spec),
            snapshotter=self.snapshotter,
            snapshot_key=key,
        )
        async with self._client.leases(self.namespace).lease() as lease:
            if remap is not None:
                parent = await ensure_remapped(
                    snapshots, parent, remap.idrange, lease=lease, scratch=remap.scratch
                )
            await snapshots.ensure_active(key, parent=parent, labels=all_labels, lease=lease)
            response = await self._client.call(
                "create",
                lambda s, md: s.containers.Create(
                    containers_pb2.CreateContainerRequest(container=message),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                lease=lease,
                subject=Subject("container", container_id),
            )
        return _container(response.container)

    async def get(self, container_id: str) -> Container:
        response = await self._client.call(
            "get",
            lambda s, md: s.containers.Get(
                containers_pb2.GetContainerRequest(id=container_id),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("container", container_id),
        )
        return _container(response.container)

    async def list(self, *filters: str, labels: Mapping[str, str] | None = None) -> list[Container]:
        """Containers matching any of ``filters``; ``labels`` adds one matching all of them."""
        all_filters = list(filters)
        if labels:
            all_filters.append(label_filter(labels))
        response = await self._client.call(
            "list containers",
            lambda s, md: s.containers.List(
                containers_pb2.ListContainersRequest(filters=all_filters),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
        )
        return [_container(container) for container in response.containers]

    async def delete(self, container_id: str, *, with_snapshot: bool = True) -> bool:
        """Delete the container (its task must be gone) and its rootfs snapshot.

        NOT_FOUND counts as done, so deleting twice, or after a crash halfway, is fine.
        Returns False when the container did not exist.
        """
        snapshot_key: str | None = None
        snapshotter = self.snapshotter
        try:
            existing = await self.get(container_id)
            snapshot_key, snapshotter = existing.snapshot_key, existing.snapshotter
        except ContainerNotFoundError:
            existing = None
        if existing is not None:
            try:
                await self._client.call(
                    "delete",
                    lambda s, md: s.containers.Delete(
                        containers_pb2.DeleteContainerRequest(id=container_id),
                        metadata=md,
                        timeout=self._client.call_timeout,
                    ),
                    namespace=self.namespace,
                    subject=Subject("container", container_id),
                )
            except ContainerNotFoundError:
                existing = None
        if with_snapshot:
            key = snapshot_key or container_id
            await self._client.snapshots(self.namespace, snapshotter=snapshotter).remove(key)
        return existing is not None


def _container(message: containers_pb2.Container) -> Container:
    spec: Mapping[str, Any] = {}
    if message.spec.value:
        try:
            spec = json.loads(message.spec.value)
        except ValueError:
            spec = {}
    return Container(
        id=message.id,
        image=message.image,
        labels=dict(message.labels),
        runtime=message.runtime.name,
        snapshotter=message.snapshotter,
        snapshot_key=message.snapshot_key,
        spec=spec,
        created_at=to_datetime(message.created_at),
    )


__all__ = [
    "LABEL_CELL",
    "LABEL_CONTAINER",
    "LABEL_MANAGED",
    "LABEL_REALM",
    "LABEL_SPACE",
    "LABEL_STACK",
    "MANAGED_FILTER",
    "RUNTIME_RUNC_V2",
    "SPEC_TYPE_URL",
    "Container",
    "ContainerService",
    "kukeon_labels",
    "label_filter",
    "spec_to_any",
]
