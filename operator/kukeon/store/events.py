"""Events in etcd: one JSON document per Event, each attached to a lease so it expires.

```
<prefix>/events/<realm>/<event name>
```

Events are notes, not resources: they are not in the registry's kind table (no parent,
no finalizer, no CAS by the user), only kukeond writes them, and etcd deletes them by
itself when their lease ends. As kube-apiserver does, one lease is shared by the Events
written within a short window (5 % of the TTL, at most a minute), granted that much
longer, so an Event lives between ``ttl`` and ``ttl * 1.05`` seconds after its last
write and etcd does not hold one lease per Event.

A repeat of an Event (same object, reason and message; the name says so) bumps its
``count`` and ``lastTimestamp`` by compare-and-swap on the revision the writer last saw
(``record``), which also renews its lease; an Event whose lease has ended starts again
at 1, as in Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal, NamedTuple

from aetcd import rpc
from pydantic import ValidationError

from kukeon.api import Event

from .connection import EtcdClient, EtcdConfig, Retrier
from .errors import StoreError
from .etcdwatch import resumable_watch
from .keys import range_end

log = logging.getLogger(__name__)

DEFAULT_EVENT_TTL_SECONDS = 3600
LEASE_REUSE_FRACTION = 0.05
LEASE_REUSE_MAX_SECONDS = 60
_WRITE_RETRY_SECONDS = 5.0
_CAS_ROUNDS = 5
_LIST_PAGE = 500


class EventChange(NamedTuple):
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    event: Event
    revision: int


class EventList(NamedTuple):
    items: list[Event]
    resource_version: int


def _decode(value: bytes, revision: int) -> Event | None:
    try:
        event = Event.model_validate(json.loads(value))
    except (ValueError, ValidationError, RecursionError):  # RecursionError: nested too deep
        return None  # not ours to judge: an Event that does not read is not shown
    event.metadata.resource_version = str(revision)
    return event


def _encode(event: Event) -> bytes:
    document = event.document()
    document["metadata"].pop("resourceVersion", None)
    return json.dumps(document, separators=(",", ":")).encode()


class EventStore:
    """Writes, lists and watches the Events under one key prefix."""

    def __init__(
        self, *, client: EtcdClient, config: EtcdConfig, ttl: int = DEFAULT_EVENT_TTL_SECONDS
    ) -> None:
        if ttl < 1:
            raise ValueError("an Event's TTL is at least one second")
        self._client = client
        self._config = config
        self.ttl = ttl
        self.root = f"{config.key_prefix.rstrip('/')}/events/"
        self._retrier = Retrier(
            client=client, retry_timeout=min(config.retry_timeout, _WRITE_RETRY_SECONDS)
        )
        self._lease_id = 0
        self._lease_expires = 0.0
        self._lease_lock = asyncio.Lock()

    # --- keys ----------------------------------------------------------------------------

    def key(self, realm: str, name: str) -> bytes:
        return f"{self.root}{realm}/{name}".encode()

    def scope_prefix(self, realm: str | None) -> bytes:
        return (self.root + (f"{realm}/" if realm else "")).encode()

    # --- leases --------------------------------------------------------------------------

    @property
    def reuse_seconds(self) -> int:
        return min(int(self.ttl * LEASE_REUSE_FRACTION), LEASE_REUSE_MAX_SECONDS)

    async def lease(self) -> int:
        """A lease that lasts at least ``ttl`` more seconds (kube-apiserver's reuse rule)."""
        async with self._lease_lock:
            now = asyncio.get_running_loop().time()
            valid = now + self.ttl < self._lease_expires
            sufficient = now + self.ttl + self.reuse_seconds >= self._lease_expires
            if self._lease_id and valid and sufficient:
                return self._lease_id
            ttl = self.ttl + self.reuse_seconds

            async def grant() -> Any:
                return await self._client.leasestub.LeaseGrant(
                    rpc.LeaseGrantRequest(TTL=ttl, ID=0),
                    timeout=self._config.request_timeout,
                    metadata=self._client.metadata,
                )

            response = await self._retrier.run(grant, what="grant an Event lease", repeatable=True)
            if response.error:
                raise StoreError(f"etcd refused an Event lease: {response.error}")
            self._lease_id = int(response.ID)
            self._lease_expires = now + ttl
            return self._lease_id

    def _forget_lease(self) -> None:
        self._lease_id = 0
        self._lease_expires = 0.0

    # --- write ---------------------------------------------------------------------------

    async def record(self, occurrence: Event, *, seen: Event | None = None) -> Event:
        """Store ``occurrence``: a new Event, or a repeat of the stored one of its name.

        ``seen`` is the Event of that name as this writer last stored it (its cache): when
        etcd still has that revision, the repeat is one write; otherwise the stored Event
        is read and bumped, or the occurrence stored anew when there is none (expired).
        Returns the Event as stored, with its resourceVersion.
        """
        key = self.key(occurrence.metadata.realm, occurrence.metadata.name)
        current = seen
        for _ in range(_CAS_ROUNDS):
            if current is None:
                candidate = occurrence
                compare = rpc.Compare(
                    key=key,
                    target=rpc.Compare.CREATE,
                    result=rpc.Compare.EQUAL,
                    create_revision=0,
                )
            else:
                candidate = current.model_copy(
                    update={
                        "count": current.count + 1,
                        "last_timestamp": occurrence.last_timestamp,
                        "source": occurrence.source,
                    }
                )
                compare = rpc.Compare(
                    key=key,
                    target=rpc.Compare.MOD,
                    result=rpc.Compare.EQUAL,
                    mod_revision=int(current.metadata.resource_version or 0),
                )
            response = await self._put_if(key, compare, _encode(candidate))
            if response.succeeded:
                stored = candidate.model_copy(deep=True)
                stored.metadata.resource_version = str(response.header.revision)
                return stored
            ranged = response.responses[0].response_range
            current = (
                _decode(ranged.kvs[0].value, ranged.kvs[0].mod_revision) if ranged.kvs else None
            )
        raise StoreError(
            f"Event {occurrence.metadata.realm}/{occurrence.metadata.name} kept changing while "
            "being written"
        )

    async def _put_if(self, key: bytes, compare: Any, value: bytes) -> Any:
        for attempt in range(2):
            lease = await self.lease()
            request = rpc.TxnRequest(
                compare=[compare],
                success=[
                    rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))
                ],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
            )

            async def txn(request: Any = request) -> Any:
                return await self._client.kvstub.Txn(
                    request, timeout=self._config.request_timeout, metadata=self._client.metadata
                )

            try:
                # A CAS on the revision: repeating it after an in-flight failure cannot
                # count twice (the second compare fails and re-reads).
                return await self._retrier.run(txn, what="write an Event", repeatable=True)
            except StoreError as error:
                lost = "lease not found" in str(error).lower()
                if not lost or attempt:
                    raise
                self._forget_lease()  # revoked or expired under us: take a new one
        raise AssertionError("unreachable")

    # --- read ----------------------------------------------------------------------------

    async def list(self, realm: str | None = None) -> EventList:
        """Every Event of ``realm`` (of every realm when None), read at one revision."""
        prefix = self.scope_prefix(realm)
        end = range_end(prefix)

        async def attempt() -> EventList:
            items: list[Event] = []
            start, revision = prefix, 0
            while True:
                request = rpc.RangeRequest(
                    key=start, range_end=end, revision=revision, limit=_LIST_PAGE
                )
                response = await self._client.kvstub.Range(
                    request, timeout=self._config.request_timeout, metadata=self._client.metadata
                )
                revision = revision or int(response.header.revision)
                for kv in response.kvs:
                    event = _decode(kv.value, kv.mod_revision)
                    if event is not None:
                        items.append(event)
                if not response.more or not response.kvs:
                    return EventList(items, revision)
                start = response.kvs[-1].key + b"\0"

        return await self._retrier.run(attempt, what="list Events", repeatable=True)

    async def current_revision(self) -> int:
        """etcd's current revision (a count-only range of the Events' keys)."""
        prefix = self.scope_prefix(None)

        async def attempt() -> int:
            request = rpc.RangeRequest(key=prefix, range_end=range_end(prefix), count_only=True)
            response = await self._client.kvstub.Range(
                request, timeout=self._config.request_timeout, metadata=self._client.metadata
            )
            return int(response.header.revision)

        return await self._retrier.run(attempt, what="read the current revision", repeatable=True)

    async def get(self, realm: str, name: str) -> Event | None:
        key = self.key(realm, name)

        async def attempt() -> Event | None:
            response = await self._client.kvstub.Range(
                rpc.RangeRequest(key=key),
                timeout=self._config.request_timeout,
                metadata=self._client.metadata,
            )
            if not response.kvs:
                return None
            return _decode(response.kvs[0].value, response.kvs[0].mod_revision)

        return await self._retrier.run(attempt, what="read an Event", repeatable=True)

    # --- watch ---------------------------------------------------------------------------

    async def watch(
        self, realm: str | None = None, *, resource_version: int
    ) -> AsyncIterator[EventChange]:
        """Every change after ``resource_version`` (an expired Event is DELETED).

        Resumes after the last delivered revision when the stream breaks; ``Gone`` when
        etcd compacted that history (list again), ``Unavailable`` when etcd stays away
        for the retry budget.
        """
        changes = resumable_watch(
            self._client,
            self._config,
            self.scope_prefix(realm),
            after=resource_version,
            what="Events",
            decode=_changes,
            revision_of=lambda change: change.revision,
        )
        async with contextlib.aclosing(changes):  # the stream ends with its reader
            async for change in changes:
                yield change


def _changes(response: Any) -> list[EventChange]:
    decoded = [_change(change) for change in response.events]
    return [change for change in decoded if change is not None]


def _change(change: Any) -> EventChange | None:
    kv = change.kv
    if change.type == rpc.Event.EventType.DELETE:
        if not change.HasField("prev_kv"):
            return None
        last = _decode(change.prev_kv.value, kv.mod_revision)
        return None if last is None else EventChange("DELETED", last, kv.mod_revision)
    event = _decode(kv.value, kv.mod_revision)
    if event is None:
        return None
    created = kv.create_revision == kv.mod_revision
    return EventChange("ADDED" if created else "MODIFIED", event, kv.mod_revision)
