"""What the stateful API fuzz (test_stateful_api.py) drives and checks: one API server over a
real etcd, watches opened once at the start, and the checks made after every step.

The machine runs in a thread of its own (hypothesis' state machines are synchronous); every
request is a coroutine handed to the test's event loop, where the API server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import aiohttp

from kukeon.api import Kind
from kukeon.client.paths import KINDS, collection_path, object_path
from kukeon.store import Registry
from tests.integration.apiserver.test_admission_matrix import etcd_dump

T = TypeVar("T")

FUZZED_KINDS: tuple[Kind, ...] = (
    Kind.REALM,
    Kind.SPACE,
    Kind.STACK,
    Kind.CELL,
    Kind.CELL_SET,
    Kind.SECRET,
    Kind.CELL_PROFILE,
)
CHILDREN_FINALIZER = "kukeon.io/children"
SCOPED = frozenset({Kind.SECRET, Kind.CELL_PROFILE})
WAIT = 10.0
"""The bound of every wait: a cascade settling, a watch catching up with a list."""

Key = tuple[str, ...]
Slot = tuple[Kind, Key]
Dump = dict[bytes, tuple[bytes, int, int]]


class Answer(NamedTuple):
    status: int
    body: Any
    headers: Mapping[str, str]


def key_of_document(kind: Kind, document: Mapping[str, Any]) -> Key:
    """The key of an object as the API shows it (its parents from its spec or metadata)."""
    metadata = document["metadata"]
    if kind in SCOPED:
        scope = (metadata["realm"], metadata.get("space") or "-", metadata.get("stack") or "-")
        return (*scope, metadata["name"])
    spec = document.get("spec") or {}
    parents = tuple(spec[name] for name in KINDS[kind].parent_fields)
    return (*parents, metadata["name"])


def is_descendant(key: Key, parent: Key) -> bool:
    """``key`` lies under ``parent`` (a Secret's ``-`` never matches a real name)."""
    return len(key) > len(parent) and key[: len(parent)] == parent


def check_status_document(answer: Answer) -> None:
    """A refusal is a Status naming its reason (and, when invalid, the fields)."""
    body = answer.body
    assert isinstance(body, dict), answer
    assert body.get("kind") == "Status", answer
    assert body.get("status") == "Failure", answer
    assert body.get("code") == answer.status, answer
    assert body.get("message"), answer
    assert body.get("reason"), answer
    if answer.status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        assert causes, answer
        assert all(cause.get("field") for cause in causes), answer


@dataclass
class Mirror:
    """What the watches opened at the start delivered: each object's last document."""

    objects: dict[Slot, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[Kind, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by every event applied."""

    def apply(self, kind: Kind, event: dict[str, Any]) -> None:
        self.changed.set()
        kind_name, document = event["type"], event["object"]
        revision = int(document["metadata"]["resourceVersion"])
        last = self.revisions.get(kind, 0)
        if revision < last:
            self.errors.append(f"{kind.value} watch went back from {last} to {revision}")
        self.revisions[kind] = max(last, revision)
        if kind_name == "BOOKMARK":
            return
        if kind_name == "ERROR":
            self.errors.append(f"{kind.value} watch: {document}")
            return
        slot = (kind, key_of_document(kind, document))
        if kind_name == "DELETED":
            self.objects.pop(slot, None)
        else:
            self.objects[slot] = document


@dataclass
class World:
    """The API under test, as the machine's thread sees it."""

    loop: asyncio.AbstractEventLoop
    http: aiohttp.ClientSession
    registry: Registry
    mirror: Mirror
    examples: int = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.http.request(
            method, path, data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            answer = Answer(response.status, json.loads(text) if text else None, response.headers)
        assert answer.status < 500, (method, path, body, raw, answer)
        if answer.status >= 400:
            check_status_document(answer)
        return answer

    async def dump(self) -> Dump:
        return await etcd_dump(self.registry)

    async def listed(self) -> tuple[dict[Slot, dict[str, Any]], dict[Kind, int]]:
        """Every object of every fuzzed kind, from the API's lists, and each list's revision."""
        objects: dict[Slot, dict[str, Any]] = {}
        revisions: dict[Kind, int] = {}
        for kind in FUZZED_KINDS:
            answer = await self.request("GET", collection_path(kind))
            assert answer.status == 200, answer
            assert "Warning" not in answer.headers, (kind, answer.headers)
            revisions[kind] = int(answer.body["metadata"]["resourceVersion"])
            for item in answer.body["items"]:
                objects[(kind, key_of_document(kind, item))] = item
        return objects, revisions

    async def settled(self, *, until_empty: bool = False) -> dict[Slot, dict[str, Any]]:
        """The objects once every cascade has done what it can: a Deleting object held
        only by its children has a descendant held by a finalizer of its own (with
        ``until_empty``: once none is left)."""
        async with asyncio.timeout(WAIT):
            while True:
                objects, _ = await self.listed()
                done = not objects if until_empty else all(_settled(s, objects) for s in objects)
                if done:
                    return objects
                await asyncio.sleep(0.02)

    async def check(self, revisions_seen: dict[Kind, int]) -> dict[Slot, dict[str, Any]]:
        """Every check made after a step; the objects as they are now (``revisions_seen``
        takes each kind's list revision)."""
        objects = await self.settled()
        dump = await self.dump()
        listed, revisions = await self.listed()
        assert listed == objects, "something changed once settled"
        for kind in FUZZED_KINDS:
            assert revisions[kind] >= revisions_seen.get(kind, 0), kind
            revisions_seen[kind] = revisions[kind]
            # Every stored key is listed: none was accepted that cannot be read back.
            prefix = self.registry.layout.kind_prefix(kind).encode()
            stored = {key for key in dump if key.startswith(prefix)}
            shown = {slot for slot in objects if slot[0] == kind}
            assert len(stored) == len(shown), (kind, sorted(stored), sorted(shown))
        for (kind, key), document in objects.items():
            got = await self.request("GET", object_path(kind, key))
            assert got.status == 200, (kind, key, got)
            assert got.body == document, (kind, key, got, document)
            rv = int(document["metadata"]["resourceVersion"])
            assert rv == dump[self.registry.layout.key(kind, key).encode()][2], (kind, key)
        await self._watched(objects)
        return objects

    async def resumed(
        self, kind: Kind, revision: int, then: Mapping[Key, dict[str, Any]]
    ) -> dict[Key, dict[str, Any]]:
        """``kind``'s objects as a watch from ``revision`` brings ``then`` (its objects at
        that list revision) forward, once it reached what the kind's list shows now."""
        now = {key: doc for (k, key), doc in (await self.listed())[0].items() if k == kind}
        objects = dict(then)
        params = {"watch": "true", "resourceVersion": str(revision)}
        async with self.http.get(collection_path(kind), params=params) as response:
            assert response.status == 200, await response.text()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT):
                    while objects != now:
                        event = json.loads(await response.content.readline())
                        document = event["object"]
                        assert event["type"] != "ERROR", event
                        assert int(document["metadata"]["resourceVersion"]) > revision, event
                        if event["type"] == "BOOKMARK":
                            continue
                        key = key_of_document(kind, document)
                        if event["type"] == "DELETED":
                            objects.pop(key, None)
                        else:
                            objects[key] = document
        return objects

    async def _watched(self, objects: dict[Slot, dict[str, Any]]) -> None:
        """The watches opened at the start reach what the lists show, within ``WAIT``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT):
                while self.mirror.objects != objects:
                    self.mirror.changed.clear()
                    await self.mirror.changed.wait()
        assert not self.mirror.errors, self.mirror.errors
        missing = {slot for slot in objects if slot not in self.mirror.objects}
        extra = {slot for slot in self.mirror.objects if slot not in objects}
        differ = {
            slot
            for slot in objects
            if slot in self.mirror.objects and self.mirror.objects[slot] != objects[slot]
        }
        assert not missing, ("not delivered by the watch", missing)
        assert not extra, ("delivered by the watch, not listed", extra)
        assert not differ, ("the watch delivered other documents", differ)


def _settled(slot: Slot, objects: Mapping[Slot, dict[str, Any]]) -> bool:
    metadata = objects[slot]["metadata"]
    if not metadata.get("deletionTimestamp"):
        return True
    finalizers = set(metadata.get("finalizers") or ())
    if finalizers - {CHILDREN_FINALIZER}:
        return True  # held by someone else (a CellSet's orphaning): no cascade to wait for
    below = [other for other in objects if is_descendant(other[1], slot[1])]
    held = any(
        set(objects[other]["metadata"].get("finalizers") or ()) - {CHILDREN_FINALIZER}
        for other in below
    )
    return (
        bool(below)
        and held
        and all(objects[other]["metadata"].get("deletionTimestamp") for other in below)
    )


async def follow(http: aiohttp.ClientSession, kind: Kind, mirror: Mirror) -> None:
    """Apply one kind's watch, opened now across every parent, to ``mirror`` until cancelled."""
    params = {"watch": "true", "allowWatchBookmarks": "true"}
    async with http.get(collection_path(kind), params=params, timeout=None) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.strip():
                mirror.apply(kind, json.loads(line))
    mirror.errors.append(f"{kind.value} watch ended")


@contextlib.asynccontextmanager
async def watching(http: aiohttp.ClientSession) -> AsyncIterator[Mirror]:
    """Every fuzzed kind watched from now on, into one mirror."""
    mirror = Mirror()
    tasks = [asyncio.create_task(follow(http, kind, mirror)) for kind in FUZZED_KINDS]
    try:
        yield mirror
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
