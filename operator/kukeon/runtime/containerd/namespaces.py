"""containerd namespaces: one per realm (``<realm>.kukeon.io``), created and labelled here.

Images, content, snapshots and containers all live inside a namespace, so a realm's
namespace is the first thing a realm needs and the last thing that goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import grpc

from kukeon.api.realm import default_namespace
from kukeon.runtime.containerd._gen.services.content.v1 import content_pb2
from kukeon.runtime.containerd._gen.services.namespaces.v1 import namespace_pb2
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.errors import (
    ContainerdCallError,
    ContainerdError,
    NamespaceNotEmptyError,
    NamespaceNotFoundError,
)
from kukeon.runtime.containerd.namespacedirs import (
    RUNC_ROOT,
    remove_empty_namespace_dirs,
    task_dirs_root,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

LABEL_INSTANCE: Final = "kukeon.io/instance"
"""On the namespaces and containers of a control plane that is not the host's default one
(``runtime.network.instance_tag``): what its orphan collectors recognise as their own."""


def realm_namespace(realm: str, instance: str = "") -> str:
    """The containerd namespace of a realm (another control plane's realm of the same name
    on the same containerd gets its own: ``<realm>.<instance>.kukeon.io``)."""
    return default_namespace(realm, instance)


def instance_labels(instance: str) -> dict[str, str]:
    """The label marking an object as this control plane's (none for the default one)."""
    return {LABEL_INSTANCE: instance} if instance else {}


def is_own(labels: Mapping[str, str], instance: str) -> bool:
    """Whether an object with these labels belongs to the control plane ``instance``."""
    return labels.get(LABEL_INSTANCE, "") == instance


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


class NamespaceService:
    def __init__(self, *, client: ContainerdClient) -> None:
        self._client = client

    async def get(self, name: str) -> Namespace:
        response = await self._client.call(
            "get",
            lambda s, md: s.namespaces.Get(
                namespace_pb2.GetNamespaceRequest(name=name),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=name,
            subject=Subject("namespace", name),
        )
        return Namespace(name=response.namespace.name, labels=dict(response.namespace.labels))

    async def list(self) -> list[Namespace]:
        response = await self._client.call(
            "list namespaces",
            lambda s, md: s.namespaces.List(
                namespace_pb2.ListNamespacesRequest(),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=None,
        )
        return [Namespace(name=ns.name, labels=dict(ns.labels)) for ns in response.namespaces]

    async def ensure(self, name: str, *, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create the namespace, or add/refresh ``labels`` on an existing one (others kept)."""
        wanted = dict(labels or {})
        request = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=wanted)
        )
        try:
            response = await self._client.call(
                "create",
                lambda s, md: s.namespaces.Create(
                    request, metadata=md, timeout=self._client.call_timeout
                ),
                # The header must be present even here, or containerd creates the namespace
                # and then fails publishing the event ("namespace is required").
                namespace=name,
            )
            return Namespace(name=response.namespace.name, labels=dict(response.namespace.labels))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise ContainerdCallError(
                    operation=f"create namespace {name!r}",
                    code=error.code(),
                    detail=error.details() or "",
                ) from error
        current = await self.get(name)
        if all(current.labels.get(key) == value for key, value in wanted.items()):
            return current
        update = namespace_pb2.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=wanted),
        )
        update.update_mask.paths.extend(f"labels.{key}" for key in wanted)
        await self._client.call(
            "update",
            lambda s, md: s.namespaces.Update(
                update, metadata=md, timeout=self._client.call_timeout
            ),
            namespace=name,
            subject=Subject("namespace", name),
        )
        # containerd 1.6 answers an update with the request's labels only: read them back.
        return await self.get(name)

    async def delete(self, name: str) -> bool:
        """Delete an empty namespace; False when it did not exist.

        Raises :class:`NamespaceNotEmptyError` while images, containers, content or
        snapshots remain in it.
        """
        try:
            await self._client.call(
                "delete",
                lambda s, md: s.namespaces.Delete(
                    namespace_pb2.DeleteNamespaceRequest(name=name),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=name,
                subject=Subject("namespace", name),
            )
        except NamespaceNotFoundError:
            return False
        except ContainerdCallError as error:
            if error.code == grpc.StatusCode.FAILED_PRECONDITION:
                raise NamespaceNotEmptyError(name, detail=error.detail) from error
            raise
        return True

    async def purge(self, name: str, *, rounds: int = 5) -> bool:
        """Empty the namespace of everything containerd keeps in it, then delete it.

        containerd refuses to delete a namespace while tasks, containers, images, leases,
        snapshots or content remain, and a realm's namespace holds all of them (unpacked
        layers, blobs of imported and pulled images, leases of interrupted imports). They
        go in dependency order: tasks, containers (with their snapshots), images, leases,
        snapshots children first, content. False when the namespace did not exist.
        Raises :class:`NamespaceNotEmptyError` if something keeps coming back.

        Once the namespace is gone (now, or by an earlier purge cut before its end), the
        empty directories its tasks left on the host go too (``namespacedirs``).
        """
        if name not in {namespace.name for namespace in await self.list()}:
            await self._remove_host_dirs(name)
            return False
        last: NamespaceNotEmptyError | None = None
        for _ in range(rounds):
            await self._empty(name)
            try:
                deleted = await self.delete(name)
            except NamespaceNotEmptyError as error:
                last = error  # something appeared meanwhile (a late import): go again
                await asyncio.sleep(0.1)
                continue
            await self._remove_host_dirs(name)
            return deleted
        assert last is not None
        raise last

    async def _remove_host_dirs(self, name: str) -> None:
        """The empty runc and task directories of the deleted namespace ``name``. Only
        after containerd deleted it: its caller owns the name (a realm being deleted), so
        no task of it is being created meanwhile, which would need them again."""
        parents = [RUNC_ROOT]
        if (task_dirs := task_dirs_root(await self._client.content_root())) is not None:
            parents.append(task_dirs)
        await asyncio.to_thread(remove_empty_namespace_dirs, name, parents)

    async def _empty(self, name: str) -> None:
        client = self._client
        tasks = client.tasks(name)
        for task in await tasks.list():
            with contextlib.suppress(ContainerdError):
                await tasks.kill(task.container_id, signal.SIGKILL, all=True)
            with contextlib.suppress(ContainerdError, TimeoutError):
                async with asyncio.timeout(10):
                    await tasks.wait(task.container_id)
            with contextlib.suppress(ContainerdError):
                await tasks.delete(task.container_id)
        containers = client.containers(name)
        for container in await containers.list():
            with contextlib.suppress(ContainerdError):
                await containers.delete(container.id)
        images = client.images(name)
        for image in await images.list():
            with contextlib.suppress(ContainerdError):
                await images.delete(image.name)
        leases = client.leases(name)
        for lease in await leases.list():
            with contextlib.suppress(ContainerdError):
                await leases.delete(lease.id)
        snapshots = client.snapshots(name)
        # A parent cannot go before its children: sweep until nothing (more) goes.
        while remaining := await snapshots.list():
            removed = 0
            for snapshot in remaining:
                with contextlib.suppress(ContainerdError):
                    removed += await snapshots.remove(snapshot.name)
            if not removed:
                break
        batches = await client.collect(
            "list content",
            lambda s, md: s.content.List(content_pb2.ListContentRequest(), metadata=md),
            namespace=name,
        )
        content = client.content(name)
        for batch in batches:
            for blob in batch.info:
                with contextlib.suppress(ContainerdError):
                    await content.delete(blob.digest)
