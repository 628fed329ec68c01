"""Watch fan-out: one registry watch shared by many watchers, history, slow watchers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.apiserver import watchhub
from kukeon.apiserver.watchhub import EncodedEvent, Item, WatchHub
from kukeon.store import Gone, ResourceList, WatchEvent


def _realm(name: str) -> AnyResource:
    return parse_resource({"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": name}})


class FeedRegistry:
    """A registry whose watches are fed by the test through ``emit``."""

    def __init__(self) -> None:
        self.watches: list[int] = []
        self._streams: list[asyncio.Queue[WatchEvent | BaseException]] = []
        self.revision = 100

    async def emit(self, name: str) -> int:
        self.revision += 1
        for stream in self._streams:
            stream.put_nowait(WatchEvent("ADDED", _realm(name), self.revision))
        await asyncio.sleep(0)
        return self.revision

    def fail(self, error: BaseException) -> None:
        for stream in self._streams:
            stream.put_nowait(error)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        self.watches.append(resource_version)
        stream: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        self._streams.append(stream)
        try:
            while True:
                item = await stream.get()
                if isinstance(item, BaseException):
                    raise item
                if item.revision > resource_version:
                    yield item
        finally:
            self._streams.remove(stream)

    # unused by the hub
    async def create(self, res: AnyResource) -> AnyResource:
        raise NotImplementedError

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        raise NotImplementedError

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        raise NotImplementedError

    async def update(self, res: AnyResource, *, charged: bool = False) -> AnyResource:
        raise NotImplementedError

    async def update_status(self, res: AnyResource) -> AnyResource:
        raise NotImplementedError

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
    ) -> AnyResource | None:
        raise NotImplementedError

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        raise NotImplementedError

    async def current_revision(self) -> int:
        return self.revision


async def _drain(queue: asyncio.Queue[Item]) -> list[Item]:
    await asyncio.sleep(0.01)
    items: list[Item] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _names(items: list[Item]) -> list[str]:
    return [item.object.metadata.name for item in items if isinstance(item, EncodedEvent)]


async def test_watchers_share_one_registry_watch_and_one_encoding() -> None:
    registry = FeedRegistry()
    hub = WatchHub(registry=registry)
    subs = [hub.subscribe(Kind.REALM, (), 100) for _ in range(3)]
    await asyncio.sleep(0)
    await registry.emit("a")
    received = [await _drain(sub.queue) for sub in subs]
    assert registry.watches == [100]
    assert [_names(items) for items in received] == [["a"], ["a"], ["a"]]
    first_lines = {id(items[0].line) for items in received if isinstance(items[0], EncodedEvent)}
    assert len(first_lines) == 1  # encoded once
    for sub in subs:
        sub.close()
    assert hub.feed_count == 0
    await hub.close()


async def test_late_watchers_replay_history_and_skip_what_they_listed() -> None:
    registry = FeedRegistry()
    hub = WatchHub(registry=registry)
    early = hub.subscribe(Kind.REALM, (), 100)
    await asyncio.sleep(0)
    await registry.emit("a")
    rev_b = await registry.emit("b")
    await registry.emit("c")
    late = hub.subscribe(Kind.REALM, (), rev_b)  # its list already had a and b
    assert _names(await _drain(late.queue)) == ["c"]
    ahead = hub.subscribe(Kind.REALM, (), registry.revision + 1)  # listed past what the feed saw
    await registry.emit("d")  # revision = ahead's start: already in its list
    await registry.emit("e")
    assert _names(await _drain(ahead.queue)) == ["e"]
    assert _names(await _drain(early.queue)) == ["a", "b", "c", "d", "e"]
    assert registry.watches == [100]
    older = hub.subscribe(Kind.REALM, (), 50)  # before the shared feed: a private one
    await asyncio.sleep(0)
    assert registry.watches == [100, 50]
    assert hub.feed_count == 2
    for sub in (early, late, ahead, older):
        sub.close()
    await hub.close()


async def test_history_eviction_moves_what_a_feed_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchhub, "HISTORY", 2)
    registry = FeedRegistry()
    hub = WatchHub(registry=registry)
    keep = hub.subscribe(Kind.REALM, (), 100)
    await asyncio.sleep(0)
    for name in "abcd":
        await registry.emit(name)
    # a (101) and b (102) were evicted, c and d kept: resuming after b is covered ...
    hub.subscribe(Kind.REALM, (), 102)
    await asyncio.sleep(0)
    assert registry.watches == [100]
    # ... resuming after a would need b, which is gone: a private feed from 101
    hub.subscribe(Kind.REALM, (), 101)
    await asyncio.sleep(0)
    assert registry.watches == [100, 101]
    keep.close()
    await hub.close()


async def test_slow_watcher_is_cut_off_with_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchhub, "QUEUE_SIZE", 3)
    registry = FeedRegistry()
    hub = WatchHub(registry=registry)
    slow = hub.subscribe(Kind.REALM, (), 100)
    fast = hub.subscribe(Kind.REALM, (), 100)
    await asyncio.sleep(0)
    for name in "abcde":
        await registry.emit(name)
        await _drain(fast.queue) if name != "e" else None
    items = await _drain(slow.queue)
    assert isinstance(items[-1], Gone)
    assert _names(await _drain(fast.queue)) == ["e"]
    fast.close()
    slow.close()
    await hub.close()


async def test_registry_errors_reach_every_watcher_and_end_the_feed() -> None:
    registry = FeedRegistry()
    hub = WatchHub(registry=registry)
    subs = [hub.subscribe(Kind.REALM, (), 100) for _ in range(2)]
    await asyncio.sleep(0)
    registry.fail(Gone("compacted", compacted_revision=120))
    for sub in subs:
        (item,) = await _drain(sub.queue)
        assert isinstance(item, Gone)
    assert hub.feed_count == 0
    again = hub.subscribe(Kind.REALM, (), 130)  # a new feed after the failed one
    await asyncio.sleep(0)
    assert registry.watches == [100, 130]
    again.close()
    await hub.close()
