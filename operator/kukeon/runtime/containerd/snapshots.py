"""Snapshots (overlayfs): committed image layers named by chain id, and active rootfs.

An image's layers become committed snapshots named by their chain id (see
:func:`chain_ids`), so images sharing a base share its snapshots; a container's rootfs is
an active snapshot prepared on top of the image's top chain id, keyed by the container.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING

from kukeon.runtime.containerd._gen.services.snapshots.v1 import snapshots_pb2
from kukeon.runtime.containerd._gen.types import mount_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.errors import AlreadyExistsError, SnapshotNotFoundError

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain id of every layer prefix: the names of committed layer snapshots.

    ``chain[0] = diff[0]``; ``chain[n] = sha256(chain[n-1] + " " + diff[n])``.
    """
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            digest = hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
            chains.append(f"sha256:{digest}")
    return chains


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a snapshot, as containerd describes it (mount(2) arguments)."""

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""

    def to_proto(self) -> mount_pb2.Mount:
        return mount_pb2.Mount(
            type=self.type, source=self.source, target=self.target, options=list(self.options)
        )

    @classmethod
    def from_proto(cls, message: mount_pb2.Mount) -> Mount:
        return cls(
            type=message.type,
            source=message.source,
            options=tuple(message.options),
            target=message.target,
        )


class SnapshotKind(IntEnum):
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: SnapshotKind
    created_at: datetime | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotUsage:
    size_bytes: int
    inodes: int


class SnapshotService:
    def __init__(self, *, client: ContainerdClient, namespace: str, snapshotter: str) -> None:
        self._client = client
        self.namespace = namespace
        self.snapshotter = snapshotter

    async def prepare(
        self,
        key: str,
        *,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        lease: str | None = None,
    ) -> list[Mount]:
        """Create an active snapshot; raises AlreadyExistsError if ``key`` is taken."""
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=self.snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        response = await self._client.call(
            "prepare",
            lambda s, md: s.snapshots.Prepare(
                request, metadata=md, timeout=self._client.call_timeout
            ),
            namespace=self.namespace,
            lease=lease,
            subject=Subject("snapshot", key),
        )
        return [Mount.from_proto(mount) for mount in response.mounts]

    async def ensure_active(
        self,
        key: str,
        *,
        parent: str,
        labels: Mapping[str, str] | None = None,
        lease: str | None = None,
    ) -> list[Mount]:
        """Prepare ``key`` on ``parent``, or return the mounts of the existing one."""
        try:
            return await self.prepare(key, parent=parent, labels=labels, lease=lease)
        except AlreadyExistsError:
            return await self.mounts(key)

    async def mounts(self, key: str) -> list[Mount]:
        response = await self._client.call(
            "mounts",
            lambda s, md: s.snapshots.Mounts(
                snapshots_pb2.MountsRequest(snapshotter=self.snapshotter, key=key),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("snapshot", key),
        )
        return [Mount.from_proto(mount) for mount in response.mounts]

    async def commit(
        self,
        *,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        lease: str | None = None,
    ) -> None:
        request = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=self.snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        await self._client.call(
            "commit",
            lambda s, md: s.snapshots.Commit(
                request, metadata=md, timeout=self._client.call_timeout
            ),
            namespace=self.namespace,
            lease=lease,
            subject=Subject("snapshot", name),
        )

    async def stat(self, key: str) -> SnapshotInfo:
        response = await self._client.call(
            "stat",
            lambda s, md: s.snapshots.Stat(
                snapshots_pb2.StatSnapshotRequest(snapshotter=self.snapshotter, key=key),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("snapshot", key),
        )
        return _info(response.info)

    async def usage(self, key: str) -> SnapshotUsage:
        """What the snapshot's own directory takes on disk. For an active overlay snapshot
        containerd walks its upper directory (``fs.DiskUsage``: blocks allocated, hard links
        counted once), which is what the container wrote into its root filesystem."""
        response = await self._client.call(
            "usage",
            lambda s, md: s.snapshots.Usage(
                snapshots_pb2.UsageRequest(snapshotter=self.snapshotter, key=key),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("snapshot", key),
        )
        return SnapshotUsage(size_bytes=response.size, inodes=response.inodes)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except SnapshotNotFoundError:
            return False
        return True

    async def remove(self, key: str) -> bool:
        """Remove a snapshot; False when it was already gone (NOT_FOUND counts as done)."""
        try:
            await self._client.call(
                "remove",
                lambda s, md: s.snapshots.Remove(
                    snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("snapshot", key),
            )
        except SnapshotNotFoundError:
            return False
        return True

    async def list(self, *filters: str) -> list[SnapshotInfo]:
        """Snapshots matching any filter (e.g. ``labels."kukeon.io/managed"==true``)."""
        request = snapshots_pb2.ListSnapshotsRequest(
            snapshotter=self.snapshotter, filters=list(filters)
        )
        batches = await self._client.collect(
            "list snapshots",
            lambda s, md: s.snapshots.List(request, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
        )
        return [_info(info) for batch in batches for info in batch.info]


def _info(message: snapshots_pb2.Info) -> SnapshotInfo:
    return SnapshotInfo(
        name=message.name,
        parent=message.parent,
        kind=SnapshotKind(message.kind),
        created_at=to_datetime(message.created_at),
        labels=dict(message.labels),
    )
