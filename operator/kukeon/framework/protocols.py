"""What the framework needs from the store, as Protocols.

``kukeon.store.Registry`` satisfies ``Store``; unit tests pass a small in-memory fake.
Leases need the raw etcd client as well (``Registry.client``), so they are only
available with a real registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from kukeon.api import Kind, Resource
from kukeon.store import ResourceList, WatchEvent

AnyResource = Resource[Any, Any]
ObjectKey = tuple[str, ...]


class Store(Protocol):
    """The slice of ``kukeon.store.Registry`` an operator uses."""

    @property
    def key_prefix(self) -> str: ...

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource: ...

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList: ...

    def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]: ...

    def invalid_under(self, kind: Kind, scope: tuple[str, ...] = ()) -> Sequence[tuple[str, ...]]:
        """Keys under ``scope`` whose stored document does not decode (lists skip them)."""
        ...

    async def update_status(self, res: AnyResource) -> AnyResource: ...

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None: ...

    async def remove_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None: ...
