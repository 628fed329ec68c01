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
  identity, startedAt, ttl). Whatever is listed there is alive (``heartbeats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import grpc
from aetcd import rpc

from kukeon.cancelling import cancel_and_wait
from kukeon.retrying import Backoff, FailureRun
from kukeon.store import EtcdClient

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 5.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class _UnreadableValues:
    """Lease keys whose value is not what a kukeond writes (put by hand or by a tool):
    each version warned of once, not at every read."""

    _KEPT = 256

    def __init__(self) -> None:
        self._said: dict[bytes, int] = {}
        """Key -> the mod revision of its value last warned of."""

    def fields(self, kv: Any, names: tuple[str, ...], what: str) -> dict[str, str] | None:
        """The string fields ``names`` of ``kv``'s JSON value; None (said once per version)
        when it is not such a document."""
        key = bytes(kv.key)
        why = _fields_missing(bytes(kv.value), names)
        if isinstance(why, dict):
            self._said.pop(key, None)
            return why
        revision = int(kv.mod_revision)
        if self._said.get(key) != revision:
            if len(self._said) >= self._KEPT:
                self._said.pop(next(iter(self._said)))
            self._said[key] = revision
            log.warning(
                "the %s %s (revision %d) cannot be read: %s; its holder is taken as unknown "
                "(put by hand or by a tool: a kukeond writes JSON with %s)",
                what,
                key.decode(errors="replace"),
                revision,
                why,
                ", ".join(names),
            )
        return None


def _fields_missing(value: bytes, names: tuple[str, ...]) -> dict[str, str] | str:
    """The string fields ``names`` of the JSON object ``value``, or why not."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError) as error:  # RecursionError: nested past the stack
        return f"not JSON ({error})"
    if not isinstance(data, dict):
        return f"not a JSON object ({type(data).__name__})"
    absent = [name for name in names if not isinstance(data.get(name), str)]
    if absent:
        return f"no string {', '.join(absent)}"
    return {name: data[name] for name in names}


_unreadable = _UnreadableValues()


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
        refreshing = FailureRun(log, f"lease {self.name}: keepalive")
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
                    refreshing.failed("failed: %r", error)
                    continue
                refreshing.ended()
                if ttl <= 0:
                    log.warning("lease %s (%x) expired in etcd", self.name, self.lease_id)
                    return
                self._confirmed_at = sent
        finally:
            self.lost.set()

    async def close(self, *, revoke: bool = True) -> None:
        """Stop the keepalives; ``revoke`` deletes the lease's keys at once (a clean exit)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
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


class _WatchBroken(Exception):  # noqa: N818 (a state: the watch must be replaced)
    """A watch of one key ended without our asking: compacted, cancelled, closed or failed."""


async def _key_events(
    client: EtcdClient, key: bytes, *, after: int, created: Callable[[], None] | None = None
) -> AsyncGenerator[Any, None]:
    """Every etcd event of ``key`` with revision > ``after``, in order; ``created`` is
    called when etcd has created the watch (it answers again, for a loop that said it did not).

    Never ends by itself: ``_WatchBroken`` when the stream stops (etcd compacted ``after``,
    cancelled the watch, the member lost its cluster's leader: the client's ``hasleader``
    metadata, or the connection failed). The caller decides what a break means.
    """
    await client.connect()
    create = rpc.WatchRequest(
        create_request=rpc.WatchCreateRequest(key=key, start_revision=after + 1)
    )
    stop = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        yield create
        await stop.wait()

    call = client.watchstub.Watch(requests(), metadata=client.metadata)
    try:
        async for response in call:
            if response.compact_revision:
                raise _WatchBroken(f"compacted up to revision {response.compact_revision}")
            if response.canceled:
                raise _WatchBroken(f"cancelled by etcd: {response.cancel_reason}")
            if response.created and created is not None:
                created()
            for event in response.events:
                yield event
    except grpc.aio.AioRpcError as error:
        raise _WatchBroken(f"{error.code().name}: {error.details()}") from error
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # our reader is being cancelled, not just the gRPC call
        # grpc.aio cancels the call when the channel closes or is reset.
        raise _WatchBroken("the watch call was cancelled") from None
    finally:
        stop.set()
        call.cancel()
    raise _WatchBroken("etcd closed the watch stream")


async def _claim(client: EtcdClient, key: bytes, value: bytes, lease_id: int) -> tuple[int, int]:
    """Create ``key`` on ``lease_id`` if absent: (the lease holding it now, 0 for none;
    the revision that answer is true at). One Txn: the holder is read in its failure branch."""
    await client.connect()
    request = rpc.TxnRequest(
        compare=[
            rpc.Compare(
                key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
            )
        ],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease_id))],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
    )
    response = await client.kvstub.Txn(request, timeout=_REQUEST_TIMEOUT, metadata=client.metadata)
    revision = int(response.header.revision)
    if response.succeeded:
        return lease_id, revision
    kvs = response.responses[0].response_range.kvs
    return (int(kvs[0].lease) if kvs else 0), revision  # (never absent: one Txn is atomic)


async def _remove_if_on_no_lease(client: EtcdClient, key: bytes) -> bool:
    """Delete ``key`` if it exists on no lease; whether it did (one Txn: a key a contender
    created on its lease meanwhile stays)."""
    await client.connect()
    request = rpc.TxnRequest(
        compare=[
            rpc.Compare(
                key=key, target=rpc.Compare.CREATE, result=rpc.Compare.GREATER, create_revision=0
            ),
            rpc.Compare(key=key, target=rpc.Compare.LEASE, result=rpc.Compare.EQUAL, lease=0),
        ],
        success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
    )
    response = await client.kvstub.Txn(request, timeout=_REQUEST_TIMEOUT, metadata=client.metadata)
    return bool(response.succeeded)


async def _holder(client: EtcdClient, key: bytes) -> tuple[int, int]:
    """The lease holding ``key`` (0: absent) and the revision that read is true at."""
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=key), timeout=_REQUEST_TIMEOUT, metadata=client.metadata
    )
    lease = int(response.kvs[0].lease) if response.kvs else 0
    return lease, int(response.header.revision)


class LeaderInfo(NamedTuple):
    node: str
    identity: str
    acquired_at: str


_WATCH_WORKED_SECONDS = 1.0
"""A key watch open this long before it broke was working: the next opens at once."""

CONFIRM_WITHIN = 1.0
"""A leader whose key watch broke has this long (or less: what its lease is still
trusted) to read the key back as its own; then it steps down. The polling this watch
replaced noticed a lost key within about a second too."""


class LeaderElection:
    """Campaign for ``<prefix>/leases/leader/<name>`` and run ``lead`` while holding it.

    No polling: a follower watches the key for its deletion (etcd's ``waitDeletes``) and
    the leader watches it from the revision it won it at, so no change is missed. ``lead``
    is cancelled (and awaited) as soon as the leader cannot be sure it holds the key: the
    key deleted or put by another holder (a watch event), the lease no longer trusted
    (``LeaseSession.lost``), or the watch broken (compacted, cancelled, connection lost)
    and the key not read back as ours within ``CONFIRM_WITHIN``. A leader that stepped
    down campaigns again on the same lease while it is trusted (a key still on it is won
    back at once); a lost lease starts over with a fresh one. ``run`` cancelled: likewise.
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
        self._retry_interval = poll_interval
        """The pause after a failed campaign step or a broken follower's watch."""
        self.is_leader = False
        self.release_on_exit = True
        """False leaves the lease to expire on exit (what a crash does; tests use it)."""
        self.terms = 0
        """How many times this instance became the leader."""
        self.session: LeaseSession | None = None
        """The lease currently campaigned or led with."""
        self._reading = FailureRun(log, f"election {name}")
        """The leader's watch of its key and the reads that confirm it: a run of failures
        (etcd refusing connections) said when it begins and when it ends."""
        self._campaigning = FailureRun(log, f"election {name}: campaigning")
        """A contender's lease, claims and wait for the key's deletion, the same way."""

    async def leader(self) -> LeaderInfo | None:
        """Who holds the election now (None: nobody). A key on no lease is no contender's
        (the next campaign removes it): None. One on a lease whose value does not say
        who (written by hand or a tool) is held by an unknown holder: every field ''."""
        kv = await _get(self._client, self.key)
        if kv is None or not kv.lease:
            return None
        data = _unreadable.fields(kv, ("node", "identity", "acquiredAt"), "leader key")
        if data is None:
            return LeaderInfo("", "", "")
        return LeaderInfo(data["node"], data["identity"], data["acquiredAt"])

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(self._retry_interval, max(self._ttl, 1))
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
                self._campaigning.failed("cannot get a lease (%r)", error)
                await backoff.sleep()
                continue
            self._campaigning.ended()
            backoff.reset()
            try:
                await self._campaign_and_lead(session, lead)
            finally:
                self.is_leader = False
                await asyncio.shield(session.close(revoke=self.release_on_exit))

    async def _campaign_and_lead(
        self, session: LeaseSession, lead: Callable[[], Awaitable[None]]
    ) -> None:
        """Win the key and lead, again and again, until the session's lease is lost."""
        value = json.dumps(
            {"node": self.node_name, "identity": self.identity, "acquiredAt": _now_iso()}
        ).encode()
        while not session.lost.is_set():
            won_at = await _until_lost(session, self._campaign(session, value))
            if won_at is None or session.lost.is_set():
                return
            await self._lead(session, lead, won_at)

    async def _campaign(self, session: LeaseSession, value: bytes) -> int:
        """The revision at which the key is ours (created on our lease, or still on it)."""
        while True:
            try:
                holder, revision = await _claim(self._client, self.key, value, session.lease_id)
            except Exception as error:
                self._campaigning.failed("campaign step failed (%r)", error)
                await asyncio.sleep(self._retry_interval)
                continue
            self._campaigning.ended()
            if holder == session.lease_id:
                return revision
            if holder == 0 and await self._remove_unleased():
                continue
            if not await self._wait_deleted(after=revision):
                await asyncio.sleep(self._retry_interval)

    async def _remove_unleased(self) -> bool:
        """Remove a leader key on no lease: no contender put it (each puts its key on its
        lease), etcd never expires it, and every contender would wait for its deletion for
        good (etcdctl put without --lease, a tool, a restore). Whether it went."""
        try:
            removed = await _remove_if_on_no_lease(self._client, self.key)
        except Exception as error:
            log.info("election %s: removing a leader key on no lease failed (%r)", self.name, error)
            return False
        if removed:
            log.warning(
                "election %s: removed its leader key %s, which was on no lease (put by hand or "
                "by a tool, not by a contender; it would never expire): campaigning again",
                self.name,
                self.key.decode(errors="replace"),
            )
        return removed

    async def _wait_deleted(self, *, after: int) -> bool:
        """Until the key is deleted after revision ``after``, or put on no lease (True: a
        claim removes that one), or the watch broke."""
        events = _key_events(self._client, self.key, after=after, created=self._campaigning.ended)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.type == rpc.Event.EventType.DELETE or event.kv.lease == 0:
                        return True
        except _WatchBroken as error:
            self._campaigning.failed("the leader key's watch broke (%s)", error)
        return False

    async def _lead(
        self, session: LeaseSession, lead: Callable[[], Awaitable[None]], won_at: int
    ) -> None:
        self.is_leader = True
        self.terms += 1
        log.info("election %s: %s is the leader", self.name, self.identity)
        task = asyncio.ensure_future(lead())
        try:
            reason = await _until_lost(session, self._until_not_ours(session, after=won_at))
        finally:
            self.is_leader = False
            await cancel_and_wait(task)
        log.warning(
            "election %s: %s lost the leadership (%s)",
            self.name,
            self.identity,
            reason or "the lease is no longer trusted",
        )

    async def _until_not_ours(self, session: LeaseSession, *, after: int) -> str:
        """Watch the key from revision ``after`` (when it was ours); return why it may not be."""
        # A watch etcd keeps refusing at once must not turn into a loop of reads: the next
        # one waits (up to CONFIRM_WITHIN, like the polling this replaced); changes in
        # between are not missed, the watch resumes from the read's revision.
        backoff = Backoff(0.05, CONFIRM_WITHIN)
        while True:
            opened = time.monotonic()
            events = _key_events(self._client, self.key, after=after, created=self._reading.ended)
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        if event.type == rpc.Event.EventType.DELETE:
                            return "the leader key was deleted"
                        if event.kv.lease != session.lease_id:
                            return "the leader key was put by another holder"
            except _WatchBroken as error:
                self._reading.failed("the leader key's watch broke (%s)", error)
            confirmed_at = await self._confirm(session)
            if confirmed_at is None:
                return "the leader key could not be read back as ours after its watch broke"
            after = confirmed_at
            if time.monotonic() - opened >= _WATCH_WORKED_SECONDS:
                backoff.reset()
            else:
                await backoff.sleep()

    async def _confirm(self, session: LeaseSession) -> int | None:
        """The revision at which a read found the key on our lease; None: not ours, or no
        answer within ``CONFIRM_WITHIN`` (and while the lease is trusted)."""
        deadline = min(time.monotonic() + CONFIRM_WITHIN, session.trusted_until)
        backoff = Backoff(0.05, 0.25)
        while (budget := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(budget):
                    holder, revision = await _holder(self._client, self.key)
            except Exception as error:
                self._reading.failed("reading the leader key failed (%r)", error)
                await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))
                continue
            self._reading.ended()
            return revision if holder == session.lease_id else None
        return None


T = TypeVar("T")


async def _until_lost(session: LeaseSession, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None as soon as the session's lease is lost (``work`` cancelled)."""
    task = asyncio.ensure_future(work)
    lost = asyncio.ensure_future(session.lost.wait())
    try:
        await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return None
    finally:
        await cancel_and_wait(task, lost)
