"""The heartbeat and lease loops say a run of etcd failures once, and once when it ends.

Before, each attempt logged at info: while etcd refused connections the heartbeat's key
loop said two lines every 0.05-1 s, a lease's keepalive one per refresh, an election one
per read, until the lease was given up (``kukeon.retrying.FailureRun``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.framework import LeaseSession, heartbeats
from kukeon.framework.heartbeats import Claimed, Heartbeat
from kukeon.framework.leases import LeaderElection, _WatchBroken
from kukeon.retrying import FailureRun
from kukeon.store import EtcdClient
from tests.unit.framework.test_leases import _FakeClient

log = logging.getLogger(__name__)


def _lines(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def _refusing_client() -> tuple[EtcdClient, list[None]]:
    """A client whose every connect is refused, and the list of its attempts."""
    attempts: list[None] = []

    async def refuse() -> None:
        attempts.append(None)
        raise ConnectionError("connection refused")

    return cast(EtcdClient, SimpleNamespace(connect=refuse, metadata=())), attempts


def test_a_run_of_failures_is_said_when_it_begins_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=__name__)
    now = [100.0]
    run = FailureRun(log, "the thing", clock=lambda: now[0])
    run.ended()  # nothing failed: nothing to say
    for attempt in range(20):
        now[0] += 0.5
        run.failed("it failed (%s)", f"error {attempt}")
    assert run.failing
    run.ended()
    run.ended()
    said = _lines(caplog, __name__, logging.INFO)
    assert said == [
        "the thing: it failed (error 0); retrying (each failure until it works at debug)",
        "the thing works again after 9.5s (20 failed attempts)",
    ]
    assert len(_lines(caplog, __name__, logging.DEBUG)) == 19
    run.failed("again")  # a new run is said again
    assert len(_lines(caplog, __name__, logging.INFO)) == 3


async def test_failing_keepalives_are_said_once_and_once_when_they_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon.framework.leases")
    client = _FakeClient(6)
    session = LeaseSession(
        client=client,  # type: ignore[arg-type]
        ttl=6,
        refresh_interval=0.1,
        name="test",
    )
    await session.start()
    try:
        client.leasestub.mode = "fail"
        await asyncio.sleep(1.0)
        failed = client.leasestub.refreshes
        client.leasestub.mode = "ok"
        await asyncio.sleep(0.5)
        assert not session.lost.is_set()
    finally:
        await session.close()
    said = _lines(caplog, "kukeon.framework.leases", logging.INFO)
    assert len(said) == 2, said
    assert said[0].startswith("lease test: keepalive: failed: ConnectionError")
    assert said[1].startswith("lease test: keepalive works again after")
    assert failed >= 5  # the attempts between were said at debug only
    assert len(_lines(caplog, "kukeon.framework.leases", logging.DEBUG)) >= 4


async def test_a_heartbeat_that_cannot_register_says_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon.framework.heartbeats")
    client, attempts = _refusing_client()
    heartbeat = Heartbeat(
        client=client, prefix="/test", node_name="n1", ttl=1, refresh_interval=0.01
    )
    running = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0.6)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert len(attempts) >= 5
    said = _lines(caplog, "kukeon.framework.heartbeats", logging.INFO)
    assert said == [
        "heartbeat n1: registering: cannot register (ConnectionError('connection refused')); "
        "retrying (each failure until it works at debug)"
    ]


async def test_a_heartbeat_whose_key_etcd_refuses_says_it_once_and_once_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its key's watch breaks and the claim fails at every attempt (etcd refusing
    connections): one line when it begins, one when a claim works again."""
    caplog.set_level(logging.DEBUG, logger="kukeon.framework.heartbeats")
    refusing = asyncio.Event()
    refusing.set()
    claims = 0

    async def key_events(
        *_: Any, created: Callable[[], None], **__: Any
    ) -> AsyncGenerator[Any, None]:
        if refusing.is_set():
            raise _WatchBroken("the watch stream closed")
        created()
        await asyncio.Event().wait()  # etcd back: a quiet watch
        yield

    async def claim(*_: Any) -> tuple[int, Claimed]:
        nonlocal claims
        claims += 1
        if refusing.is_set():
            raise ConnectionError("connection refused")
        return 7, "held"

    monkeypatch.setattr(heartbeats, "_key_events", key_events)
    heartbeat = Heartbeat(
        client=cast(EtcdClient, None), prefix="/test", node_name="n1", ttl=5, refresh_interval=1
    )
    monkeypatch.setattr(heartbeat, "_claim", claim)
    session = cast(LeaseSession, SimpleNamespace(lease_id=1))
    keeping = asyncio.create_task(heartbeat._keep(session, b"v", after=1))
    await asyncio.sleep(1.0)
    refusing.clear()
    await asyncio.sleep(1.2)
    keeping.cancel()
    await asyncio.gather(keeping, return_exceptions=True)
    assert claims >= 5
    said = _lines(caplog, "kukeon.framework.heartbeats", logging.INFO)
    assert len(said) == 2, said
    assert said[0] == (
        "heartbeat n1: keeping its key: its key's watch broke (the watch stream closed); "
        "retrying (each failure until it works at debug)"
    )
    assert said[1].startswith("heartbeat n1: keeping its key works again after")


async def test_an_election_that_cannot_get_a_lease_says_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kukeon.framework.leases")
    client, attempts = _refusing_client()
    election = LeaderElection(
        client=client,
        prefix="/test",
        name="scheduler",
        node_name="n1",
        ttl=1,
        refresh_interval=0.01,
        poll_interval=0.01,
    )

    async def lead() -> None:
        raise AssertionError("no lease, no lead")

    running = asyncio.create_task(election.run(lead))
    await asyncio.sleep(0.6)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert len(attempts) >= 5
    said = _lines(caplog, "kukeon.framework.leases", logging.INFO)
    assert said == [
        "election scheduler: campaigning: cannot get a lease (ConnectionError('connection "
        "refused')); retrying (each failure until it works at debug)"
    ]
