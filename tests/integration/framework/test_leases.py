"""Leader election for singleton work and node heartbeats, with two operators on one etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aetcd import rpc
from prometheus_client import CollectorRegistry

from kukeon.framework import Operator, OperatorContext, OperatorRunner
from kukeon.store import Registry
from tests.fixtures.etcd import EtcdServer

from .helpers import fast_settings

pytestmark = pytest.mark.integration

TTL = 2


@pytest.fixture
async def second_registry(
    etcd_server: EtcdServer, etcd_key_prefix: str, registry: Registry
) -> AsyncIterator[Registry]:
    """Another connection to the same keys, as a second kukeond would have."""
    connected = await Registry.connect(etcd_server.config(key_prefix=etcd_key_prefix))
    try:
        yield connected
    finally:
        await connected.close()


def _singleton_operator(registry: Registry, node: str, runs: list[tuple[str, float]]) -> Operator:
    op = Operator(
        registry,
        settings=fast_settings(node_name=node, lease_ttl=TTL),
        collector_registry=CollectorRegistry(),
    )

    @op.singleton("scheduler", interval=0.05)
    async def schedule(ctx: OperatorContext) -> None:
        runs.append((ctx.node_name, time.monotonic()))

    return op


def _other(name: str) -> str:
    return "b" if name == "a" else "a"


@pytest.mark.parametrize("crash", [False, True], ids=["graceful-stop", "crash"])
async def test_exactly_one_runs_the_singleton_and_the_other_takes_over(
    registry: Registry, second_registry: Registry, crash: bool
) -> None:
    runs: list[tuple[str, float]] = []
    operators = {
        "a": _singleton_operator(registry, "a", runs),
        "b": _singleton_operator(second_registry, "b", runs),
    }
    runners = {name: OperatorRunner(op, release_leases=not crash) for name, op in operators.items()}
    async with runners["a"], runners["b"]:
        await OperatorRunner.wait_for(lambda: len(runs) >= 5, within=10)
        await asyncio.sleep(1.0)
        leaders = {node for node, _ in runs}
        assert len(leaders) == 1, leaders
        (leader,) = leaders
        follower = _other(leader)
        assert operators[leader].is_leader("scheduler")
        assert not operators[follower].is_leader("scheduler")
        holder = await operators[follower].leader("scheduler")
        assert holder is not None
        assert holder.node == leader

        stopping_at = time.monotonic()
        await runners[leader].stop()
        stopped_at = time.monotonic()
        await OperatorRunner.wait_for(
            lambda: any(node == follower for node, _ in runs), within=TTL + 5
        )
        took_over_at = min(at for node, at in runs if node == follower)
        assert took_over_at - stopping_at <= TTL + 1, took_over_at - stopping_at
        # The stopped leader ran nothing after it stopped.
        assert all(at <= stopped_at for node, at in runs if node == leader)


async def test_a_lost_lease_stops_the_singleton_within_the_ttl(registry: Registry) -> None:
    op = Operator(
        registry,
        settings=fast_settings(node_name="a", lease_ttl=TTL),
        collector_registry=CollectorRegistry(),
    )
    journal: list[tuple[str, float]] = []

    @op.singleton("scheduler")
    async def schedule(ctx: OperatorContext) -> None:
        journal.append(("started", time.monotonic()))
        try:
            await asyncio.Event().wait()
        finally:
            journal.append(("stopped", time.monotonic()))

    async with OperatorRunner(op):
        await OperatorRunner.wait_for(lambda: len(journal) == 1, within=10)
        election = op._elections["scheduler"]
        assert election.session is not None
        # Someone revokes our lease behind our back (as etcd does when it expires).
        await registry.client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=election.session.lease_id),
            metadata=registry.client.metadata,
        )
        revoked_at = time.monotonic()
        await OperatorRunner.wait_for(lambda: len(journal) >= 2, within=TTL)
        assert journal[1][0] == "stopped"
        assert journal[1][1] - revoked_at <= TTL
        # A fresh lease, a new campaign, and it leads again.
        await OperatorRunner.wait_for(lambda: op.leadership_terms("scheduler") == 2, within=10)
        await OperatorRunner.wait_for(lambda: len(journal) == 3, within=10)
        assert journal[2][0] == "started"
    assert [event for event, _ in journal] == ["started", "stopped", "started", "stopped"]


async def test_heartbeats_list_the_live_nodes(
    registry: Registry, second_registry: Registry
) -> None:
    first = Operator(
        registry, settings=fast_settings(node_name="alpha"), collector_registry=CollectorRegistry()
    )
    second = Operator(
        second_registry,
        settings=fast_settings(node_name="beta"),
        collector_registry=CollectorRegistry(),
    )
    async with OperatorRunner(first), OperatorRunner(second) as runner:

        async def both() -> bool:
            return [p.node for p in await first.peers()] == ["alpha", "beta"]

        await runner.wait_for(both, within=10)
        await runner.stop()
        assert [p.node for p in await first.peers()] == ["alpha"]
