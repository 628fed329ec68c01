"""A heartbeat written again after etcd refused it for space resyncs the controllers.

While etcd is full, every object's pass that writes is refused and retried with its
back-off, which reaches ``retryBackoffMaxSeconds`` (5 min) once etcd was full for a few
minutes: before, a cell whose status could not be written stayed wrong for up to that long
after the operator's compact, defragment and disarm. The heartbeat is the node's first
write to be taken again, so it queues every object at once (``on_store_back``, the
operator's resync). A heartbeat that failed for another reason (etcd out of reach) does
not: the watches' relist takes that case."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import cast

import pytest

from kukeon.daemon import node
from kukeon.daemon.config import DaemonConfig
from kukeon.framework import LeaseSession
from kukeon.store import Registry, SpaceExceeded, Unavailable


async def _run_until(agent: node.NodeAgent, done: asyncio.Event) -> None:
    running = asyncio.create_task(agent._run())
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


@pytest.mark.parametrize(
    ("refusal", "resyncs"),
    [(SpaceExceeded("database space exceeded"), 1), (Unavailable("no leader"), 0)],
    ids=["full", "unavailable"],
)
async def test_the_first_heartbeat_after_a_full_etcd_resyncs_once(
    caplog: pytest.LogCaptureFixture, refusal: Exception, resyncs: int
) -> None:
    caplog.set_level(logging.INFO, logger="kukeon.daemon.node")
    registry = cast(Registry, SimpleNamespace(key_prefix="/kukeon-test"))
    called: list[int] = []
    agent = node.NodeAgent(
        registry=registry,
        config=DaemonConfig(node_name="n-back", node_heartbeat_seconds=0.05),
        containerd=None,
        on_store_back=lambda: called.append(1),
    )
    refused = 2
    beats = 0
    done = asyncio.Event()

    async def new_lease() -> None:  # started on a full etcd: no lease yet
        nonlocal refused
        if refused:
            refused -= 1
            raise refusal
        agent._session = cast(LeaseSession, SimpleNamespace(lost=asyncio.Event()))

    async def beat() -> None:
        nonlocal beats
        beats += 1
        if beats == 3:
            done.set()

    async def keep_key() -> None:  # the key on the lease: nothing to put back
        pass

    agent._new_lease = new_lease  # type: ignore[method-assign]
    agent.keep_key = keep_key  # type: ignore[method-assign]
    agent.beat = beat  # type: ignore[method-assign]
    await _run_until(agent, done)
    assert refused == 0
    assert len(called) == resyncs, "resynced once, at the first heartbeat taken"
    said = [r.getMessage() for r in caplog.records if "etcd takes writes again" in r.getMessage()]
    assert len(said) == resyncs, said
