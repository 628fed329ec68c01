"""An in-memory stand-in for ``kukeon.store.Registry`` (unit tests only).

It keeps the registry's contract where the framework depends on it: resourceVersions
are a global revision, writes compare-and-swap on it, spec writes bump generation,
watches replay history after a revision and raise ``Gone`` below the compacted one,
deletion waits for finalizers. Tests can also break every open watch with an error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from kukeon.api import Kind, ObjectMeta, Realm, Resource, key_of
from kukeon.store import Conflict, Gone, NotFound, ResourceList, WatchEvent

AnyResource = Resource[Any, Any]
_Key = tuple[Kind, tuple[str, ...]]


class FakeStore:
    key_prefix = "/fake"

    def __init__(self) -> None:
        self.objects: dict[_Key, AnyResource] = {}
        self.revision = 1
        self.history: list[WatchEvent] = []
        self.compacted = 0
        self.watch_starts: list[int] = []
        self.status_writes = 0
        self.conflicts_to_inject = 0
        self._subscribers: list[tuple[Kind, asyncio.Queue[WatchEvent | Exception]]] = []

    def invalid_under(self, kind: Kind, scope: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
        """Nothing here is invalid: the fake holds objects, not stored documents."""
        return ()

    # --- helpers for tests ---------------------------------------------------------------

    def _publish(self, event: WatchEvent) -> None:
        self.history.append(event)
        for kind, queue in self._subscribers:
            if kind.value == event.object.kind:
                queue.put_nowait(event)

    def break_watches(self, error: Exception) -> None:
        for _, queue in self._subscribers:
            queue.put_nowait(error)

    def compact(self) -> None:
        self.compacted = self.revision

    def _stamp(self, obj: AnyResource, **meta: Any) -> AnyResource:
        self.revision += 1
        metadata = obj.metadata.model_copy(update={"resource_version": str(self.revision), **meta})
        return obj.model_copy(update={"metadata": metadata}, deep=True)

    def _current(self, obj: AnyResource) -> AnyResource:
        found = self.objects.get((Kind(obj.kind), key_of(obj)))
        if found is None:
            raise NotFound(f"{obj.kind} {key_of(obj)} not found")
        if found.metadata.resource_version != obj.metadata.resource_version:
            raise Conflict(f"{obj.kind} {key_of(obj)} was modified")
        return found

    # --- the Store protocol and the writes tests use ------------------------------------

    async def create(self, obj: AnyResource) -> AnyResource:
        key = (Kind(obj.kind), key_of(obj))
        stored = self._stamp(
            obj,
            uid=str(uuid.uuid4()),
            generation=1,
            creation_timestamp=datetime.now(UTC),
        )
        self.objects[key] = stored
        self._publish(WatchEvent("ADDED", stored, self.revision))
        return stored

    async def update(self, obj: AnyResource, *, placement: bool = False) -> AnyResource:
        current = self._current(obj)
        # The store's rule: a placement (nodeName alone) leaves the generation as it is.
        moved = _without_node(obj.spec, placement) != _without_node(current.spec, placement)
        generation = current.metadata.generation + moved
        stored = self._stamp(
            obj.model_copy(update={"status": current.status}), generation=generation
        )
        return self._replace(stored)

    def _replace(self, stored: AnyResource) -> AnyResource:
        key = (Kind(stored.kind), key_of(stored))
        if stored.metadata.deletion_timestamp is not None and not stored.metadata.finalizers:
            del self.objects[key]
            self._publish(WatchEvent("DELETED", stored, self.revision))
            return stored
        self.objects[key] = stored
        self._publish(WatchEvent("MODIFIED", stored, self.revision))
        return stored

    async def update_status(self, res: AnyResource) -> AnyResource:
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            current = self.objects[(Kind(res.kind), key_of(res))]
            # Someone else wrote in between: the stored version moves on.
            self._replace(self._stamp(current))
            raise Conflict("injected conflict")
        current = self._current(res)
        self.status_writes += 1
        return self._replace(self._stamp(current.model_copy(update={"status": res.status})))

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        found = self.objects.get((kind, key))
        if found is None:
            raise NotFound(f"{kind.value} {key} not found")
        return found

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        items = [obj for (k, _), obj in sorted(self.objects.items()) if k == kind]
        return ResourceList(items, self.revision)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        self.watch_starts.append(resource_version)
        if resource_version < self.compacted:
            raise Gone("compacted", compacted_revision=self.compacted)
        queue: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()
        for event in self.history:
            if event.revision > resource_version and event.object.kind == kind.value:
                queue.put_nowait(event)
        entry = (kind, queue)
        self._subscribers.append(entry)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._subscribers.remove(entry)

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> AnyResource | None:
        current = await self.get(kind, key)
        stamped = self._stamp(current, deletion_timestamp=datetime.now(UTC))
        replaced = self._replace(stamped)
        return None if not replaced.metadata.finalizers else replaced

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        current = self.objects.get((kind, key))
        if current is None:
            return None
        if name in current.metadata.finalizers:
            return current
        return self._replace(self._stamp(current, finalizers=[*current.metadata.finalizers, name]))

    async def remove_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        current = self.objects.get((kind, key))
        if current is None or name not in current.metadata.finalizers:
            return current
        remaining = [f for f in current.metadata.finalizers if f != name]
        replaced = self._replace(self._stamp(current, finalizers=remaining))
        return replaced if (Kind(replaced.kind), key) in self.objects else None


def _without_node(spec: Any, placement: bool) -> Any:
    if placement and hasattr(spec, "node_name"):
        return spec.model_copy(update={"node_name": None})
    return spec


def realm(name: str, **labels: str) -> Realm:
    return Realm(metadata=ObjectMeta(name=name, labels=labels))


def relabel(obj: AnyResource, **labels: str) -> AnyResource:
    metadata = obj.metadata.model_copy(update={"labels": {**obj.metadata.labels, **labels}})
    return obj.model_copy(update={"metadata": metadata})
