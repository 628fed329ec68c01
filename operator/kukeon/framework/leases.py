"""Leases in etcd: leader election for singleton work, and heartbeats for peering.

etcd expires a lease ``ttl`` seconds after its last keepalive and deletes every key
attached to it. aetcd sends no keepalives by itself, so ``LeaseSession`` runs its own
refresh task and keeps a conservative view of whether the lease is still ours: it
declares the lease lost as soon as no refresh *sent* in the last ``ttl - margin``
seconds was acknowledged (etcd counts the TTL from when it received the refresh, which is
after we sent it). Loss is therefore noticed before etcd can hand the leadership to
someone else, and singleton handlers are cancelled within the TTL.

Keys (under the registry's prefix, ``/kukeon`` in production):

- ``<prefix>/leases/leader/<name>``: the holder of election ``name`` (JSON: node,
  identity, acquiredAt), created only if absent and attached to the holder's lease;
- ``<prefix>/leases/nodes/<node>``: one heartbeat per running kukeond (JSON: node,
  identity, startedAt, ttl). Whatever is listed there is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aetcd import rpc

from kukeon.retrying import Backoff
from kukeon.store import EtcdClient

from .waits import wait_event

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 5.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class LeaseLost(Exception):  # noqa: N818 (a state, not a failure of ours)
    """The session's lease expired or could not be confirmed in time."""


class LeaseSession:
    """One etcd lease, kept alive by a task of ours until ``close`` or loss.

    ``lost`` is set the moment the lease can no longer be trusted; a session is never
    reused after that: make a new one.
    """

    def __init__(
        self,
        *,
        client: EtcdClient,
        ttl: int,
        refresh_interval: float,
        name: str,
    ) -> None:
        self._client = client
        self.ttl = ttl
        self._refresh_interval = refresh_interval
        self._margin = min(refresh_interval, ttl / 3)
        self.name = name
        self.lease_id = 0
        self.lost = asyncio.Event()
        self._confirmed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def confirmed_at(self) -> float:
        """Monotonic time of the last request etcd confirmed (grant or keepalive) was sent."""
        return self._confirmed_at

    @property
    def trusted_until(self) -> float:
        """Monotonic time after which we must assume the lease may be gone."""
        return self._confirmed_at + self.ttl - self._margin

    async def start(self) -> None:
        await self._client.connect()
        sent = time.monotonic()
        response = await self._client.leasestub.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=self.ttl, ID=0),
            timeout=_REQUEST_TIMEOUT,
            metadata=self._client.metadata,
        )
        if response.error:
            raise LeaseLost(f"lease {self.name}: etcd refused to grant it: {response.error}")
        self.lease_id = response.ID
        self.ttl = max(self.ttl, int(response.TTL))
        self._confirmed_at = sent
        self._task = asyncio.create_task(self._keep_alive(), name=f"kukeon-lease {self.name}")

    async def _refresh_once(self) -> int:
        request = rpc.LeaseKeepAliveRequest(ID=self.lease_id)
        call = self._client.leasestub.LeaseKeepAlive(
            iter([request]), timeout=_REQUEST_TIMEOUT, metadata=self._client.metadata
        )
        try:
            async for reply in call:
                return int(reply.TTL)
        finally:
            call.cancel()
        raise LeaseLost(f"lease {self.name}: keepalive stream closed without an answer")

    async def _keep_alive(self) -> None:
        try:
            while True:
                now = time.monotonic()
                budget = self.trusted_until - now
                if budget <= 0:
                    log.warning(
                        "lease %s (%x) could not be renewed in time", self.name, self.lease_id
                    )
                    return
                await asyncio.sleep(min(self._refresh_interval, budget / 2))
                sent = time.monotonic()
                try:
                    async with asyncio.timeout(max(0.05, self.trusted_until - sent)):
                        ttl = await self._refresh_once()
                except Exception as error:
                    log.info("lease %s: keepalive failed: %r", self.name, error)
                    continue
                if ttl <= 0:
                    log.warning("lease %s (%x) expired in etcd", self.name, self.lease_id)
                    return
                self._confirmed_at = sent
        finally:
            self.lost.set()

    async def close(self, *, revoke: bool = True) -> None:
        """Stop the keepalives; ``revoke`` deletes the lease's keys at once (a clean exit)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.lost.set()
        if revoke and self.lease_id:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_REQUEST_TIMEOUT):
                    await self._client.leasestub.LeaseRevoke(
                        rpc.LeaseRevokeRequest(ID=self.lease_id),
                        timeout=_REQUEST_TIMEOUT,
                        metadata=self._client.metadata,
                    )


async def _get(client: EtcdClient, key: bytes) -> Any | None:
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=key), timeout=_REQUEST_TIMEOUT, metadata=client.metadata
    )
    return response.kvs[0] if response.kvs else None


async def _put(client: EtcdClient, key: bytes, value: bytes, lease_id: int) -> None:
    await client.connect()
    await client.kvstub.Put(
        rpc.PutRequest(key=key, value=value, lease=lease_id),
        timeout=_REQUEST_TIMEOUT,
        metadata=client.metadata,
    )


async def _create_if_absent(client: EtcdClient, key: bytes, value: bytes, lease_id: int) -> bool:
    await client.connect()
    request = rpc.TxnRequest(
        compare=[
            rpc.Compare(
                key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
            )
        ],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease_id))],
        failure=[],
    )
    response = await client.kvstub.Txn(request, timeout=_REQUEST_TIMEOUT, metadata=client.metadata)
    return bool(response.succeeded)


class LeaderInfo(NamedTuple):
    node: str
    identity: str
    acquired_at: str


class LeaderElection:
    """Campaign for ``<prefix>/leases/leader/<name>`` and run ``lead`` while holding it.

    ``lead`` is cancelled (and awaited) as soon as the lease is lost or ``run`` is
    cancelled; then the election starts over with a fresh lease.
    """

    def __init__(
        self,
        *,
        client: EtcdClient,
        prefix: str,
        name: str,
        node_name: str,
        ttl: int,
        refresh_interval: float,
        poll_interval: float,
    ) -> None:
        self._client = client
        self.name = name
        self.key = f"{prefix.rstrip('/')}/leases/leader/{name}".encode()
        self.node_name = node_name
        self.identity = f"{node_name}/{uuid.uuid4().hex[:12]}"
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._poll_interval = poll_interval
        self.is_leader = False
        self.release_on_exit = True
        """False leaves the lease to expire on exit (what a crash does; tests use it)."""
        self.terms = 0
        """How many times this instance became the leader."""
        self.session: LeaseSession | None = None
        """The lease currently campaigned or led with."""

    async def leader(self) -> LeaderInfo | None:
        """Who holds the election now (None: nobody)."""
        kv = await _get(self._client, self.key)
        if kv is None:
            return None
        data = json.loads(kv.value)
        return LeaderInfo(data["node"], data["identity"], data["acquiredAt"])

    async def _holds(self, session: LeaseSession) -> bool:
        kv = await _get(self._client, self.key)
        return kv is not None and kv.lease == session.lease_id

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(self._poll_interval, max(self._ttl, 1))
        while True:
            session = LeaseSession(
                client=self._client,
                ttl=self._ttl,
                refresh_interval=self._refresh_interval,
                name=f"leader/{self.name}",
            )
            self.session = session
            try:
                await session.start()
            except Exception as error:
                log.info("election %s: cannot get a lease (%r); retrying", self.name, error)
                await backoff.sleep()
                continue
            backoff.reset()
            try:
                await self._campaign_and_lead(session, lead)
            finally:
                self.is_leader = False
                await asyncio.shield(session.close(revoke=self.release_on_exit))

    async def _campaign_and_lead(
        self, session: LeaseSession, lead: Callable[[], Awaitable[None]]
    ) -> None:
        value = json.dumps(
            {"node": self.node_name, "identity": self.identity, "acquiredAt": _now_iso()}
        ).encode()
        while not session.lost.is_set():
            try:
                won = await self._holds(session)
                if not won and await _get(self._client, self.key) is None:
                    won = await _create_if_absent(self._client, self.key, value, session.lease_id)
            except Exception as error:
                log.info("election %s: campaign step failed (%r)", self.name, error)
                won = False
            if won:
                await self._lead(session, lead)
                return
            await wait_event(session.lost, self._poll_interval)

    async def _lead(self, session: LeaseSession, lead: Callable[[], Awaitable[None]]) -> None:
        self.is_leader = True
        self.terms += 1
        log.info("election %s: %s is the leader", self.name, self.identity)
        task = asyncio.ensure_future(lead())
        try:
            while not session.lost.is_set():
                if await wait_event(session.lost, self._poll_interval):
                    break
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._poll_interval):
                        holds = await self._holds(session)
                    if not holds:
                        log.warning("election %s: the leader key is no longer ours", self.name)
                        break
            log.warning("election %s: %s lost the leadership", self.name, self.identity)
        finally:
            self.is_leader = False
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class Peer(NamedTuple):
    node: str
    identity: str
    started_at: str


class Heartbeat:
    """Keeps ``<prefix>/leases/nodes/<node>`` alive while this operator runs."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        prefix: str,
        node_name: str,
        ttl: int,
        refresh_interval: float,
        host: str = "",
    ) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/")
        self.node_name = node_name
        self.host = host
        self.identity = f"{node_name}/{uuid.uuid4().hex[:12]}"
        self.key = f"{self._prefix}/leases/nodes/{node_name}".encode()
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._started_at = _now_iso()
        self.alive = asyncio.Event()
        self.release_on_exit = True

    async def run(self) -> None:
        backoff = Backoff(self._refresh_interval, max(self._ttl, 1))
        value = json.dumps(
            {
                "node": self.node_name,
                "identity": self.identity,
                "host": self.host,
                "startedAt": self._started_at,
                "ttl": self._ttl,
            }
        ).encode()
        while True:
            session = LeaseSession(
                client=self._client,
                ttl=self._ttl,
                refresh_interval=self._refresh_interval,
                name=f"node/{self.node_name}",
            )
            try:
                await session.start()
                await _put(self._client, self.key, value, session.lease_id)
            except Exception as error:
                log.info("heartbeat %s: cannot register (%r); retrying", self.node_name, error)
                await asyncio.shield(session.close(revoke=True))
                await backoff.sleep()
                continue
            backoff.reset()
            self.alive.set()
            try:
                await session.lost.wait()
                log.warning("heartbeat %s: lease lost, registering again", self.node_name)
            finally:
                self.alive.clear()
                await asyncio.shield(session.close(revoke=self.release_on_exit))


async def heartbeat_of(client: EtcdClient, prefix: str, node_name: str) -> dict[str, Any] | None:
    """What the live heartbeat of ``node_name`` says (None: no process holds the name)."""
    key = f"{prefix.rstrip('/')}/leases/nodes/{node_name}".encode()
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=key), timeout=_REQUEST_TIMEOUT, metadata=client.metadata
    )
    if not response.kvs:
        return None
    try:
        found = json.loads(response.kvs[0].value)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


async def alive_peers(client: EtcdClient, prefix: str) -> list[Peer]:
    """Every kukeond whose heartbeat lease is alive, by node name."""
    start = f"{prefix.rstrip('/')}/leases/nodes/".encode()
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=start, range_end=_range_end(start)),
        timeout=_REQUEST_TIMEOUT,
        metadata=client.metadata,
    )
    peers = []
    for kv in response.kvs:
        data = json.loads(kv.value)
        peers.append(Peer(data["node"], data["identity"], data["startedAt"]))
    return sorted(peers)
