"""containerd namespaces: one per realm (``<realm>.kukeon.io``), created and labelled here.

Images, content, snapshots and containers all live inside a namespace, so a realm's
namespace is the first thing a realm needs and the last thing that goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import grpc

from kukeon.runtime.containerd._gen.services.namespaces.v1 import namespace_pb2
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.errors import (
    ContainerdCallError,
    NamespaceNotEmptyError,
    NamespaceNotFoundError,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

REALM_NAMESPACE_SUFFIX: Final = ".kukeon.io"


def realm_namespace(realm: str) -> str:
    """The containerd namespace of a realm."""
    return f"{realm}{REALM_NAMESPACE_SUFFIX}"


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
