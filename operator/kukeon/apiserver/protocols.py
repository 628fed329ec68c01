"""The slice of the registry the API server uses, as a Protocol.

Handlers depend on this shape rather than on ``kukeon.store.Registry`` itself, so unit
tests can serve the HTTP layer from a small in-memory fake while the contract tests run
it against the real registry on etcd.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from kukeon.api import AnyResource, Kind
from kukeon.store import ResourceList, WatchEvent


class RegistryApi(Protocol):
    async def create(self, res: AnyResource) -> AnyResource: ...

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource: ...

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList: ...

    async def update(self, res: AnyResource, *, charged: bool = False) -> AnyResource: ...

    async def update_status(self, res: AnyResource) -> AnyResource: ...

    async def delete(
        self,
        kind: Kind,
        key: tuple[str, ...],
        *,
        cascade: bool = False,
        background: bool = False,
        grace_seconds: int | None = None,
        precondition: Callable[[AnyResource], None] | None = None,
        hold: str | None = None,
    ) -> AnyResource | None: ...

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None: ...

    def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]: ...

    async def current_revision(self) -> int: ...
