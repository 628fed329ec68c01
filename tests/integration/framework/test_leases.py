"""Leader election for singleton work and node heartbeats, with two operators on one etcd."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial

import pytest
from aetcd import rpc
from prometheus_client import CollectorRegistry

from kukeon.framework import Operator, OperatorContext, OperatorRunner
from kukeon.framework.leases import CONFIRM_WITHIN, LeaderElection
from kukeon.store import EtcdClient, Registry
from tests.fixtures.etcd import EtcdServer, running_etcd_server

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


# The leader election's watches: no polling, and a leader steps down as soon as it cannot
# be sure it holds its key. A retry interval of a minute shows nothing below is polling.
NO_POLLING = 60.0


class _Contender:
    """One ``LeaderElection`` run as a task, with when its ``lead`` started and stopped."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        node: str,
        *,
        log: Journal,
        ttl: int = TTL,
        retry: float = NO_POLLING,
    ) -> None:
        self.node = node
        self.election = LeaderElection(
            client=client,
            prefix=prefix,
            name="scheduler",
            node_name=node,
            ttl=ttl,
            refresh_interval=ttl / 3,
            poll_interval=retry,
        )
        self.journal = log
        self._task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.journal.append((self.node, "started", time.monotonic()))
        try:
            await asyncio.Event().wait()
        finally:
            self.journal.append((self.node, "stopped", time.monotonic()))

    def start(self) -> _Contender:
        self._task = asyncio.create_task(self.election.run(self._lead))
        return self

    async def stop(self, *, crash: bool = False) -> None:
        """Cancel the campaign; ``crash`` leaves the lease to expire instead of revoking it."""
        self.election.release_on_exit = not crash
        if self._task is not None:
            self._task.cancel()
            # (Not suppress(CancelledError) around an await: that would swallow a
            # cancellation of this test too. A campaign deaf to its own fails here.)
            done, _ = await asyncio.wait([self._task], timeout=15)
            assert done, f"{self.node}: the campaign went on after it was cancelled"
            assert self._task.cancelled(), self._task.exception()


Journal = list[tuple[str, str, float]]


def _events(journal: Journal, node: str, what: str) -> list[float]:
    return [at for who, event, at in journal if who == node and event == what]


@contextlib.asynccontextmanager
async def _contenders(
    registries: list[Registry], *, ttl: int = TTL, retry: float = NO_POLLING
) -> AsyncIterator[tuple[list[_Contender], Journal]]:
    journal: Journal = []
    prefix = registries[0].key_prefix
    started = [
        _Contender(r.client, prefix, f"n{i}", log=journal, ttl=ttl, retry=retry).start()
        for i, r in enumerate(registries)
    ]
    try:
        yield started, journal
    finally:
        for contender in started:
            await contender.stop()


async def _wait_for(condition: Callable[[], bool], within: float) -> None:
    await OperatorRunner.wait_for(condition, within=within)


async def _put_on_another_lease(registry: Registry, key: bytes) -> int:
    """Someone else takes ``key``: put on a lease of its own (returned, to revoke)."""
    client = registry.client
    lease = await client.leasestub.LeaseGrant(
        rpc.LeaseGrantRequest(TTL=30), metadata=client.metadata
    )
    await client.kvstub.Put(
        rpc.PutRequest(key=key, value=b'{"node": "other"}', lease=lease.ID),
        metadata=client.metadata,
    )
    return int(lease.ID)


async def _revoke(registry: Registry, lease_id: int) -> None:
    client = registry.client
    await client.leasestub.LeaseRevoke(
        rpc.LeaseRevokeRequest(ID=lease_id), metadata=client.metadata
    )


async def test_a_leader_whose_key_is_deleted_steps_down_at_once(registry: Registry) -> None:
    async with _contenders([registry]) as ((leader,), journal):
        await _wait_for(lambda: leader.election.is_leader, within=5)
        client = registry.client
        deleted_at = time.monotonic()
        await client.kvstub.DeleteRange(
            rpc.DeleteRangeRequest(key=leader.election.key), metadata=client.metadata
        )
        await _wait_for(lambda: bool(_events(journal, "n0", "stopped")), within=2)
        assert _events(journal, "n0", "stopped")[0] - deleted_at < 1.0
        # Its lease is still good: it takes the free key again, a second term.
        await _wait_for(lambda: leader.election.terms == 2, within=2)


async def test_a_leader_whose_key_another_holder_put_steps_down(registry: Registry) -> None:
    async with _contenders([registry]) as ((leader,), journal):
        await _wait_for(lambda: leader.election.is_leader, within=5)
        taken_at = time.monotonic()
        other = await _put_on_another_lease(registry, leader.election.key)
        try:
            await _wait_for(lambda: bool(_events(journal, "n0", "stopped")), within=2)
            assert _events(journal, "n0", "stopped")[0] - taken_at < 1.0
            await asyncio.sleep(0.5)
            assert not leader.election.is_leader
            assert leader.election.terms == 1
        finally:
            await _revoke(registry, other)
        # The other holder's key deleted with its lease: the follower's watch sees it.
        freed_at = time.monotonic()
        await _wait_for(lambda: leader.election.terms == 2, within=2)
        assert _events(journal, "n0", "started")[1] - freed_at < 1.0


@pytest.fixture
def private_etcd() -> Iterator[EtcdServer]:
    """An etcd of this test's own: it is compacted, restarted or counted."""
    with running_etcd_server() as server:
        yield server


@contextlib.asynccontextmanager
async def _connected(server: EtcdServer) -> AsyncIterator[Registry]:
    connected = await Registry.connect(server.config(key_prefix="/kukeon-leases"))
    try:
        yield connected
    finally:
        await connected.close()


async def test_a_broken_watch_is_confirmed_by_a_read_or_the_leader_steps_down(
    private_etcd: EtcdServer,
) -> None:
    async with _connected(private_etcd) as registry, _contenders([registry]) as ((leader,), _):
        await _wait_for(lambda: leader.election.is_leader, within=5)
        election, session = leader.election, leader.election.session
        assert session is not None
        client = registry.client
        for _ in range(3):  # history to compact past
            put = await client.kvstub.Put(
                rpc.PutRequest(key=b"/kukeon-leases/other", value=b"x"), metadata=client.metadata
            )
        await client.kvstub.Compact(
            rpc.CompactionRequest(revision=put.header.revision), metadata=client.metadata
        )
        # A watch from a compacted revision breaks at once: the key read back as ours, it
        # goes on watching from that read...
        watching = asyncio.ensure_future(election._until_not_ours(session, after=1))
        await asyncio.sleep(0.5)
        assert not watching.done()
        await client.kvstub.DeleteRange(
            rpc.DeleteRangeRequest(key=election.key), metadata=client.metadata
        )
        assert await asyncio.wait_for(watching, 1.0) == "the leader key was deleted"
        # ... and with the key on another lease, the read does not confirm it: step down.
        other = await _put_on_another_lease(registry, election.key)
        try:
            reason = await asyncio.wait_for(election._until_not_ours(session, after=1), 1.0)
        finally:
            await _revoke(registry, other)
        assert "could not be read back" in reason


async def test_a_leader_steps_down_when_etcd_stops_and_leads_again_after(
    private_etcd: EtcdServer,
) -> None:
    # A TTL long enough for the lease to outlive the outage: the key is won back on it.
    # (Campaign steps fail while etcd is away: they are retried every 0.2 s.)
    async with (
        _connected(private_etcd) as registry,
        _contenders([registry], ttl=8, retry=0.2) as (
            (leader,),
            journal,
        ),
    ):
        await _wait_for(lambda: leader.election.is_leader, within=5)
        stopped_at = time.monotonic()
        await asyncio.to_thread(private_etcd.member.kill)  # (blocking: not on the loop)
        try:
            await _wait_for(lambda: bool(_events(journal, "n0", "stopped")), within=3)
            # The watch broke with the connection and no read answered: down within
            # CONFIRM_WITHIN (and a little scheduling), not after the lease's TTL.
            assert _events(journal, "n0", "stopped")[0] - stopped_at < CONFIRM_WITHIN + 0.5
            assert not leader.election.is_leader
        finally:
            private_etcd.member.spawn()
            await asyncio.to_thread(private_etcd.member.wait_healthy)
        await _wait_for(lambda: leader.election.terms == 2, within=10)


async def test_two_contenders_never_lead_at_once_across_handovers(
    registry: Registry, second_registry: Registry
) -> None:
    journal: Journal = []
    prefix = registry.key_prefix
    clients = {"a": registry.client, "b": second_registry.client}
    running = {name: _Contender(c, prefix, name, log=journal) for name, c in clients.items()}
    for contender in running.values():
        contender.start()
    try:
        for handover in range(6):
            await _wait_for(lambda: any(c.election.is_leader for c in running.values()), 5)
            (leader,) = [name for name, c in running.items() if c.election.is_leader]
            successor = running[_other(leader)].election
            terms = successor.terms  # (before the stop: a revoked key is taken at once)
            # Alternately a clean stop (the lease revoked) and a crash (left to expire).
            await running[leader].stop(crash=handover % 2 == 1)
            await _wait_for(partial(_leads_anew, successor, terms), TTL + 3)
            running[leader] = _Contender(clients[leader], prefix, leader, log=journal).start()
    finally:
        for contender in running.values():
            await contender.stop()
    led = _lead_terms(journal)
    assert len(led) >= 7
    for (first, _, ended), (second, next_begun, _) in itertools.pairwise(led):
        assert ended <= next_begun, (first, second, ended, next_begun)


def _leads_anew(election: LeaderElection, terms: int) -> bool:
    return election.terms > terms


def _lead_terms(journal: Journal) -> list[tuple[str, float, float]]:
    """Each ``lead`` run as (node, started, stopped), by start."""
    starts = sorted((at, who) for who, event, at in journal if event == "started")
    terms = []
    for at, who in starts:
        stop = min(s for s in _events(journal, who, "stopped") if s >= at)
        terms.append((who, at, stop))
    return terms


_RANGES = re.compile(r'^grpc_server_handled_total\{[^}]*grpc_method="Range"[^}]*\} (\S+)$', re.M)


def _ranges_served(server: EtcdServer) -> float:
    """Range requests etcd has served so far (its /metrics, every code)."""
    pki = server.pki
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(pki.client_cert_file), str(pki.client_key_file))
    with urllib.request.urlopen(f"{server.endpoint}/metrics", context=context, timeout=10) as reply:
        body = reply.read().decode()
    return sum(float(value) for value in _RANGES.findall(body))


async def test_an_idle_leader_and_follower_read_nothing(private_etcd: EtcdServer) -> None:
    async with (
        _connected(private_etcd) as first,
        _connected(private_etcd) as second,
        _contenders([first, second]) as (contenders, _),
    ):
        await _wait_for(lambda: any(c.election.is_leader for c in contenders), within=5)
        await asyncio.sleep(0.5)  # the follower's claim answered, its watch open
        before = await asyncio.to_thread(_ranges_served, private_etcd)
        await asyncio.sleep(3.0)
        after = await asyncio.to_thread(_ranges_served, private_etcd)
        assert after - before == 0
        assert sum(c.election.is_leader for c in contenders) == 1


async def test_a_leader_key_on_no_lease_is_removed_and_the_election_goes_on(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """A leader key put without a lease (by hand with etcdctl, a tool, a restore) is on no
    election's lease: etcd never expires it, and every contender waited for its deletion
    for good, so nothing the singleton does was done again and nothing said why. The
    contenders remove it (only while it is on no lease) and one leads again."""
    async with _contenders([registry]) as ((leader,), journal):
        await _wait_for(lambda: leader.election.is_leader, within=5)
        client = registry.client
        with caplog.at_level(logging.WARNING, logger="kukeon.framework.leases"):
            await client.kvstub.Put(
                rpc.PutRequest(key=leader.election.key, value=b"garbage{"),
                metadata=client.metadata,
            )
            await _wait_for(lambda: bool(_events(journal, "n0", "stopped")), within=2)
            await _wait_for(lambda: leader.election.terms == 2, within=5)
        said = [r.getMessage() for r in caplog.records if "which was on no lease" in r.getMessage()]
        assert len(said) == 1, said
        assert leader.election.name in said[0]


async def test_a_leader_key_put_on_no_lease_over_a_holder_wakes_the_followers(
    registry: Registry,
) -> None:
    """The same key put on no lease over another holder's (its lease then ends without
    deleting it): a follower waiting for its deletion takes it."""
    other = await _put_on_another_lease(registry, b"placeholder")  # a lease to hold the key
    async with _contenders([registry]) as ((follower,), _journal):
        client = registry.client
        try:
            await client.kvstub.Put(
                rpc.PutRequest(key=follower.election.key, value=b'{"node": "x"}', lease=other),
                metadata=client.metadata,
            )
            await asyncio.sleep(1)
            assert not follower.election.is_leader
            await client.kvstub.Put(
                rpc.PutRequest(key=follower.election.key, value=b"garbage{"),
                metadata=client.metadata,
            )
            await _wait_for(lambda: follower.election.is_leader, within=5)
        finally:
            await _revoke(registry, other)


async def _on_a_lease(registry: Registry, key: str, value: bytes, ttl: int = 60) -> int:
    """``value`` put under ``key`` on a fresh lease of the test's, as ``etcdctl put
    --lease`` would; the lease's id."""
    client = registry.client
    granted = await client.leasestub.LeaseGrant(
        rpc.LeaseGrantRequest(TTL=ttl, ID=0), metadata=client.metadata
    )
    await client.kvstub.Put(
        rpc.PutRequest(key=key.encode(), value=value, lease=granted.ID), metadata=client.metadata
    )
    return int(granted.ID)


NESTED_PAST_THE_STACK = b"[" * 5000 + b"]" * 5000
"""JSON Python's json cannot read: nested past its stack (a RecursionError, no ValueError)."""


@pytest.mark.parametrize(
    ("heartbeat", "leader_value"),
    [(b"garbage{", b"\xff not json"), (NESTED_PAST_THE_STACK, NESTED_PAST_THE_STACK)],
    ids=["garbage", "nested"],
)
async def test_garbage_in_heartbeat_and_leader_keys_is_an_unknown_holder_said_once(
    registry: Registry,
    second_registry: Registry,
    caplog: pytest.LogCaptureFixture,
    heartbeat: bytes,
    leader_value: bytes,
) -> None:
    """A heartbeat or leader key whose value is not JSON (put by hand, on a lease) raised
    a JSONDecodeError out of Operator.peers() and leader() at every call (JSON nested past
    Python's stack a RecursionError, after that was fixed). Now: a peer named by its key
    and a leader of unknown identity, one warning per bad version, the operator running
    on, and back to normal once the value is fixed or its lease ends."""
    prefix = registry.key_prefix
    ghost = f"{prefix}/leases/nodes/ghost"
    leader_key = f"{prefix}/leases/leader/scheduler"
    ghost_lease = await _on_a_lease(second_registry, ghost, heartbeat)
    held = await _on_a_lease(second_registry, leader_key, leader_value)
    runs: list[tuple[str, float]] = []
    op = _singleton_operator(registry, "alpha", runs)
    caplog.set_level(logging.WARNING, logger="kukeon.framework.leases")
    try:
        async with OperatorRunner(op) as runner:

            async def listed() -> bool:
                return [p.node for p in await op.peers()] == ["alpha", "ghost"]

            await runner.wait_for(listed, within=10)
            for _ in range(5):
                peers = {p.node: p for p in await op.peers()}
                assert peers["ghost"].identity == ""
                assert peers["alpha"].identity.startswith("alpha/")
                assert await op.leader("scheduler") == ("", "", "")
            assert op.ready()
            assert not op.is_leader("scheduler")
            assert runs == []
            said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
            assert len(said) == 2, said
            assert any(ghost in m and "not JSON" in m for m in said), said
            assert any(leader_key in m for m in said), said
            assert all(r.exc_info is None for r in caplog.records)

            # Fixed: the heartbeat's value written right, the leader key's lease ended.
            fixed = json.dumps({"node": "ghost", "identity": "ghost/1", "startedAt": "t"})
            client = second_registry.client
            await client.kvstub.Put(
                rpc.PutRequest(key=ghost.encode(), value=fixed.encode(), lease=ghost_lease),
                metadata=client.metadata,
            )
            await client.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=held), metadata=client.metadata
            )
            await runner.wait_for(lambda: op.is_leader("scheduler"), within=10)
            holder = await op.leader("scheduler")
            assert holder is not None
            assert holder.node == "alpha"
            peers = {p.node: p for p in await op.peers()}
            assert peers["ghost"] == ("ghost", "ghost/1", "t")
            # A key put on no lease is nobody's: neither a peer nor a leader.
            await client.kvstub.Put(
                rpc.PutRequest(key=f"{prefix}/leases/nodes/stale".encode(), value=b"{"),
                metadata=client.metadata,
            )
            assert [p.node for p in await op.peers()] == ["alpha", "ghost"]
        said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(said) == 2, said
    finally:
        await second_registry.client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=ghost_lease), metadata=second_registry.client.metadata
        )
