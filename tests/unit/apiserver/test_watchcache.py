"""The API server's watch cache on a scripted registry: when it answers, when it defers to etcd."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from kukeon.api import AnyResource, Kind, key_of, parse_resource, to_document
from kukeon.apiserver.watchcache import RevisionReads, WatchCache
from kukeon.store import Gone, ResourceList, Unavailable, WatchEvent, parse_selector
from kukeon.store.reads import KindState


def realm(name: str, revision: int, **labels: str) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": name, "resourceVersion": str(revision), "labels": labels},
        }
    )


class ScriptedRegistry:
    """Realms in memory; the watch delivers only what a test pushes to it."""

    def __init__(self) -> None:
        self.revision = 1
        self.realms: dict[str, AnyResource] = {}
        self.invalid = 0
        self.pushed: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        self.listed = asyncio.Event()
        self.state_reads = 0
        self.checking = asyncio.Event()
        self.answer: asyncio.Event | None = None
        self.refusal: BaseException | None = None
        """Raised by the next read of a kind's state."""
        """When set by a test, a kind's state is answered once this is set, not 10 ms later."""

    def write(self, name: str, **labels: str) -> WatchEvent:
        """Store a realm at a new revision; return the event the watch would deliver."""
        self.revision += 1
        kind: Literal["ADDED", "MODIFIED"] = "MODIFIED" if name in self.realms else "ADDED"
        self.realms[name] = realm(name, self.revision, **labels)
        return WatchEvent(kind, self.realms[name], self.revision)

    def delete(self, name: str) -> WatchEvent:
        self.revision += 1
        return WatchEvent("DELETED", self.realms.pop(name), self.revision)

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        items = list(self.realms.values()) if kind is Kind.REALM else []
        if kind is Kind.REALM:
            self.listed.set()
        return ResourceList(items, self.revision)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        if kind is not Kind.REALM:
            await asyncio.Event().wait()
        while True:
            item = await self.pushed.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def current_revision(self) -> int:
        return self.revision

    async def kind_state(self, kind: Kind, since: int) -> KindState:
        self.state_reads += 1
        self.checking.set()
        if self.refusal is not None:
            refusal, self.refusal = self.refusal, None
            raise refusal
        if self.answer is not None:
            await self.answer.wait()
        else:
            await asyncio.sleep(0.01)
        changed = any(int(r.metadata.resource_version or 0) > since for r in self.realms.values())
        return KindState(self.revision, len(self.realms) + self.invalid, changed)


async def started(registry: ScriptedRegistry, wait: float = 0.3) -> WatchCache:
    cache = WatchCache(registry=registry, cache_wait=wait)
    await cache.start()
    async with asyncio.timeout(5):
        await registry.listed.wait()
    assert await cache.fresh(Kind.REALM)
    return cache


async def test_answers_the_handler_bytes_of_the_listed_objects() -> None:
    registry = ScriptedRegistry()
    registry.write("a")
    cache = await started(registry)
    try:
        cached = cache.lookup(Kind.REALM, ("a",))
        assert cached is not None
        assert (
            cached.body
            == json.dumps(to_document(registry.realms["a"]), separators=(",", ":")).encode()
        )
        assert cache.revision(Kind.REALM) == registry.revision
        assert not cache.cached(Kind.SECRET)  # secrets are read from etcd, as before
    finally:
        await cache.stop()


@contextlib.asynccontextmanager
async def behind_other_kinds() -> AsyncIterator[tuple[ScriptedRegistry, WatchCache]]:
    """A cache of one realm, then writes of another kind: nothing of the realms changed."""
    registry = ScriptedRegistry()
    registry.write("a")
    # cache_wait is not what these are about: with 0.3 s, a loop stalled that long (a load
    # of 20, or SIGSTOP for 0.4 s: 216 of 3,000 runs) ran it out and reads answered False,
    # as they should then (read etcd).
    cache = await started(registry, wait=30)
    try:
        registry.revision += 5
        yield registry, cache
    finally:
        await cache.stop()


async def test_writes_of_other_kinds_cost_one_shared_check() -> None:
    async with behind_other_kinds() as (registry, cache):
        before = registry.state_reads
        answers = await asyncio.gather(*(cache.fresh(Kind.REALM) for _ in range(20)))
        assert all(answers)
        assert registry.state_reads - before == 1
        assert cache.revision(Kind.REALM) == registry.revision


async def test_a_reader_leaving_does_not_cancel_the_check_the_others_wait_for() -> None:
    # A reader whose cache_wait ran out (or whose client left) while the kind's check was on
    # its way to etcd: the check was that reader's own call, cancelled with it, and the next
    # reader sent another one (seen as answers False, False, True, ... on a stalled loop).
    async with behind_other_kinds() as (registry, cache):
        registry.answer = asyncio.Event()
        before = registry.state_reads
        leaving = asyncio.create_task(cache.fresh(Kind.REALM))
        async with asyncio.timeout(5):
            await registry.checking.wait()  # its check is on its way
        staying = asyncio.create_task(cache.fresh(Kind.REALM))
        await asyncio.sleep(0)  # it asks etcd's revision, then waits for the check
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
        registry.answer.set()
        assert await staying
        assert registry.state_reads - before == 1
        assert cache.revision(Kind.REALM) == registry.revision


async def test_a_check_cancelled_under_the_reads_fails_them_not_cancels_them() -> None:
    # A gRPC call cancelled under the check (as under RevisionReads' read): a 503 for each
    # reader waiting for it, not a cancellation; the next check works.
    async with behind_other_kinds() as (registry, cache):
        registry.refusal = asyncio.CancelledError()
        failed = await asyncio.gather(
            *(cache.fresh(Kind.REALM) for _ in range(3)), return_exceptions=True
        )
        assert [type(error) for error in failed] == [Unavailable] * 3
        assert await cache.fresh(Kind.REALM)


async def test_a_read_waits_for_the_change_on_its_way() -> None:
    registry = ScriptedRegistry()
    cache = await started(registry)
    try:
        event = registry.write("late")

        async def deliver() -> None:
            await asyncio.sleep(0.05)
            registry.pushed.put_nowait(event)

        delivery = asyncio.create_task(deliver())
        assert await cache.fresh(Kind.REALM)
        assert cache.lookup(Kind.REALM, ("late",)) is not None
        await delivery

        gone = registry.delete("late")
        registry.pushed.put_nowait(gone)
        assert await cache.fresh(Kind.REALM)
        assert cache.lookup(Kind.REALM, ("late",)) is None
    finally:
        await cache.stop()


async def test_a_stalled_watch_sends_the_read_to_etcd() -> None:
    registry = ScriptedRegistry()
    cache = await started(registry, wait=0.2)
    try:
        registry.write("never-delivered")
        assert not await cache.fresh(Kind.REALM)
        registry.realms.clear()  # deleted again before anyone read it
        registry.revision += 1
        assert await cache.fresh(Kind.REALM)  # nothing of the kind differs from the cache
    finally:
        await cache.stop()


async def test_documents_the_watch_never_delivers_send_reads_to_etcd() -> None:
    registry = ScriptedRegistry()
    cache = await started(registry)
    try:
        registry.invalid = 1  # an invalid document, written to etcd by hand
        registry.revision += 1
        async with asyncio.timeout(0.1):  # no wait: the watch will never bring it
            assert not await cache.fresh(Kind.REALM)
    finally:
        await cache.stop()


async def test_a_compacted_watch_relists_and_drops_what_was_deleted_meanwhile() -> None:
    registry = ScriptedRegistry()
    registry.write("kept")
    registry.write("deleted-meanwhile")
    cache = await started(registry)
    try:
        registry.listed.clear()
        del registry.realms["deleted-meanwhile"]
        registry.write("added-meanwhile")
        registry.pushed.put_nowait(Gone("compacted", compacted_revision=registry.revision))
        async with asyncio.timeout(5):
            await registry.listed.wait()
        assert await cache.fresh(Kind.REALM)
        names = [cached.resource.metadata.name for cached in cache.under(Kind.REALM, ())]
        assert names == ["added-meanwhile", "kept"]
    finally:
        await cache.stop()


async def test_objects_under_a_scope_come_in_etcd_key_order() -> None:
    registry = ScriptedRegistry()
    for name in ("b", "a-b", "a"):
        registry.write(name)
    cache = await started(registry)
    try:
        keys = [key_of(cached.resource) for cached in cache.under(Kind.REALM, ())]
        assert keys == sorted(keys, key="/".join) == [("a",), ("a-b",), ("b",)]
    finally:
        await cache.stop()


async def test_revision_reads_are_shared_only_by_callers_that_arrived_before_the_send() -> None:
    sent: list[asyncio.Future[int]] = []

    async def read() -> int:
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        sent.append(answer)
        return await answer

    reads = RevisionReads(read)
    first = [asyncio.create_task(reads.current()) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(sent) == 1
    later = [asyncio.create_task(reads.current()) for _ in range(3)]  # arrived after the send
    await asyncio.sleep(0)
    sent[0].set_result(7)
    assert await asyncio.gather(*first) == [7, 7, 7]
    await asyncio.sleep(0)
    assert len(sent) == 2  # a second read, sent after the later callers arrived
    sent[1].set_result(9)
    assert await asyncio.gather(*later) == [9, 9, 9]
    await reads.close()


async def test_equality_selectors_read_the_label_index_and_follow_relabels() -> None:
    registry = ScriptedRegistry()
    for name, tier in (("c", "web"), ("a", "web"), ("b", "db")):
        registry.write(name, tier=tier, team="x")
    cache = await started(registry)

    def chosen(selector: str) -> list[str]:
        picked = cache.under(Kind.REALM, (), parse_selector(selector))
        return [cached.resource.metadata.name for cached in picked]

    try:
        assert chosen("tier=web") == ["a", "c"]
        assert chosen("tier=web,team=x") == ["a", "c"]
        assert chosen("tier!=web") == ["b"]
        assert chosen("tier=none") == []
        for event in (registry.write("c", tier="db"), registry.delete("a")):
            registry.pushed.put_nowait(event)
        assert await cache.fresh(Kind.REALM)
        assert chosen("tier=web") == []
        assert chosen("tier==db") == ["b", "c"]
        assert chosen("") == ["b", "c"]
    finally:
        await cache.stop()


async def test_a_revision_reader_cancelled_leaves_the_others_their_answer() -> None:
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read() -> int:
        return await answer

    reads = RevisionReads(read)
    callers = [asyncio.create_task(reads.current()) for _ in range(3)]
    await asyncio.sleep(0)
    callers[1].cancel()
    await asyncio.sleep(0)
    answer.set_result(5)
    assert await callers[0] == 5
    assert await callers[2] == 5
    assert callers[1].cancelled()
    await reads.close()


def scripted_read(outcomes: list[int | BaseException]) -> Callable[[], Awaitable[int]]:
    """A revision read answering (or raising) each outcome in turn, after one yield."""

    async def read() -> int:
        await asyncio.sleep(0)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return read


async def test_a_failed_revision_read_fails_every_caller_of_it_and_not_the_next() -> None:
    reads = RevisionReads(scripted_read([RuntimeError("etcd is down"), 8]))
    failed = await asyncio.gather(reads.current(), reads.current(), return_exceptions=True)
    assert [str(error) for error in failed] == ["etcd is down", "etcd is down"]
    assert await reads.current() == 8
    await reads.close()


async def test_a_read_cancelled_under_the_reads_fails_its_callers_not_cancels_them() -> None:
    """A gRPC call cancelled under the read raises CancelledError in a task nobody
    cancelled: every caller waiting on it was cancelled too, and aiohttp dropped each one's
    connection without an answer. They get Unavailable (a 503) now; the next read works."""
    reads = RevisionReads(scripted_read([asyncio.CancelledError(), 9]))
    failed = await asyncio.gather(reads.current(), reads.current(), return_exceptions=True)
    assert [type(error) for error in failed] == [Unavailable, Unavailable]
    assert await reads.current() == 9
    await reads.close()


async def test_closing_revision_reads_cancels_the_callers_waiting() -> None:
    async def read() -> int:
        await asyncio.Event().wait()  # never answers
        return 0

    reads = RevisionReads(read)
    caller = asyncio.create_task(reads.current())
    await asyncio.sleep(0)
    await reads.close()
    await asyncio.gather(caller, return_exceptions=True)
    assert caller.cancelled()
