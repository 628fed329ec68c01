"""A realm's quota held across a fleet: one serial key per realm, compared by every write.

Each kukeond checks a write against its own index of the realm's usage (``realmquota``),
which learns other nodes' writes through its watch; checked alone, a burst spread over
several nodes could pass the limit by what each saw free. So every quota-checked write
(a create of a realm-scoped object, a spec update that grows a document) also rewrites
``<prefix>/registry/quotaserials/<realm>`` in the same etcd transaction, with a compare
that holds only if no other node's quota-checked write came since the index last saw it.
A lost compare means another node wrote: wait until the index has seen that write (its
watch reaches the key's revision), check again, try again. As Kubernetes' ResourceQuota
admission, which serialises on the quota object's resourceVersion, the check and the
count it relies on are one atomic step, but here without a usage count stored in etcd:
the index is the count, and the key only orders the writes.

The key's value is a token, fresh for each take-over. A node whose write put the key's
current value *owns* the realm's serial: while the value is still its token no other node
has written, so its own writes compare the value (not the revision) and go concurrently,
counted against each other by the index's reservations as in a single kukeond. A node
that does not own it takes it over with one write comparing the key's revision as its
index last saw it (``0``: no key yet, a realm from before the serial); its other writes
in that realm wait for that one. Writes in different realms never wait for each other.

A realm's serial key is removed after the realm (``deletion``), only while the realm is
absent: nothing of the realm can be stored then, so a node comparing an absent key from
before it was written cannot have missed an object that still exists.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from aetcd import rpc

from .errors import Unavailable

if TYPE_CHECKING:
    from .realmquota import RealmQuotas

SERIALS_PLURAL = "quotaserials"
"""The folder of the serial keys under ``<prefix>/registry/``: no kind's plural, so no
kind's list or watch (``<prefix>/registry/<plural>/``) reads them."""

MAX_LOST_ROUNDS = 64
"""Rounds one write may lose to other nodes' writes before it gives up (``Unavailable``):
each loss is another node's write stored, so the realm moves on; a write that keeps
losing is told so instead of waiting for ever."""


def serial_root(registry_root: str) -> bytes:
    return f"{registry_root}/{SERIALS_PLURAL}/".encode()


class SerialState(NamedTuple):
    """A realm's serial key as the index last saw it (``value`` None: absent)."""

    value: bytes | None
    revision: int


ABSENT = SerialState(None, 0)


class Guard(NamedTuple):
    """One attempt's part of the write's transaction."""

    compares: list[Any]
    success: list[Any]
    failure: list[Any]
    """The serial key's read, appended last to the failure branch."""
    token: bytes
    owned: bool
    """Compared by value (this node owned the serial) rather than by revision."""
    expected_revision: int


NO_GUARD = Guard([], [], [], b"", owned=False, expected_revision=0)


class Behind(NamedTuple):
    """What the index must have seen before the next attempt: the serial key at
    ``revision`` (absent at ``revision`` when ``absent``)."""

    revision: int
    absent: bool


def _compare_value(key: bytes, value: bytes) -> Any:
    return rpc.Compare(key=key, target=rpc.Compare.VALUE, result=rpc.Compare.EQUAL, value=value)


def _compare_modified(key: bytes, revision: int) -> Any:
    # A missing key compares as revision 0 (etcd compares a zero key-value for it).
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def owned_guard(key: bytes, token: bytes) -> Guard:
    """The guard of every write of a node while the realm's serial holds its ``token``
    (built once per take-over: etcd's request copies it)."""
    return Guard(
        [_compare_value(key, token)],
        [_put(key, token)],
        [_read(key)],
        token,
        owned=True,
        expected_revision=0,
    )


class QuotaSlot:
    """One write's share of its realm's quota: held (``RealmQuotas.reserve``) while the
    write runs, checked again and guarded by the realm's serial at each attempt."""

    def __init__(
        self,
        quotas: RealmQuotas,
        realm: str,
        *,
        objects: int,
        storage_bytes: int,
        label: str,
        spaces: int = 0,
    ) -> None:
        self._quotas = quotas
        self.realm = realm
        self._spaces = spaces
        self._objects = objects
        self._storage_bytes = storage_bytes
        self._label = label
        self._lost = 0

    def attempt(self) -> AbstractAsyncContextManager[Guard]:
        """The guard of one attempt; call ``settle`` with its response inside the block
        (a take-over holds this node's other writes of the realm until then)."""
        return _Attempt(self)

    async def enter(self) -> tuple[Guard, asyncio.Lock | None]:
        """An attempt's guard, and the realm's take-over lock when this attempt holds it."""
        quotas = self._quotas
        while True:
            guard = quotas.owned_guard(self.realm)
            if guard is not None:
                # The check and the guard with no await between: the index this check
                # reads is the one the compare vouches for.
                self._check()
                return guard, None
            lock = quotas.serial_lock(self.realm)
            await lock.acquire()
            if quotas.owned_guard(self.realm) is not None:
                lock.release()  # taken over by another write of this node meanwhile
                continue
            try:
                seen = quotas.serial_state(self.realm)
                expected = seen.revision if seen.value is not None else 0
                self._check()
            except BaseException:
                lock.release()
                raise
            key = quotas.serial_key(self.realm)
            token = secrets.token_hex(8).encode()
            guard = Guard(
                [_compare_modified(key, expected)],
                [_put(key, token)],
                [_read(key)],
                token,
                owned=False,
                expected_revision=expected,
            )
            return guard, lock

    def _check(self) -> None:
        self._quotas.check_held(
            self.realm,
            objects=self._objects,
            storage_bytes=self._storage_bytes,
            label=self._label,
            spaces=self._spaces,
        )

    def settle(self, guard: Guard, response: Any) -> Behind | None:
        """Record the attempt's outcome; what the index must see first when another
        node's write made it lose (None: the serial was not why it failed, if it did)."""
        if guard is NO_GUARD:
            return None
        quotas = self._quotas
        if response.succeeded:
            quotas.took_serial(self.realm, guard.token, int(response.header.revision))
            return None
        kvs = response.responses[-1].response_range.kvs
        if kvs and kvs[0].value == guard.token:
            # Still this node's token: another compare failed (the key exists...), or this
            # very attempt was applied before its answer was lost (the retry of an
            # in-flight failure). Either way no other node wrote.
            quotas.took_serial(self.realm, guard.token, int(kvs[0].mod_revision))
            return None
        if not guard.owned and (kvs[0].mod_revision if kvs else 0) == guard.expected_revision:
            return None  # the serial is as compared: another compare failed
        quotas.lost_serial(self.realm, guard.token)
        self._lost += 1
        if kvs:
            return Behind(int(kvs[0].mod_revision), absent=False)
        return Behind(int(response.header.revision), absent=True)

    async def catch_up(self, behind: Behind) -> None:
        """Wait until the index has seen what ``behind`` names (``Unavailable`` after the
        store's retry budget, or after ``MAX_LOST_ROUNDS`` losses); the next attempt
        checks the quota again."""
        if self._lost > MAX_LOST_ROUNDS:
            raise Unavailable(
                f"{self._label}: other kukeonds kept writing to realm {self.realm!r} "
                f"({self._lost} attempts lost to them); retry"
            )
        await self._quotas.wait_for_serial(self.realm, behind)


class _Attempt:
    """``QuotaSlot.attempt``'s context (by hand: a generator's costs more per write)."""

    __slots__ = ("_lock", "_slot")

    def __init__(self, slot: QuotaSlot) -> None:
        self._slot = slot
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> Guard:
        guard, self._lock = await self._slot.enter()
        return guard

    async def __aexit__(self, *exc_info: object) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class NullSlot(QuotaSlot):
    """A write no realm's quota charges: no check, nothing added to its transaction."""

    def __init__(self) -> None:
        self.realm = ""
        self._lost = 0

    async def enter(self) -> tuple[Guard, asyncio.Lock | None]:
        return NO_GUARD, None

    def settle(self, guard: Guard, response: Any) -> Behind | None:
        return None


NULL_SLOT = NullSlot()


def _put(key: bytes, value: bytes) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))


def _read(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))
