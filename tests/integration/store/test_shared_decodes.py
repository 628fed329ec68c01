"""Watches and lists of one registry share the object decoded from each stored version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kukeon.api import Kind
from kukeon.store import Registry, WatchEvent

from .objects import realm, space, with_labels

pytestmark = pytest.mark.integration


async def _next(stream: AsyncIterator[WatchEvent]) -> WatchEvent:
    async with asyncio.timeout(10):
        return await anext(stream)


async def test_two_watches_and_a_list_get_one_object_per_version(registry: Registry) -> None:
    await registry.create(realm("r"))
    start = await registry.current_revision()
    first = registry.watch(Kind.SPACE, resource_version=start)
    second = registry.watch(Kind.SPACE, resource_version=start)
    try:
        created = await registry.create(space("r", "a"))
        one, other = await _next(first), await _next(second)
        assert one.object is other.object  # decoded once
        listed = (await registry.list(Kind.SPACE)).items
        assert [item is one.object for item in listed] == [True]

        changed = await registry.update(with_labels(created, {"x": "y"}))
        one, other = await _next(first), await _next(second)
        assert one.object is other.object
        assert one.object.metadata.labels == {"x": "y"}
        assert one.object.metadata.resource_version == changed.metadata.resource_version
        # The registry's own answer to a write is the writer's, never the shared one.
        assert changed is not one.object

        await registry.delete(Kind.SPACE, ("r", "a"))
        gone = await _next(first)
        assert gone.type == "DELETED"
        assert gone.object.metadata.labels == {"x": "y"}
        assert gone.object.metadata.resource_version == str(gone.revision)
        assert (await _next(second)).object.metadata.resource_version == str(gone.revision)
    finally:
        await first.aclose()  # type: ignore[attr-defined]
        await second.aclose()  # type: ignore[attr-defined]


async def test_a_list_with_a_selector_filters_shared_versions_too(registry: Registry) -> None:
    await registry.create(realm("r"))
    await registry.create(space("r", "a", labels={"tier": "web"}))
    await registry.create(space("r", "b", labels={"tier": "db"}))
    everything = (await registry.list(Kind.SPACE)).items  # now kept
    chosen = (await registry.list(Kind.SPACE, label_selector="tier=web")).items
    assert [s.metadata.name for s in chosen] == ["a"]
    assert chosen[0] is next(s for s in everything if s.metadata.name == "a")
