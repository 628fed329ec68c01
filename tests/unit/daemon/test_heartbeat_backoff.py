"""The node heartbeat backs off while etcd is away and says so once, with a count.

Before, a lost lease that could not be replaced (etcd down) was retried at once, forever:
thousands of log lines a second. The loop runs here against stand-ins that always fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.daemon import node
from kukeon.daemon.config import DaemonConfig
from kukeon.framework import LeaseSession
from kukeon.store import Registry, Unavailable


def test_the_retry_delay_doubles_up_to_a_cap() -> None:
    delays = [node.heartbeat_retry_delay(failures) for failures in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == node.HEARTBEAT_BACKOFF_MAX
    assert delays == sorted(delays)
    assert node.heartbeat_retry_delay(10_000) == node.HEARTBEAT_BACKOFF_MAX


async def test_a_heartbeat_that_keeps_failing_backs_off_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kukeon.daemon.node")
    registry = cast(Registry, SimpleNamespace(key_prefix="/kukeon-test"))
    agent = node.NodeAgent(
        registry=registry, config=DaemonConfig(node_name="n-backoff"), containerd=None
    )
    attempts = 0

    async def new_lease() -> None:
        nonlocal attempts
        attempts += 1
        raise Unavailable("etcd is unavailable after 0s of retries")

    async def close(**_: Any) -> None:
        return None

    lost = asyncio.Event()
    lost.set()  # the lease is gone and etcd with it
    confirmed_at = time.monotonic() - 30
    agent._session = cast(
        LeaseSession, SimpleNamespace(lost=lost, close=close, confirmed_at=confirmed_at)
    )
    agent._new_lease = new_lease  # type: ignore[method-assign]
    running = asyncio.create_task(agent._run())
    await asyncio.sleep(1.7)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # Attempts at 0, 0.5 and 1.5 s: no hot loop.
    assert 2 <= attempts <= 4, attempts
    failures = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert "1 time(s)" in failures[0].getMessage()
    lost_lines = [r for r in caplog.records if "lease lost" in r.getMessage()]
    assert len(lost_lines) == 1
    # No new lease: the node's silence (what fencing waits for) counts from the lost one's
    # last confirmation, not from nothing.
    assert agent._session is None
    assert agent.silent_for() >= 30


def test_the_leaders_grace_outlasts_a_heartbeats_longest_retry() -> None:
    """The scheduler leader waits this long for a heartbeat it has not heard in its term: a
    live node whose heartbeat backs off tries again within its longest back-off and one
    attempt, so a short lease TTL does not shorten the wait below that."""
    assert node.heartbeat_grace(DaemonConfig(node_name="n")) == 40.0  # the lease TTL
    longest_retry = node.HEARTBEAT_BACKOFF_MAX + node.HEARTBEAT_ATTEMPT_TIMEOUT
    assert node.heartbeat_grace(DaemonConfig(node_name="n", node_lease_ttl=2)) == longest_retry


def test_the_agent_holds_its_lease_while_one_is_taken_and_not_lost() -> None:
    """What the scheduler leader on this node asks before it may judge its own node gone
    (``Heartbeats.holds_own_lease``): none taken yet, or one lost (being replaced), is not
    held."""
    registry = cast(Registry, SimpleNamespace(key_prefix="/kukeon-test"))
    agent = node.NodeAgent(registry=registry, config=DaemonConfig(node_name="n"), containerd=None)
    assert not agent.holds_lease()
    lost = asyncio.Event()
    agent._session = cast(LeaseSession, SimpleNamespace(lost=lost))
    assert agent.holds_lease()
    lost.set()
    assert not agent.holds_lease()
