"""LeaseSession's own keepalive: renews, and declares the lease lost before etcd can expire it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import Any

from kukeon.framework import LeaseSession


class _KeepAliveCall:
    def __init__(self, stub: _LeaseStub) -> None:
        self._stub = stub

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._replies()

    async def _replies(self) -> AsyncIterator[Any]:
        self._stub.refreshes += 1
        if self._stub.mode == "hang":
            await asyncio.Event().wait()
        if self._stub.mode == "fail":
            raise ConnectionError("etcd away")
        yield SimpleNamespace(TTL=0 if self._stub.mode == "expired" else self._stub.ttl)

    def cancel(self) -> None:
        pass


class _LeaseStub:
    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.mode = "ok"
        self.refreshes = 0
        self.revoked: list[int] = []

    async def LeaseGrant(self, request: Any, **_: Any) -> Any:  # noqa: N802 (gRPC names)
        return SimpleNamespace(ID=42, TTL=request.TTL, error="")

    def LeaseKeepAlive(self, requests: Iterable[Any], **_: Any) -> _KeepAliveCall:  # noqa: N802
        return _KeepAliveCall(self)

    async def LeaseRevoke(self, request: Any, **_: Any) -> None:  # noqa: N802
        self.revoked.append(request.ID)


class _FakeClient:
    def __init__(self, ttl: int) -> None:
        self.leasestub = _LeaseStub(ttl)
        self.metadata = ()

    async def connect(self) -> None:
        return None


def _session(client: _FakeClient, ttl: int = 2) -> LeaseSession:
    return LeaseSession(
        client=client,  # type: ignore[arg-type]
        ttl=ttl,
        refresh_interval=ttl / 3,
        name="test",
    )


async def test_a_healthy_lease_is_renewed_and_revoked_on_close() -> None:
    client = _FakeClient(2)
    session = _session(client)
    await session.start()
    await asyncio.sleep(1.5)
    assert not session.lost.is_set()
    assert client.leasestub.refreshes >= 2
    await session.close()
    assert client.leasestub.revoked == [42]


async def test_unanswered_keepalives_lose_the_lease_before_the_ttl() -> None:
    client = _FakeClient(2)
    session = _session(client)
    await session.start()
    client.leasestub.mode = "hang"
    started = time.monotonic()
    await asyncio.wait_for(session.lost.wait(), 3)
    assert time.monotonic() - started < 2
    await session.close(revoke=False)
    assert client.leasestub.revoked == []


async def test_failing_keepalives_lose_the_lease_before_the_ttl() -> None:
    client = _FakeClient(2)
    session = _session(client)
    await session.start()
    client.leasestub.mode = "fail"
    started = time.monotonic()
    await asyncio.wait_for(session.lost.wait(), 3)
    assert time.monotonic() - started < 2
    await session.close()


async def test_an_expired_lease_is_lost_at_the_next_refresh() -> None:
    client = _FakeClient(3)
    session = _session(client, ttl=3)
    await session.start()
    client.leasestub.mode = "expired"
    started = time.monotonic()
    await asyncio.wait_for(session.lost.wait(), 3)
    assert time.monotonic() - started <= 1.1
    await session.close()
