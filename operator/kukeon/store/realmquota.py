"""Per-realm quotas: how many objects a realm holds in etcd and how many bytes they take.

A realm editor can write as many spaces, stacks, cells, cell sets, Secrets and cell
profiles as they like, each up to ``MAX_DOCUMENT_BYTES``; without a limit one tenant could
fill the etcd every realm (and every node of a fleet) shares, until etcd raises its
``NOSPACE`` alarm and refuses every write. ``RealmQuotas`` is kukeond's answer, after
Kubernetes' ResourceQuota: it keeps a size index of every realm-scoped key (a list, then a
watch, of ``<prefix>/registry/``: sizes only, never the documents) and the limits each
realm document sets (``spec.quota``; unset limits are kukeond's defaults), and the
registry asks it before each create and each spec update that grows a document.

Writes in flight are counted as reservations until they are done, and a write that is
done is laid over the index at its revision until the watch shows it (as the scheduler's
assumed bindings), so concurrent creates in one kukeond never pass a limit together.
Several kukeonds of a fleet each keep their own index and see each other's writes through
the watch; what keeps a burst spread over several nodes within the limit is the realm's
serial key, rewritten and compared by every quota-checked write (``quotaserial``): a write
is stored only if its node's index had seen every other node's before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc
from aetcd import rpc

from kukeon.api import FieldError, Kind
from kukeon.api.realm import QUOTA_BYTES_MAX, QUOTA_OBJECTS_MAX
from kukeon.retrying import Backoff

from .connection import EtcdClient, EtcdConfig, Retrier
from .errors import EtcdAway, Gone, HistoryRewound, QuotaExceeded, Unavailable
from .etcdwatch import resumable_watch
from .keys import KINDS, KeyLayout, range_end
from .quotaserial import ABSENT, Behind, Guard, QuotaSlot, SerialState, owned_guard, serial_root

log = logging.getLogger(__name__)

REALMS_PLURAL = KINDS[Kind.REALM].plural
SPACES_PLURAL = KINDS[Kind.SPACE].plural
COUNTED_PLURALS = frozenset(
    KINDS[kind].plural
    for kind in (Kind.SPACE, Kind.STACK, Kind.CELL, Kind.SECRET, Kind.CELL_PROFILE, Kind.CELL_SET)
)
"""The kinds whose keys start with their realm's name: what a realm's quota counts."""


def counts_against_quota(kind: Kind) -> bool:
    """Whether a realm's quota counts objects of ``kind`` (the first name of their key is
    the realm's)."""
    return KINDS[kind].plural in COUNTED_PLURALS if kind in KINDS else False


LIST_PAGE_SIZE = 1000

RELIST_AFTER_UNAVAILABLE = 0.5
RELIST_AFTER_UNAVAILABLE_MAX = 30.0
"""The index's back-off while etcd does not answer (the supervisor's own, without its
traceback: an outage is no bug)."""
"""Keys per page of the index's list (each page's values are sized and dropped)."""


class QuotaLimits(NamedTuple):
    """A realm's limits; None is no limit."""

    objects: int | None
    storage_bytes: int | None
    spaces: int | None = None
    """How many spaces (each a bridge and a subnet of every node's pool it runs cells on);
    the realm's own only: kukeond has no default."""


NO_LIMITS = QuotaLimits(None, None)


class Usage(NamedTuple):
    objects: int
    storage_bytes: int
    spaces: int = 0


class _Entry(NamedTuple):
    realm: str
    size: int
    revision: int
    space: bool = False
    """A space's document (counted against `QuotaLimits.spaces` too)."""


@dataclass
class _Realm:
    objects: int = 0
    storage_bytes: int = 0
    spaces: int = 0
    reserved_objects: int = 0
    reserved_bytes: int = 0
    limits: QuotaLimits = field(default=NO_LIMITS)
    """What the realm document says (None where it sets nothing)."""
    limits_revision: int = 0


class RealmQuotas:
    """The size index of every realm's objects, and the check a write passes first."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        config: EtcdConfig,
        layout: KeyLayout,
        defaults: QuotaLimits = NO_LIMITS,
    ) -> None:
        self._client = client
        self._config = config
        self._retrier = Retrier(client=client, retry_timeout=config.retry_timeout)
        self._layout = layout
        self._root = f"{layout.registry_root}/".encode()
        self.defaults = defaults
        self._entries: dict[bytes, _Entry] = {}
        self._realms: dict[str, _Realm] = {}
        self._revision = 0
        """The revision the index has seen everything up to (list, then watch)."""
        self._synced = asyncio.Event()
        self._serial_root = serial_root(layout.registry_root)
        self._serials: dict[str, SerialState] = {}
        """Each realm's serial key as last seen (watch, list, or this node's own write)."""
        self._owned: dict[str, Guard] = {}
        """The realms whose serial holds this node's token: its writes there compare it
        (the guard those writes add, by realm)."""
        self._serial_waiting = 0
        self._serial_locks: dict[str, asyncio.Lock] = {}
        self._creates: dict[bytes, tuple[str, int]] = {}
        """The keys of this node's creates in flight: (realm, bytes held)."""
        self._serial_moved = asyncio.Event()
        """Set (and replaced) whenever a serial's state changes: what a lost write awaits."""
        self.lost_rounds = 0
        """Attempts lost to another node's write since start (tests and logs read it)."""

    # --- what a write asks ---------------------------------------------------------------

    def limits(self, realm: str) -> QuotaLimits:
        """The realm's effective limits: its own, else kukeond's defaults."""
        own = self._realms[realm].limits if realm in self._realms else NO_LIMITS
        objects = own.objects if own.objects is not None else self.defaults.objects
        storage = (
            own.storage_bytes if own.storage_bytes is not None else self.defaults.storage_bytes
        )
        return QuotaLimits(objects, storage, own.spaces)

    def usage(self, realm: str) -> Usage:
        """What the realm's objects take now, writes in flight included."""
        state = self._realms.get(realm)
        if state is None:
            return Usage(0, 0)
        # A space being created is held as an object; the same key tells it is a space.
        creating = sum(
            1
            for key, (name, _) in self._creates.items()
            if name == realm and key not in self._entries and self._is_space(key)
        )
        return Usage(
            state.objects + state.reserved_objects,
            state.storage_bytes + state.reserved_bytes,
            state.spaces + creating,
        )

    def _is_space(self, key: bytes) -> bool:
        return self._parse_key(key)[0] == SPACES_PLURAL

    @contextlib.asynccontextmanager
    async def reserve(
        self,
        realm: str,
        *,
        objects: int,
        storage_bytes: int,
        label: str,
        creates: bytes | None = None,
        spaces: int = 0,
    ) -> AsyncIterator[QuotaSlot]:
        """Hold ``objects`` and ``storage_bytes`` of ``realm``'s quota for one write;
        ``QuotaExceeded`` when they do not fit. The write adds each attempt's guard from
        the slot to its transaction (``QuotaSlot.attempt``, which checks again) and calls
        ``assume`` once stored, before the hold ends.

        ``creates``: the key a create writes. Its hold then steps aside while the index
        counts that key (the watch may show the write before the write's own answer
        comes back), so the new object is never counted twice: a node's own burst, each
        write checked again at each attempt, fills the limit exactly."""
        await self.check(
            realm, objects=objects, storage_bytes=storage_bytes, label=label, spaces=spaces
        )
        # No await between the check and the hold: nothing else runs in between.
        keyed = creates if objects == 1 and creates not in self._creates else None
        if keyed is not None:
            self._creates[keyed] = (realm, storage_bytes)
        if keyed is None or keyed not in self._entries:
            self._hold(realm, objects, storage_bytes)
        try:
            yield QuotaSlot(
                self,
                realm,
                objects=objects,
                storage_bytes=storage_bytes,
                label=label,
                spaces=spaces,
            )
        finally:
            # The realm's state now, not the one held above: a relist while the write ran
            # replaced it, carrying this hold over (``_rebuild``).
            if keyed is not None:
                del self._creates[keyed]
            if keyed is None or keyed not in self._entries:
                self._hold(realm, -objects, -storage_bytes)
            self._forget_if_empty(realm)

    def _hold(self, realm: str, objects: int, storage_bytes: int) -> None:
        state = self._realms.setdefault(realm, _Realm())
        state.reserved_objects += objects
        state.reserved_bytes += storage_bytes

    def key_size(self, kind: Kind, key: tuple[str, ...]) -> int:
        """The bytes of an object's etcd key (counted with its document)."""
        return len(self._layout.key(kind, key).encode())

    async def check(
        self, realm: str, *, objects: int, storage_bytes: int, label: str, spaces: int = 0
    ) -> None:
        """``QuotaExceeded`` unless ``objects`` and ``storage_bytes`` more (``spaces`` of
        them spaces) fit ``realm``'s quota now (what a dry run asks; a write holds them
        with ``reserve``)."""
        await self.wait_synced()
        self._refuse_over(realm, objects, storage_bytes, label, held=False, spaces=spaces)

    def check_held(
        self, realm: str, *, objects: int, storage_bytes: int, label: str, spaces: int = 0
    ) -> None:
        """``QuotaExceeded`` unless a write holding ``objects`` and ``storage_bytes``
        (``reserve``) still fits, as the index is now (an attempt's check)."""
        self._refuse_over(realm, objects, storage_bytes, label, held=True, spaces=spaces)

    def _refuse_over(
        self,
        realm: str,
        objects: int,
        storage_bytes: int,
        label: str,
        *,
        held: bool,
        spaces: int = 0,
    ) -> None:
        limits = self.limits(realm)
        used = self.usage(realm)
        if held:
            # The usage counts this write's own hold already (a space: its create's key).
            used = Usage(
                used.objects - objects, used.storage_bytes - storage_bytes, used.spaces - spaces
            )
        causes: list[FieldError] = []
        if spaces > 0 and limits.spaces is not None and used.spaces + spaces > limits.spaces:
            causes.append(
                FieldError(
                    "spec.quota.spaces",
                    f"{used.spaces} of {limits.spaces} spaces in use (each takes a subnet of "
                    "the node's pool on every node it runs cells on)",
                )
            )
        if objects > 0 and limits.objects is not None and used.objects + objects > limits.objects:
            causes.append(
                FieldError(
                    "spec.quota.objects",
                    f"{used.objects} of {limits.objects} objects in use",
                )
            )
        if (
            storage_bytes > 0
            and limits.storage_bytes is not None
            and used.storage_bytes + storage_bytes > limits.storage_bytes
        ):
            causes.append(
                FieldError(
                    "spec.quota.storageBytes",
                    f"{used.storage_bytes} of {limits.storage_bytes} bytes in use, "
                    f"{storage_bytes} more asked",
                )
            )
        if causes:
            reasons = "; ".join(f"{cause.field}: {cause.message}" for cause in causes)
            raise QuotaExceeded(
                f"{label} would exceed the quota of realm {json.dumps(realm)} ({reasons}); "
                "delete some of its objects or ask an admin to raise the quota",
                causes=causes,
            )

    async def wait_synced(self) -> None:
        """Return once the first list is in; ``Unavailable`` after the store's retry budget
        (what any write waits for an etcd that does not answer)."""
        if self._synced.is_set():
            return
        try:
            async with asyncio.timeout(self._config.retry_timeout):
                await self._synced.wait()
        except TimeoutError:
            raise Unavailable(
                "the realms' usage is not known yet (kukeond is still reading etcd); retry"
            ) from None

    # --- the index -----------------------------------------------------------------------

    async def run(self) -> None:
        """List, then follow the watch, for ever (run it supervised): a compacted watch lists
        again; etcd unavailable (the store's retries spent) is one warning and a list again
        after a back-off, not a crash with a traceback; any other failure ends the run for
        the supervisor to start again."""
        backoff = Backoff(RELIST_AFTER_UNAVAILABLE, RELIST_AFTER_UNAVAILABLE_MAX)
        while True:
            try:
                await self._list()
                backoff.reset()
                await self._follow()
            except Gone as gone:
                if isinstance(gone, HistoryRewound):
                    # What this process wrote after the restored revision is no more: the
                    # list must not keep it as writes the watch has yet to show.
                    self._entries, self._serials = {}, {}
                log.info("realm usage: %s; listing again", gone)
            except Unavailable as error:
                delay = backoff.next()
                # etcd known away was said once by the client's health, not again here.
                level = logging.DEBUG if isinstance(error, EtcdAway) else logging.WARNING
                log.log(level, "realm usage: %s; listing again in %.1fs", error, delay)
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        listed: dict[bytes, _Entry] = {}
        realm_limits: dict[str, QuotaLimits] = {}
        serials: dict[str, SerialState] = {}
        revision = 0
        start, end = self._root, range_end(self._root)
        while True:
            response = await self._range(start, end, revision)
            if not revision:
                revision = response.header.revision
            for kv in response.kvs:
                if kv.key.startswith(self._serial_root):
                    realm = kv.key[len(self._serial_root) :].decode(errors="replace")
                    serials[realm] = SerialState(kv.value, kv.mod_revision)
                    continue
                self._read_kv(kv.key, kv.value, kv.mod_revision, listed, realm_limits)
            if not response.more or not response.kvs:
                break
            start = response.kvs[-1].key + b"\0"
        # Writes this process made after the list's snapshot stay counted until the watch
        # (from that snapshot) shows them.
        for key, entry in self._entries.items():
            if entry.revision > revision:
                listed[key] = entry
        for realm, serial in self._serials.items():
            if serial.revision > revision:
                serials[realm] = serial
        self._rebuild(listed, realm_limits, revision, serials)
        self._synced.set()

    async def _range(self, start: bytes, end: bytes, revision: int) -> Any:
        async def attempt() -> Any:
            request = rpc.RangeRequest(
                key=start, range_end=end, revision=revision, limit=LIST_PAGE_SIZE
            )
            return await self._client.kvstub.Range(
                request, timeout=self._config.request_timeout, metadata=self._client.metadata
            )

        try:
            return await self._retrier.run(attempt, what="list the realms' usage", repeatable=True)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise Gone("compacted while listing", compacted_revision=revision) from error
            raise

    def _read_kv(
        self,
        key: bytes,
        value: bytes,
        revision: int,
        entries: dict[bytes, _Entry],
        realm_limits: dict[str, QuotaLimits],
    ) -> None:
        plural, realm, is_realm = self._parse_key(key)
        if is_realm:
            realm_limits[realm] = limits_of(value)
        elif plural is not None:
            entries[key] = _Entry(realm, len(key) + len(value), revision, plural == SPACES_PLURAL)

    def _rebuild(
        self,
        entries: dict[bytes, _Entry],
        realm_limits: dict[str, QuotaLimits],
        revision: int,
        serials: dict[str, SerialState] | None = None,
    ) -> None:
        reserved = {
            name: (state.reserved_objects, state.reserved_bytes)
            for name, state in self._realms.items()
        }
        # Holds of creates step aside while their key is counted: as the old index did,
        # as the new one does.
        for key, (name, size) in self._creates.items():
            objects, storage = reserved.get(name, (0, 0))
            if key not in self._entries:
                objects, storage = objects - 1, storage - size
            if key not in entries:
                objects, storage = objects + 1, storage + size
            reserved[name] = (objects, storage)
        realms: dict[str, _Realm] = {}
        for name, limits in realm_limits.items():
            realms[name] = _Realm(limits=limits, limits_revision=revision)
        for entry in entries.values():
            state = realms.setdefault(entry.realm, _Realm())
            state.objects += 1
            state.storage_bytes += entry.size
            state.spaces += entry.space
        for name, (objects, storage) in reserved.items():
            state = realms.setdefault(name, _Realm())
            state.reserved_objects, state.reserved_bytes = objects, storage
        self._entries, self._realms, self._revision = entries, realms, revision
        self._serials = serials if serials is not None else {}
        self._owned = {
            realm: guard
            for realm, guard in self._owned.items()
            if self._serials.get(realm, ABSENT).value == guard.token
        }
        self._wake_serial_waiters()

    async def _follow(self) -> None:
        def decode(response: Any) -> list[Any]:
            return list(response.events)

        events = resumable_watch(
            self._client,
            self._config,
            self._root,
            after=self._revision,
            what="the realms' usage",
            decode=decode,
            revision_of=lambda event: int(event.kv.mod_revision),
            prev_kv=False,  # a delete's key is all the index needs
        )
        async with contextlib.aclosing(events):
            async for event in events:
                kv = event.kv
                deleted = event.type == rpc.Event.EventType.DELETE
                self.observe(kv.key, None if deleted else kv.value, kv.mod_revision)
                self._revision = max(self._revision, kv.mod_revision)

    def observe(self, key: bytes, value: bytes | None, revision: int) -> None:
        """A change the watch shows (``value`` None: the key was deleted)."""
        if key.startswith(self._serial_root):
            realm = key[len(self._serial_root) :].decode(errors="replace")
            self._set_serial(realm, value, revision)
            return
        plural, realm, is_realm = self._parse_key(key)
        if is_realm:
            self._set_limits(realm, value, revision)
        elif plural is not None:
            size = None if value is None else len(key) + len(value)
            self._set(key, realm, size, revision, space=plural == SPACES_PLURAL)

    def assume(self, key: bytes, value: bytes, revision: int) -> None:
        """A write this process just made, counted until the watch shows it (ignored when
        the watch has already gone past it: it showed that write, or a later change)."""
        if revision <= self._revision:
            return
        plural, realm, is_realm = self._parse_key(key)
        if is_realm:
            self._set_limits(realm, value, revision)
        elif plural is not None:
            self._set(key, realm, len(key) + len(value), revision, space=plural == SPACES_PLURAL)

    # --- the realms' serial keys (``quotaserial``) ----------------------------------------

    def serial_key(self, realm: str) -> bytes:
        return self._serial_root + realm.encode()

    def serial_state(self, realm: str) -> SerialState:
        return self._serials.get(realm, ABSENT)

    def owned_serial(self, realm: str) -> bytes | None:
        """This node's token while the realm's serial holds it, else None."""
        guard = self._owned.get(realm)
        return guard.token if guard is not None else None

    def owned_guard(self, realm: str) -> Guard | None:
        """The guard of this node's writes while the realm's serial holds its token."""
        return self._owned.get(realm)

    def serial_lock(self, realm: str) -> asyncio.Lock:
        """Held by the one write of this node taking the realm's serial over."""
        lock = self._serial_locks.get(realm)
        if lock is None:
            lock = self._serial_locks[realm] = asyncio.Lock()
        return lock

    def took_serial(self, realm: str, token: bytes, revision: int) -> None:
        """This node's write put ``token`` in the realm's serial at ``revision``."""
        if revision > self._revision:  # else the watch has shown it, or what came after
            self._set_serial(realm, token, revision)
        owned = self._owned.get(realm)
        if self.serial_state(realm).value == token and (owned is None or owned.token != token):
            self._owned[realm] = owned_guard(self.serial_key(realm), token)

    def lost_serial(self, realm: str, token: bytes) -> None:
        """Another node's write moved the realm's serial past ``token``."""
        self.lost_rounds += 1
        if self.owned_serial(realm) == token:
            del self._owned[realm]

    def _set_serial(self, realm: str, value: bytes | None, revision: int) -> None:
        known = self._serials.get(realm, ABSENT)
        if revision <= known.revision:
            return
        if value is None:
            self._serials.pop(realm, None)
            # A deletion is kept as a revision only in ``_revision`` (the watch's).
        else:
            self._serials[realm] = SerialState(value, revision)
        owned = self._owned.get(realm)
        if owned is not None and owned.token != value:
            del self._owned[realm]
        if self._serial_waiting:
            self._wake_serial_waiters()

    def _serial_seen(self, realm: str, behind: Behind) -> bool:
        if self._revision >= behind.revision:
            return True
        state = self._serials.get(realm, ABSENT)
        if behind.absent:
            return state.value is None or state.revision > behind.revision
        return state.revision >= behind.revision

    def _wake_serial_waiters(self) -> None:
        moved = self._serial_moved
        self._serial_moved = asyncio.Event()
        moved.set()

    async def wait_for_serial(self, realm: str, behind: Behind) -> None:
        """Return once the index has seen the realm's serial at ``behind`` (so every write
        before it); ``Unavailable`` after the store's retry budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.retry_timeout
        self._serial_waiting += 1
        try:
            while not self._serial_seen(realm, behind):
                moved = self._serial_moved
                try:
                    async with asyncio.timeout_at(deadline):
                        await moved.wait()
                except TimeoutError:
                    raise Unavailable(
                        f"the usage of realm {realm!r} did not catch up with etcd "
                        f"(revision {behind.revision}) in time; retry"
                    ) from None
        finally:
            self._serial_waiting -= 1

    def _set_limits(self, realm: str, value: bytes | None, revision: int) -> None:
        state = self._realms.setdefault(realm, _Realm())
        if revision > state.limits_revision:
            state.limits = NO_LIMITS if value is None else limits_of(value)
            state.limits_revision = revision
        self._forget_if_empty(realm)

    def _set(
        self, key: bytes, realm: str, size: int | None, revision: int, *, space: bool = False
    ) -> None:
        known = self._entries.get(key)
        if known is not None and known.revision >= revision:
            return
        state = self._realms.setdefault(realm, _Realm())
        if known is not None:
            state.objects -= 1
            state.storage_bytes -= known.size
            state.spaces -= known.space
        held = self._creates.get(key)
        if size is None:
            self._entries.pop(key, None)
            if known is not None and held is not None:
                self._hold(held[0], 1, held[1])  # counted by its hold again
            self._forget_if_empty(realm)
            return
        self._entries[key] = _Entry(realm, size, revision, space)
        state.objects += 1
        state.storage_bytes += size
        state.spaces += space
        if known is None and held is not None:
            self._hold(held[0], -1, -held[1])  # counted by its entry now

    def _parse_key(self, key: bytes) -> tuple[str | None, str, bool]:
        """(counted plural or None, realm, whether the key is a realm's document)."""
        if not key.startswith(self._root):
            return None, "", False
        parts = key[len(self._root) :].decode(errors="replace").split("/")
        if len(parts) < 2 or not parts[1]:
            return None, "", False
        if parts[0] == REALMS_PLURAL:
            return None, parts[1], len(parts) == 2
        if parts[0] in COUNTED_PLURALS:
            # One string per realm, not one per key (each entry holds it): ~55 bytes a key.
            return parts[0], sys.intern(parts[1]), False
        return None, "", False

    def _forget_if_empty(self, realm: str) -> None:
        state = self._realms.get(realm)
        if (
            state is not None
            and state.objects == 0
            and state.reserved_objects == 0
            and state.reserved_bytes == 0
            and state.limits == NO_LIMITS
        ):
            del self._realms[realm]

    def realms(self) -> Iterable[str]:
        return list(self._realms)


def limits_of(value: bytes) -> QuotaLimits:
    """The limits a stored realm document sets; what is not a valid limit counts as unset
    (the document is untrusted: one that does not parse must not stop the index; JSON
    nested past Python's stack is json's RecursionError, which crashed the index for as long
    as the document stayed)."""
    try:
        document = json.loads(value)
        quota = document["spec"]["quota"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return NO_LIMITS
    if not isinstance(quota, dict):
        return NO_LIMITS
    return QuotaLimits(
        _limit(quota.get("objects"), QUOTA_OBJECTS_MAX),
        _limit(quota.get("storageBytes"), QUOTA_BYTES_MAX),
        _limit(quota.get("spaces"), QUOTA_OBJECTS_MAX),
    )


def _limit(value: object, most: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most:
        return value
    return None
