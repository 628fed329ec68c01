"""A watch's retry budget starts at the failure, not at the last event it saw (issue 21):
an idle watch whose etcd member dies resumes on another instead of giving up at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import grpc
import pytest

from kukeon.store import Unavailable, etcdwatch
from kukeon.store.connection import EtcdClient, EtcdConfig, ResolveFailed
from kukeon.store.health import StoreHealth

Stream = Callable[..., AsyncGenerator[list[int], None]]


def _unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="member went away",
        debug_error_string="",
    )


def _streams(plan: list[tuple[float, list[int] | None]]) -> Stream:
    """Each opened stream waits, then yields its batch or (None) fails as etcd down."""
    attempts = iter(plan)

    async def stream(*_: Any) -> AsyncGenerator[list[int], None]:
        wait, batch = next(attempts, (0.0, None))
        await asyncio.sleep(wait)
        if batch is None:
            raise _unavailable()
        yield batch
        await asyncio.sleep(3600)

    return stream


class _Client:
    """What the watch uses of a client between streams (theirs are faked here)."""

    def __init__(self) -> None:
        self.health = StoreHealth(self._probe)

    async def _probe(self) -> bool:
        return True


async def first_item(
    monkeypatch: pytest.MonkeyPatch, stream: Stream, *, client: Any = None, budget: float = 0.5
) -> int:
    """The first item of a resumable watch over ``stream`` (``client``: a fake of what
    the watch uses between streams)."""
    monkeypatch.setattr(etcdwatch, "_watch_stream", stream)
    watch = etcdwatch.resumable_watch(
        cast(EtcdClient, client if client is not None else _Client()),
        EtcdConfig(retry_timeout=budget),
        b"/k/",
        after=0,
        what="test",
        decode=lambda response: cast(list[int], response),
        revision_of=lambda item: item,
    )
    try:
        async with asyncio.timeout(10):
            return await anext(watch)
    finally:
        await watch.aclose()


async def test_an_idle_watch_survives_a_failure_after_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Idle (no event) for longer than the whole budget, then the member dies; etcd answers
    # again at the third attempt, within the budget counted from that failure.
    plan: list[tuple[float, list[int] | None]] = [(1.2, None), (0.0, None), (0.0, [7])]
    assert await first_item(monkeypatch, _streams(plan)) == 7


async def test_etcd_down_for_the_whole_budget_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Unavailable, match=r"unreachable for 0\.5s"):
        await first_item(monkeypatch, _streams([(0.0, None)] * 100))


async def test_a_dns_failure_while_opening_is_resumed_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream's connect resolves several host-named endpoints: a name that did not
    resolve ended the watch with ResolveFailed at once instead of resuming as etcd down."""
    attempts = iter([ResolveFailed("cannot resolve etcd endpoint host 'etcd-0.invalid'")])

    async def stream(*_: Any) -> AsyncGenerator[list[int], None]:
        failure = next(attempts, None)
        if failure is not None:
            raise failure
        yield [9]
        await asyncio.sleep(3600)

    assert await first_item(monkeypatch, stream) == 9
