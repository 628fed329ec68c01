"""The registry: every resource is one JSON document in etcd, written only by compare-and-swap.

Why each rule is the way it is:

- ``resourceVersion`` is the key's etcd ``mod_revision``, never stored in the document:
  it cannot be stale and costs nothing to keep right.
- create is ``if create_revision(key) == 0``; a child create also compares its parent's
  ``mod_revision`` with the last one it saw alive and not being deleted (on a miss the
  transaction's failure branch reads the parent and the create tries again). Marking a
  parent for deletion bumps that revision, so a child can never slip in under a dying one.
- a parent is removed by a transaction that also compares every child range as empty
  (``create_revision(range) == 0``), so the two races (child create, parent delete) are
  both decided inside etcd, and no orphan can exist.
- update and update_status compare the caller's ``resourceVersion``; a lost compare is
  ``Conflict`` (never retried here: the caller must re-read and re-decide). update takes
  spec and metadata and keeps the stored status; update_status takes status only. The
  stored bytes they merge with come from a small cache keyed by exact revision when the
  registry has seen that revision (bytes at a revision never change), else from a read.
- every write is validated with ``kukeon.api.parse_resource`` first and refused over
  1 MiB before anything is sent.
- list reads every page at the revision of the first page: one consistent snapshot.
- watch resumes from the last delivered revision after any stream failure (member killed,
  leader lost) and turns compaction into ``Gone`` so the caller relists.
- what etcd holds is untrusted (``decoding``): a document that does not decode as a valid
  resource of its key is skipped by list and watch (logged once per version, counted in
  ``invalid_documents``), raises ``InvalidStoredDocument`` when read by name, and is
  removed by ``delete``. To a watcher, an object whose new version is invalid is DELETED,
  and one whose invalid version is replaced by a valid one is ADDED.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

import grpc
from aetcd import rpc

from kukeon.api import (
    FieldError,
    InvalidResource,
    Kind,
    Realm,
    Resource,
    Secret,
    key_of,
    parse_resource,
    to_document,
)

from .connection import EtcdClient, EtcdConfig, Retrier, is_transient
from .decoding import InvalidDocuments, load_document, parse_document
from .encryption import (
    EncryptionError,
    Keyring,
    SealingError,
    key_ids_in,
    reseal_document,
    restore_sealed,
    seal_passwords,
    seal_secret,
    unseal_document,
    validation_copy,
)
from .errors import (
    AlreadyExists,
    ChildrenExist,
    Conflict,
    Gone,
    Invalid,
    InvalidStoredDocument,
    NotFound,
    StoreError,
    Unavailable,
)
from .keys import KeyLayout, child_kinds, display_name, parent_key, range_end
from .selectors import LabelSelector, parse_selector

log = logging.getLogger(__name__)

AnyResource = Resource[Any, Any]

MAX_DOCUMENT_BYTES = 1024 * 1024
CHILDREN_FINALIZER = "kukeon.io/children"
"""Held by every parent kind; released by the registry once it has no children left."""

_SEALED_KINDS = (Kind.SECRET, Kind.REALM)
"""Kinds whose stored documents carry sealed values (see ``encryption``)."""
_SealedKeys = list[tuple[Kind, bytes]]
_Failures = list[str]

LIST_PAGE_SIZE = 500
_MAX_CAS_ROUNDS = 1000
_CHILDREN_NAMED_IN_ERRORS = 10
_CASCADE_BATCH = 16
_PARENT_CACHE_SIZE = 4096
_DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024


class WatchEvent(NamedTuple):
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: AnyResource
    revision: int


class ResourceList(NamedTuple):
    items: list[AnyResource]
    resource_version: int


def _now() -> datetime:
    return datetime.now(UTC)


def _kind_of(res: AnyResource) -> Kind:
    return Kind(res.kind)


def _label(kind: Kind, key: Sequence[str]) -> str:
    return f"{kind.value} {display_name(key)!r}"


# --- etcd request builders ---------------------------------------------------------------


def _compare_created(key: bytes, revision: int, end: bytes | None = None) -> Any:
    return rpc.Compare(
        key=key,
        range_end=end or b"",
        target=rpc.Compare.CREATE,
        result=rpc.Compare.EQUAL,
        create_revision=revision,
    )


def _compare_modified(key: bytes, revision: int) -> Any:
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def _put(key: bytes, value: bytes) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))


def _delete(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def _read(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


class _Stored(NamedTuple):
    """One document as read, with the revisions the next compare needs."""

    value: bytes
    mod_revision: int

    @property
    def metadata(self) -> dict[str, Any]:
        """The stored metadata, empty when the document does not even load."""
        loaded = load_document(self.value)
        return {} if isinstance(loaded, str) else dict(loaded["metadata"])


_Compares = list[Any]
_Children = list[tuple[Kind, tuple[str, ...]]]
_Batch = list[WatchEvent]


class _DocumentCache:
    """The exact bytes of documents at the revision this registry last saw them.

    A revision's bytes never change in etcd, so an update whose resourceVersion matches
    the cached revision can skip the read: the compare in the write still decides.
    Bounded by total size; the oldest entries go first.
    """

    def __init__(self, max_bytes: int) -> None:
        self._entries: collections.OrderedDict[bytes, _Stored] = collections.OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def remember(self, key: bytes, stored: _Stored) -> _Stored:
        self.forget(key)
        self._entries[key] = stored
        self._bytes += len(stored.value)
        while self._bytes > self._max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.value)
        return stored

    def at(self, key: bytes, revision: int) -> _Stored | None:
        stored = self._entries.get(key)
        return stored if stored is not None and stored.mod_revision == revision else None

    def forget(self, key: bytes) -> None:
        stored = self._entries.pop(key, None)
        if stored is not None:
            self._bytes -= len(stored.value)


class _Lost(enum.Enum):
    """A compare-and-swap round lost its compare (someone wrote first)."""

    LOST = enum.auto()


_Decide = Callable[[AnyResource, "_Stored"], tuple[Any, list[Any]]]
"""Given the current object, the next document (None: remove the key; "keep": no write)
and any extra compares the write needs."""


class _WatchStreamEndedError(Exception):
    """The server closed or cancelled a watch stream without compaction: resume it."""


class Registry:
    """Async CRUD + watch of kukeon resources in etcd. Build it with ``await Registry.connect``."""

    def __init__(
        self, *, client: EtcdClient, config: EtcdConfig, keyring: Keyring | None = None
    ) -> None:
        self._client = client
        self._config = config
        # Seals Secret values and inline registry passwords on write and opens them on
        # read (only kukeond holds one); without it they cannot be written and read as
        # absent (Secret data) or "***" (passwords).
        self._keyring = keyring
        self._layout = KeyLayout(config.key_prefix)
        self._retrier = Retrier(client=client, retry_timeout=config.retry_timeout)
        self._closed = False
        # Last revision at which each parent was seen alive and not being deleted: a create
        # compares against it directly (one round trip); a stale entry only costs a retry.
        self._parent_revisions: dict[bytes, int] = {}
        self._documents = _DocumentCache(_DOCUMENT_CACHE_BYTES)
        self._invalid = InvalidDocuments()

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(cls, config: EtcdConfig, *, keyring: Keyring | None = None) -> Registry:
        """Open the channel and prove etcd answers (``Unavailable`` after the retry budget)."""
        client = EtcdClient(config)
        registry = cls(client=client, config=config, keyring=keyring)
        try:
            await registry.current_revision()
        except BaseException:
            await client.close()
            raise
        return registry

    async def close(self) -> None:
        """Close the channel; running watches end with ``Unavailable``."""
        self._closed = True
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def client(self) -> EtcdClient:
        """The aetcd client (leases, leader election); its channel is shared with the registry."""
        return self._client

    @property
    def config(self) -> EtcdConfig:
        return self._config

    @property
    def layout(self) -> KeyLayout:
        return self._layout

    @property
    def key_prefix(self) -> str:
        """Root of this registry's keys; ``<prefix>/leases/...`` is the framework's."""
        return self._layout.prefix

    def key_for(self, kind: Kind, key: Sequence[str]) -> str:
        return self._layout.key(kind, key)

    def invalid_documents(self) -> dict[Kind, int]:
        """Keys whose document did not decode when last read, by kind (safe from any thread).

        Reads by this process keep it current: lists and watches (kukeond watches every
        kind), reads by name, deletes.
        """
        return self._invalid.counts()

    # --- raw etcd calls ------------------------------------------------------------------

    async def _range(
        self,
        key: bytes,
        end: bytes | None = None,
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> Any:
        request = rpc.RangeRequest(
            key=key,
            range_end=end or b"",
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
        )
        return await self._client.kvstub.Range(
            request, timeout=self._config.request_timeout, metadata=self._client.metadata
        )

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._client.kvstub.Txn(
            request, timeout=self._config.request_timeout, metadata=self._client.metadata
        )

    async def _read_one(self, key: bytes, what: str) -> _Stored | None:
        async def attempt() -> _Stored | None:
            response = await self._range(key)
            if not response.kvs:
                return None
            kv = response.kvs[0]
            return self._documents.remember(key, _Stored(kv.value, kv.mod_revision))

        return await self._retrier.run(attempt, what=what, repeatable=True)

    async def current_revision(self) -> int:
        """The store's latest revision (a watch from it sees only later changes)."""

        async def attempt() -> int:
            root = self._layout.registry_root.encode()
            response = await self._range(root, range_end(root), count_only=True)
            revision: int = response.header.revision
            return revision

        return await self._retrier.run(attempt, what="read the current revision", repeatable=True)

    # --- documents -----------------------------------------------------------------------

    @staticmethod
    def _validate(document: dict[str, Any]) -> tuple[dict[str, Any], AnyResource]:
        """Validate through kukeon.api; the canonical document to store and its model."""
        try:
            parsed = parse_resource(document)
        except InvalidResource as error:
            raise Invalid.from_invalid_resource(error) from error
        canonical = to_document(parsed)
        canonical["metadata"].pop("resourceVersion", None)
        return canonical, parsed

    @staticmethod
    def _as_written(model: AnyResource, revision: int, **metadata: Any) -> AnyResource:
        """The validated model as stored at ``revision`` (no second parse of our own bytes)."""
        update = {"resource_version": str(revision), **metadata}
        return model.model_copy(update={"metadata": model.metadata.model_copy(update=update)})

    def _encode(self, document: dict[str, Any], *, label: str) -> bytes:
        data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_DOCUMENT_BYTES:
            why = f"the document is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
            raise Invalid(
                f"{label}: {why}",
                causes=[FieldError("", why)],
                kind=document.get("kind"),
                name=document.get("metadata", {}).get("name"),
            )
        return data

    def _parsed(
        self, kind: Kind, raw_key: bytes, document: dict[str, Any], revision: int
    ) -> AnyResource | str:
        """``document`` (loaded from ``raw_key``) as a resource, or why not (then recorded)."""
        key = self._layout.split(kind, raw_key)
        parsed = self._unsealed(kind, raw_key, document) or parse_document(
            document, kind=kind, key=key, revision=revision
        )
        if isinstance(parsed, str):
            self._invalid.seen(kind, raw_key, revision, parsed)
        else:
            self._invalid.valid(raw_key, revision)
        return parsed

    def _decoded(
        self, kind: Kind, raw_key: bytes, value: bytes, revision: int
    ) -> AnyResource | str:
        """The resource stored as ``value`` under ``raw_key``, or why it is not one."""
        loaded = load_document(value)
        if isinstance(loaded, str):
            # Only the registry writes, after validating: someone wrote etcd by hand.
            self._invalid.seen(kind, raw_key, revision, loaded)
            return loaded
        return self._parsed(kind, raw_key, loaded, revision)

    def _decode(self, kind: Kind, raw_key: bytes, value: bytes, revision: int) -> AnyResource:
        decoded = self._decoded(kind, raw_key, value, revision)
        if isinstance(decoded, str):
            raise self._unreadable(kind, raw_key, revision, decoded)
        return decoded

    def _last_version(self, kind: Kind, kv: Any, revision: int) -> AnyResource | None:
        """A watch event's previous version, for a DELETED event; None when not valid.

        Nothing is recorded: that version was either delivered (valid) or skipped already.
        """
        loaded = load_document(kv.value)
        if isinstance(loaded, str):
            return None
        key = self._layout.split(kind, kv.key)
        parsed = self._unsealed(kind, kv.key, loaded) or parse_document(
            loaded, kind=kind, key=key, revision=revision
        )
        return None if isinstance(parsed, str) else parsed

    def _unsealed(self, kind: Kind, raw_key: bytes, document: dict[str, Any]) -> str | None:
        """Open the sealed values of ``document`` in place; why not, when one does not open."""
        if kind not in _SEALED_KINDS:
            return None
        try:
            unseal_document(kind.value, raw_key, document, self._keyring)
        except (EncryptionError, ValueError, UnicodeDecodeError) as error:
            return f"a sealed value does not open: {error}"
        return None

    def _seal(
        self,
        kind: Kind,
        raw_key: bytes,
        canonical: dict[str, Any],
        res: AnyResource,
        stored: dict[str, Any] | None,
        label: str,
    ) -> None:
        """Seal the values ``res`` carries into ``canonical``, the document to write."""
        try:
            if isinstance(res, Secret):
                seal_secret(raw_key, canonical, res.values(), stored, self._keyring)
            elif isinstance(res, Realm):
                passwords = [entry.password for entry in res.spec.registry_credentials]
                seal_passwords(raw_key, canonical, passwords, stored, self._keyring)
        except SealingError as error:
            raise Invalid(
                f"{label}: {error.field}: {error}", causes=[FieldError(error.field, str(error))]
            ) from None

    def _written(
        self,
        kind: Kind,
        raw_key: bytes,
        model: AnyResource,
        data: bytes,
        revision: int,
        **meta: Any,
    ) -> AnyResource:
        """What a write returns: the validated model, or, for a kind with sealed values,
        the stored bytes read back (so the caller holds the values, not "***")."""
        if kind in _SEALED_KINDS:
            return self._decode(kind, raw_key, data, revision)
        return self._as_written(model, revision, **meta)

    def _unreadable(
        self, kind: Kind, raw_key: bytes, revision: int, reason: str
    ) -> InvalidStoredDocument:
        key = self._layout.split(kind, raw_key)
        where = raw_key.decode(errors="replace")
        return InvalidStoredDocument(
            f"{_label(kind, key)}: the document stored at {where} (revision {revision}) is "
            f"invalid: {reason}; lists and watches skip it; delete it or write a valid one",
            kind=kind.value,
            name=key[-1],
            key=where,
            revision=revision,
            reason=reason,
        )

    def _stored_document(self, kind: Kind, raw_key: bytes, stored: _Stored) -> dict[str, Any]:
        """The stored JSON object to merge a write into (InvalidStoredDocument if none)."""
        loaded = load_document(stored.value)
        if isinstance(loaded, str):
            self._invalid.seen(kind, raw_key, stored.mod_revision, loaded)
            raise self._unreadable(kind, raw_key, stored.mod_revision, loaded)
        return loaded

    # --- create --------------------------------------------------------------------------

    async def create(self, res: AnyResource) -> AnyResource:
        """Store a new object: AlreadyExists if the key is taken, NotFound without a live parent."""
        kind = _kind_of(res)
        key = key_of(res)
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        fresh_metadata = res.metadata.model_copy(
            update={
                "uid": str(uuid.uuid4()),
                "creation_timestamp": _now(),
                "deletion_timestamp": None,
                "generation": 1,
                "resource_version": None,
                "finalizers": self._initial_finalizers(kind, res.metadata.finalizers),
            }
        )
        document = to_document(res.model_copy(update={"metadata": fresh_metadata}))
        # The status of a new object is the controllers' to write, starting from Pending.
        document.pop("status", None)
        document, model = self._validate(document)
        self._seal(kind, raw_key, document, res, None, label)
        data = self._encode(document, label=label)
        uid = fresh_metadata.uid
        parent = parent_key(kind, key)

        parent_raw = self._layout.key(*parent).encode() if parent is not None else None

        async def attempt(parent_revision: int) -> Any:
            compare = [_compare_created(raw_key, 0)]
            failure = [_read(raw_key)]
            if parent_raw is not None:
                # -1 never matches: without a known revision the failure branch reads it.
                compare.append(_compare_modified(parent_raw, parent_revision))
                failure.append(_read(parent_raw))
            return await self._txn(compare, [_put(raw_key, data)], failure)

        for _ in range(_MAX_CAS_ROUNDS):
            parent_revision = self._parent_revisions.get(parent_raw or b"", -1)
            # Repeatable: after an in-flight failure the next round recognises its own uid.
            response = await self._retrier.run(
                functools.partial(attempt, parent_revision),
                what=f"create {label}",
                repeatable=True,
            )
            if response.succeeded:
                self._documents.remember(raw_key, _Stored(data, response.header.revision))
                return self._written(kind, raw_key, model, data, response.header.revision)
            existing = response.responses[0].response_range.kvs
            if existing:
                stored = existing[0]
                if _Stored(stored.value, stored.mod_revision).metadata.get("uid") == uid:
                    return self._decode(kind, raw_key, stored.value, stored.mod_revision)
                raise AlreadyExists(f"{label} already exists")
            if parent is None or parent_raw is None:
                continue
            self._parent_revisions.pop(parent_raw, None)
            parent_kvs = response.responses[1].response_range.kvs
            parent_label = _label(*parent)
            if not parent_kvs:
                raise NotFound(f"cannot create {label}: its {parent_label} does not exist")
            found = self._decoded(
                parent[0], parent_raw, parent_kvs[0].value, parent_kvs[0].mod_revision
            )
            if isinstance(found, str):
                raise NotFound(
                    f"cannot create {label}: the stored document of its {parent_label} is "
                    f"invalid ({found})"
                )
            if found.metadata.deletion_timestamp is not None:
                raise NotFound(f"cannot create {label}: its {parent_label} is being deleted")
            if len(self._parent_revisions) >= _PARENT_CACHE_SIZE:
                self._parent_revisions.clear()
            self._parent_revisions[parent_raw] = parent_kvs[0].mod_revision
        raise Unavailable(f"create {label}: the parent kept changing, gave up")

    @staticmethod
    def _initial_finalizers(kind: Kind, requested: Sequence[str]) -> list[str]:
        finalizers = [name for name in requested if name != CHILDREN_FINALIZER]
        if child_kinds(kind):
            finalizers.append(CHILDREN_FINALIZER)
        return finalizers

    # --- read ----------------------------------------------------------------------------

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"get {label}")
        if stored is None:
            raise NotFound(f"{label} not found")
        return self._decode(kind, raw_key, stored.value, stored.mod_revision)

    async def list(
        self,
        kind: Kind,
        scope: tuple[str, ...] = (),
        *,
        label_selector: str | None = None,
    ) -> ResourceList:
        """Every ``kind`` under ``scope`` (all parents when empty), read at one revision."""
        selector = parse_selector(label_selector)
        prefix = self._layout.scope_prefix(kind, scope).encode()
        end = range_end(prefix)

        async def attempt() -> ResourceList:
            items: list[AnyResource] = []
            invalid: set[bytes] = set()
            revision = 0
            start = prefix
            while True:
                try:
                    response = await self._range(
                        start, end, revision=revision, limit=LIST_PAGE_SIZE
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.OUT_OF_RANGE and revision:
                        # Compacted between two pages: start over at a new snapshot.
                        items, invalid, revision, start = [], set(), 0, prefix
                        continue
                    raise
                if not revision:
                    revision = response.header.revision
                for kv in response.kvs:
                    item = self._listed(kind, kv, selector)
                    if isinstance(item, str):
                        invalid.add(kv.key)
                    elif item is not None:
                        items.append(item)
                if not response.more or not response.kvs:
                    if label_selector is None:
                        self._invalid.listed(prefix, end, invalid, revision)
                    return ResourceList(items, revision)
                start = response.kvs[-1].key + b"\0"

        what = f"list {kind.value} under {display_name(scope) or 'all parents'}"
        return await self._retrier.run(attempt, what=what, repeatable=True)

    def _listed(self, kind: Kind, kv: Any, selector: LabelSelector) -> AnyResource | str | None:
        """One listed document: the resource, None when the selector leaves it out, or why
        it is invalid (then it is skipped: one bad document must not fail the whole list)."""
        loaded = load_document(kv.value)
        if isinstance(loaded, str):
            self._invalid.seen(kind, kv.key, kv.mod_revision, loaded)
            return loaded
        labels = loaded["metadata"].get("labels")
        # Labels of the wrong type are left to the parse, which says what is wrong.
        if (labels is None or isinstance(labels, dict)) and not selector.matches(labels):
            return None
        parsed = self._parsed(kind, kv.key, loaded, kv.mod_revision)
        if not isinstance(parsed, str):
            self._documents.remember(kv.key, _Stored(kv.value, kv.mod_revision))
        return parsed

    # --- update --------------------------------------------------------------------------

    def _expected_revision(self, res: AnyResource, label: str) -> int:
        raw = res.metadata.resource_version
        if not raw:
            raise Invalid(
                f"{label}: metadata.resourceVersion is required to update",
                causes=[FieldError("metadata.resourceVersion", "required for an update")],
            )
        try:
            return int(raw)
        except ValueError:
            raise Invalid(
                f"{label}: metadata.resourceVersion {raw!r} is not a revision",
                causes=[FieldError("metadata.resourceVersion", "must be an integer")],
            ) from None

    async def _current(self, kind: Kind, key: Sequence[str], expected: int, op: str) -> _Stored:
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        cached = self._documents.at(raw_key, expected)
        if cached is not None:
            return cached
        stored = await self._read_one(raw_key, f"{op} {label}")
        if stored is None:
            raise NotFound(f"{label} not found")
        if stored.mod_revision != expected:
            raise Conflict(
                f"{label} was modified: resourceVersion {expected} is stale, "
                f"the current one is {stored.mod_revision}; read it again and retry"
            )
        return stored

    async def update(self, res: AnyResource) -> AnyResource:
        """Write spec and metadata (labels, annotations, finalizers); keep the stored status.

        ``generation`` goes up only when the spec changed. An object being deleted whose
        last finalizer this update drops is removed; the returned object is its last state.
        """
        kind = _kind_of(res)
        key = key_of(res)
        label = _label(kind, key)
        expected = self._expected_revision(res, label)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._current(kind, key, expected, "update")
        stored_document = self._stored_document(kind, raw_key, stored)
        stored_metadata: dict[str, Any] = stored_document["metadata"]
        stored_finalizers: list[str] = stored_metadata.get("finalizers") or []
        finalizers = [f for f in res.metadata.finalizers if f != CHILDREN_FINALIZER]
        if CHILDREN_FINALIZER in stored_finalizers:
            finalizers.append(CHILDREN_FINALIZER)
        deleting = bool(stored_metadata.get("deletionTimestamp"))
        if deleting:
            added = set(finalizers) - set(stored_finalizers)
            if added:
                raise self._no_new_finalizers(label, sorted(added))
        given = to_document(res)
        metadata = dict(stored_metadata)
        metadata["labels"] = given["metadata"].get("labels", {})
        metadata["annotations"] = given["metadata"].get("annotations", {})
        metadata["finalizers"] = finalizers
        document = {**stored_document, "metadata": metadata, "spec": given.get("spec")}
        if kind == Kind.SECRET:
            # A Secret has no spec; its body is its type and (sealed below) its values.
            document = {**validation_copy(kind.value, stored_document), "metadata": metadata}
            document.pop("spec", None)
            document["type"] = given.get("type", "Opaque")
        document, model = self._validate(document)
        self._seal(kind, raw_key, document, res, stored_document, label)
        generation: int = stored_metadata.get("generation", 1)
        if document.get("spec") != stored_document.get("spec") or (
            kind == Kind.SECRET and document.get("status") != stored_document.get("status")
        ):
            generation += 1
            document["metadata"]["generation"] = generation
        data = self._encode(document, label=label)
        if data == stored.value:
            return self._decode(kind, raw_key, stored.value, stored.mod_revision)
        revision = await self._compare_and_write(
            kind, key, stored, data, remove=deleting and not finalizers, op="update"
        )
        if deleting and not finalizers:
            return self._as_written(model, revision, generation=generation)
        return self._written(kind, raw_key, model, data, revision, generation=generation)

    async def update_status(self, res: AnyResource) -> AnyResource:
        """Write status only (CAS on resourceVersion); spec, metadata and generation stay."""
        kind = _kind_of(res)
        key = key_of(res)
        label = _label(kind, key)
        expected = self._expected_revision(res, label)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._current(kind, key, expected, "update status of")
        stored_document = self._stored_document(kind, raw_key, stored)
        if kind == Kind.SECRET:
            why = "a Secret's status (its keys, sizes and digests) is written by the registry"
            raise Invalid(f"{label}: {why}", causes=[FieldError("status", why)])
        status = res.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        document, model = self._validate(
            {**validation_copy(kind.value, stored_document), "status": status}
        )
        if kind in _SEALED_KINDS:
            restore_sealed(kind.value, document, stored_document)
        data = self._encode(document, label=label)
        if data == stored.value:
            return self._decode(kind, raw_key, stored.value, stored.mod_revision)
        revision = await self._compare_and_write(
            kind, key, stored, data, remove=False, op="update status of"
        )
        return self._written(kind, raw_key, model, data, revision)

    async def _compare_and_write(
        self,
        kind: Kind,
        key: Sequence[str],
        stored: _Stored,
        data: bytes,
        *,
        remove: bool,
        op: str,
    ) -> int:
        """Put ``data`` (or delete the key) if it is still at ``stored.mod_revision``.

        Not repeatable after an in-flight failure: the caller's resourceVersion is the
        compare, and only the caller can decide again (``OutcomeUnknown``).
        """
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()

        async def attempt() -> Any:
            compare = [_compare_modified(raw_key, stored.mod_revision)]
            write = _delete(raw_key) if remove else _put(raw_key, data)
            return await self._txn(compare, [write], [_read(raw_key)])

        response = await self._retrier.run(attempt, what=f"{op} {label}", repeatable=False)
        if not response.succeeded:
            self._documents.forget(raw_key)
            current = response.responses[0].response_range.kvs
            if not current:
                raise NotFound(f"{label} not found")
            raise Conflict(
                f"{label} was modified: resourceVersion {stored.mod_revision} is stale, "
                f"the current one is {current[0].mod_revision}; read it again and retry"
            )
        revision: int = response.header.revision
        if remove:
            self._documents.forget(raw_key)
            await self._after_removal(kind, key)
        else:
            self._documents.remember(raw_key, _Stored(data, revision))
        return revision

    # --- finalizers and deletion ---------------------------------------------------------

    @staticmethod
    def _no_new_finalizers(label: str, names: Sequence[str]) -> Invalid:
        why = f"cannot add finalizer(s) {', '.join(names)}: the object is being deleted"
        return Invalid(f"{label}: {why}", causes=[FieldError("metadata.finalizers", why)])

    async def _cas_loop(
        self,
        kind: Kind,
        key: Sequence[str],
        op: str,
        decide: _Decide,
    ) -> AnyResource | None:
        """Read, decide, compare-and-swap; again whenever the compare is lost."""
        for _ in range(_MAX_CAS_ROUNDS):
            result = await self._cas_once(kind, key, op, decide)
            if not isinstance(result, _Lost):
                return result
        raise Unavailable(f"{op} {_label(kind, key)}: the object kept changing, gave up")

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        label = _label(kind, key)
        if await self._read_one(self._layout.key(kind, key).encode(), f"read {label}") is None:
            raise NotFound(f"{label} not found")

        def decide(current: AnyResource, stored: _Stored) -> tuple[Any, list[Any]]:
            if name in current.metadata.finalizers:
                return "keep", []
            if current.metadata.deletion_timestamp is not None:
                raise self._no_new_finalizers(label, [name])
            document = json.loads(stored.value)
            document["metadata"]["finalizers"] = [*current.metadata.finalizers, name]
            return document, []

        return await self._cas_loop(kind, key, f"add finalizer {name!r} to", decide)

    async def remove_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        """Drop ``name``; an object being deleted goes once its last finalizer is gone (None)."""
        label = _label(kind, key)
        if name == CHILDREN_FINALIZER:
            why = f"{CHILDREN_FINALIZER} is released by the registry when no children remain"
            raise Invalid(f"{label}: {why}", causes=[FieldError("metadata.finalizers", why)])

        def decide(current: AnyResource, stored: _Stored) -> tuple[Any, list[Any]]:
            if name not in current.metadata.finalizers:
                return "keep", []
            remaining = [f for f in current.metadata.finalizers if f != name]
            if current.metadata.deletion_timestamp is not None and not remaining:
                return None, []
            document = json.loads(stored.value)
            document["metadata"]["finalizers"] = remaining
            return document, []

        return await self._cas_loop(kind, key, f"remove finalizer {name!r} from", decide)

    async def _children(self, kind: Kind, key: Sequence[str]) -> _Children:
        children: _Children = []
        for child_kind, prefix in self._layout.children_prefixes(kind, key):
            raw = prefix.encode()

            async def attempt(raw: bytes = raw) -> Any:
                return await self._range(raw, range_end(raw), keys_only=True)

            response = await self._retrier.run(
                attempt, what=f"list children of {_label(kind, key)}", repeatable=True
            )
            children.extend(
                (child_kind, self._layout.split(child_kind, kv.key)) for kv in response.kvs
            )
        return children

    async def _has_children(self, kind: Kind, key: Sequence[str]) -> bool:
        """Whether any direct child exists: one key read per child kind, never the list (a
        release after each of 5,000 removals must not read 5,000 keys each time)."""
        for _, prefix in self._layout.children_prefixes(kind, key):
            raw = prefix.encode()

            async def attempt(raw: bytes = raw) -> Any:
                return await self._range(raw, range_end(raw), keys_only=True, limit=1)

            response = await self._retrier.run(
                attempt, what=f"look for children of {_label(kind, key)}", repeatable=True
            )
            if response.kvs:
                return True
        return False

    def _no_children_compares(self, kind: Kind, key: Sequence[str]) -> _Compares:
        compares: _Compares = []
        for _, prefix in self._layout.children_prefixes(kind, key):
            raw = prefix.encode()
            compares.append(_compare_created(raw, 0, range_end(raw)))
        return compares

    async def delete(
        self,
        kind: Kind,
        key: tuple[str, ...],
        *,
        cascade: bool = False,
        background: bool = False,
    ) -> AnyResource | None:
        """Mark the object deleted; it goes when its finalizers are empty (then None).

        With children: refused (``ChildrenExist``) unless ``cascade``, which marks the
        object first (no new child can be created under it), deletes the children depth
        first, and releases ``kukeon.io/children`` once none remain. Children still held by
        their own finalizers keep the parent pending; the last one to go releases it.

        ``background`` (with ``cascade``) only marks the object and returns: kukeond's
        cascade (:meth:`continue_cascade`, run by its leader) deletes the children, however
        many, and survives restarts, since the mark is all it needs to know.
        """
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"delete {label}")
        if stored is None:
            raise NotFound(f"{label} not found")
        for _ in range(_MAX_CAS_ROUNDS):
            if stored is None:
                return None
            if not isinstance(self._decoded(kind, raw_key, stored.value, stored.mod_revision), str):
                break
            if await self._remove_invalid(kind, key, stored, cascade=cascade):
                return None
            stored = await self._read_one(raw_key, f"delete {label}")

        if not cascade:
            return await self._delete_childless(kind, key)

        def mark(current: AnyResource, stored: _Stored) -> tuple[Any, list[Any]]:
            if current.metadata.deletion_timestamp is not None:
                return "keep", []
            document = json.loads(stored.value)
            document["metadata"]["deletionTimestamp"] = _now().isoformat()
            return document, []

        if await self._cas_loop(kind, key, "mark for deletion", mark) is None:
            return None
        if background:
            return await self._release_children(kind, key)  # gone now if nothing holds it
        children = await self._children(kind, key)
        for start in range(0, len(children), _CASCADE_BATCH):
            # Siblings go in parallel; each subtree is finished before its parent is released.
            await asyncio.gather(
                *(
                    self._delete_quietly(child_kind, child_key)
                    for child_kind, child_key in children[start : start + _CASCADE_BATCH]
                )
            )
        return await self._release_children(kind, key)

    async def continue_cascade(self, kind: Kind, key: tuple[str, ...]) -> int:
        """One step of a server-side cascade under a parent marked for deletion: each
        direct child not marked yet is deleted (a realm's spaces and a space's stacks are
        marked in the background in turn, cells are deleted as by a user), and the parent
        is released once none remain. Returns how many children were there.
        """
        left = 0
        for child_kind, _prefix in self._layout.children_prefixes(kind, key):
            listed = await self.list(child_kind, tuple(key))
            left += len(listed.items)
            pending = [c for c in listed.items if c.metadata.deletion_timestamp is None]
            for start in range(0, len(pending), _CASCADE_BATCH):
                await asyncio.gather(
                    *(
                        self._cascade_child(child_kind, key_of(child))
                        for child in pending[start : start + _CASCADE_BATCH]
                    )
                )
        await self._release_children(kind, key)
        return left

    async def _cascade_child(self, kind: Kind, key: tuple[str, ...]) -> None:
        with contextlib.suppress(NotFound):
            await self.delete(kind, key, cascade=kind != Kind.CELL, background=True)

    async def _remove_invalid(
        self, kind: Kind, key: tuple[str, ...], stored: _Stored, *, cascade: bool
    ) -> bool:
        """Remove a key whose document does not decode (no finalizer in it can be read).

        Children are deleted first with ``cascade``, else refused as for any object. False
        when the key changed meanwhile (the caller reads it again and decides again).
        """
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        if cascade:
            children = await self._children(kind, key)
            for start in range(0, len(children), _CASCADE_BATCH):
                await asyncio.gather(
                    *(
                        self._delete_quietly(child_kind, child_key)
                        for child_kind, child_key in children[start : start + _CASCADE_BATCH]
                    )
                )
        children = await self._children(kind, key)
        if children:
            raise self._children_exist(label, children)
        no_children = self._no_children_compares(kind, key)

        async def attempt() -> Any:
            compare = [_compare_modified(raw_key, stored.mod_revision), *no_children]
            return await self._txn(compare, [_delete(raw_key)], [])

        # Repeatable: after an in-flight failure the compare fails and the caller re-reads.
        response = await self._retrier.run(attempt, what=f"delete {label}", repeatable=True)
        if not response.succeeded:
            return False
        log.warning(
            "removed the invalid %s document at %s (revision %d)",
            kind.value,
            raw_key.decode(errors="replace"),
            stored.mod_revision,
        )
        self._documents.forget(raw_key)
        self._invalid.valid(raw_key, response.header.revision)
        await self._after_removal(kind, key)
        return True

    @staticmethod
    def _children_exist(label: str, children: _Children) -> ChildrenExist:
        names = [_label(k, n) for k, n in children[:_CHILDREN_NAMED_IN_ERRORS]]
        more = len(children) - len(names)
        listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
        return ChildrenExist(
            f"cannot delete {label}: it still has {len(children)} child object(s): "
            f"{listed}; delete them first or ask for a cascading delete",
            children=[display_name(n) for _, n in children],
        )

    async def _delete_quietly(self, kind: Kind, key: tuple[str, ...]) -> None:
        with contextlib.suppress(NotFound):
            await self.delete(kind, key, cascade=True)

    async def _delete_childless(self, kind: Kind, key: tuple[str, ...]) -> AnyResource | None:
        label = _label(kind, key)
        no_children = self._no_children_compares(kind, key)

        for _ in range(_MAX_CAS_ROUNDS):
            children = (
                await self._children(kind, key) if await self._has_children(kind, key) else []
            )
            if children:
                raw_key = self._layout.key(kind, key).encode()
                stored = await self._read_one(raw_key, label)
                if stored is None:
                    return None
                current = self._decode(kind, raw_key, stored.value, stored.mod_revision)
                if current.metadata.deletion_timestamp is not None:
                    # Already being deleted (a cascade in progress): nothing to refuse.
                    return current
                raise self._children_exist(label, children)

            def decide(current: AnyResource, stored: _Stored) -> tuple[Any, list[Any]]:
                remaining = [f for f in current.metadata.finalizers if f != CHILDREN_FINALIZER]
                if not remaining:
                    return None, no_children
                document = json.loads(stored.value)
                document["metadata"]["finalizers"] = remaining
                if not document["metadata"].get("deletionTimestamp"):
                    document["metadata"]["deletionTimestamp"] = _now().isoformat()
                if document == json.loads(stored.value):
                    return "keep", []
                return document, no_children

            result = await self._cas_once(kind, key, "delete", decide)
            if not isinstance(result, _Lost):
                return result
            # Lost the compare: a child appeared or the object changed; decide again.
        raise Unavailable(f"delete {label}: the object kept changing, gave up")

    async def _cas_once(
        self, kind: Kind, key: Sequence[str], op: str, decide: _Decide
    ) -> AnyResource | _Lost | None:
        """One read-decide-CAS round; returns ``_Lost.LOST`` when the compare failed."""
        label = _label(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"{op} {label}")
        if stored is None:
            return None
        current = self._decode(kind, raw_key, stored.value, stored.mod_revision)
        outcome, extra_compare = decide(current, stored)
        if outcome == "keep":
            return current
        remove = outcome is None
        data = b"" if remove else self._encode(outcome, label=label)

        async def attempt() -> Any:
            compare = [_compare_modified(raw_key, stored.mod_revision), *extra_compare]
            return await self._txn(
                compare, [_delete(raw_key) if remove else _put(raw_key, data)], []
            )

        response = await self._retrier.run(attempt, what=f"{op} {label}", repeatable=True)
        if not response.succeeded:
            return _Lost.LOST
        if remove:
            self._documents.forget(raw_key)
            await self._after_removal(kind, key)
            return None
        self._documents.remember(raw_key, _Stored(data, response.header.revision))
        return self._decode(kind, raw_key, data, response.header.revision)

    async def _release_children(self, kind: Kind, key: Sequence[str]) -> AnyResource | None:
        """Drop ``kukeon.io/children`` from a deleting parent whose children are all gone."""
        no_children = self._no_children_compares(kind, key)
        for _ in range(_MAX_CAS_ROUNDS):
            if await self._has_children(kind, key):
                raw_key = self._layout.key(kind, key).encode()
                stored = await self._read_one(raw_key, "read")
                if stored is None:
                    return None
                return self._decode(kind, raw_key, stored.value, stored.mod_revision)

            def decide(current: AnyResource, stored: _Stored) -> tuple[Any, list[Any]]:
                if current.metadata.deletion_timestamp is None:
                    return "keep", []
                remaining = [f for f in current.metadata.finalizers if f != CHILDREN_FINALIZER]
                if not remaining:
                    return None, no_children
                if remaining == current.metadata.finalizers:
                    return "keep", []
                document = json.loads(stored.value)
                document["metadata"]["finalizers"] = remaining
                return document, no_children

            result = await self._cas_once(kind, key, "release children finalizer of", decide)
            if not isinstance(result, _Lost):
                return result
        raise Unavailable(f"release {_label(kind, key)}: the object kept changing, gave up")

    async def _after_removal(self, kind: Kind, key: Sequence[str]) -> None:
        """A removed child may have been the last one holding a deleting parent."""
        parent = parent_key(kind, key)
        if parent is None:
            return
        parent_kind, parent_names = parent
        stored = await self._read_one(
            self._layout.key(parent_kind, parent_names).encode(), "read parent"
        )
        if stored is None or not stored.metadata.get("deletionTimestamp"):
            return
        await self._release_children(parent_kind, parent_names)

    # --- encryption keys ------------------------------------------------------------------

    @property
    def keyring(self) -> Keyring | None:
        return self._keyring

    async def _sealed_keys(self) -> _SealedKeys:
        found: _SealedKeys = []
        for kind in _SEALED_KINDS:
            prefix = self._layout.kind_prefix(kind).encode()

            async def attempt(prefix: bytes = prefix) -> Any:
                return await self._range(prefix, range_end(prefix), keys_only=True)

            response = await self._retrier.run(
                attempt, what=f"list {kind.value} keys", repeatable=True
            )
            found.extend((kind, kv.key) for kv in response.kvs)
        return found

    async def reseal(self) -> tuple[int, _Failures]:
        """Seal every stored value again under the keyring's current key (a key rotation).

        Each document is rewritten by compare-and-swap (a concurrent write makes it read
        and seal again), and only its envelopes change: no spec, status, generation or
        value does, so no controller sees a change to act on. Readers keep working
        throughout, as they open any key of the file. Returns how many documents were
        rewritten and the keys whose values could not be opened (left as they were).
        """
        keyring = self._keyring
        if keyring is None:
            raise Invalid("this registry has no encryption key: nothing can be sealed again")
        rewritten = 0
        failed: _Failures = []
        for kind, raw_key in await self._sealed_keys():
            for _ in range(_MAX_CAS_ROUNDS):
                stored = await self._read_one(raw_key, f"read {raw_key.decode()}")
                if stored is None:
                    break
                document = load_document(stored.value)
                if isinstance(document, str):
                    failed.append(f"{raw_key.decode()}: {document}")
                    break
                try:
                    changed = reseal_document(kind.value, raw_key, document, keyring)
                except EncryptionError as error:
                    failed.append(f"{raw_key.decode()}: {error}")
                    break
                if not changed:
                    break
                data = self._encode(document, label=raw_key.decode())

                async def attempt(
                    stored: _Stored = stored, data: bytes = data, raw_key: bytes = raw_key
                ) -> Any:
                    compare = [_compare_modified(raw_key, stored.mod_revision)]
                    return await self._txn(compare, [_put(raw_key, data)], [])

                response = await self._retrier.run(
                    attempt, what=f"seal {raw_key.decode()} again", repeatable=True
                )
                if response.succeeded:
                    self._documents.remember(raw_key, _Stored(data, response.header.revision))
                    rewritten += 1
                    break
        return rewritten, failed

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many stored documents carry values sealed under each key id."""
        counts: dict[str, int] = {}
        for kind, raw_key in await self._sealed_keys():
            stored = await self._read_one(raw_key, f"read {raw_key.decode()}")
            document = load_document(stored.value) if stored is not None else "gone"
            if isinstance(document, str):
                continue
            for key_id in key_ids_in(kind.value, raw_key, document):
                counts[key_id] = counts.get(key_id, 0) + 1
        return counts

    # --- watch ---------------------------------------------------------------------------

    async def watch(
        self,
        kind: Kind,
        scope: tuple[str, ...] = (),
        *,
        resource_version: int,
    ) -> AsyncIterator[WatchEvent]:
        """Every change of ``kind`` under ``scope`` with revision > ``resource_version``.

        Survives a killed member or a leader change: the stream is opened again from the
        revision after the last one delivered, so nothing is lost or repeated. Raises
        ``Gone`` when etcd no longer has that history (relist, then watch from the list's
        resourceVersion) and ``Unavailable`` when etcd stays unreachable for the retry budget.
        """
        prefix = self._layout.scope_prefix(kind, scope).encode()
        end = range_end(prefix)
        next_revision = resource_version + 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.retry_timeout
        delay = 0.05
        while True:
            stream = self._watch_stream(kind, prefix, end, next_revision)
            try:
                async for batch in stream:
                    deadline = loop.time() + self._config.retry_timeout
                    delay = 0.05
                    for event in batch:
                        yield event
                    next_revision = batch[-1].revision + 1
            except grpc.aio.AioRpcError as error:
                if not is_transient(error) and error.code() != grpc.StatusCode.CANCELLED:
                    raise StoreError(
                        f"watch {kind.value}: etcd refused the stream ({error.details()})"
                    ) from error
                reason = f"{error.code().name}: {error.details()}"
            except (_WatchStreamEndedError, TimeoutError) as error:
                reason = str(error) or repr(error)
            finally:
                await stream.aclose()
            if self._closed:
                raise Unavailable(f"watch {kind.value}: the registry was closed")
            if loop.time() + delay > deadline:
                raise Unavailable(
                    f"watch {kind.value}: etcd unreachable for {self._config.retry_timeout:g}s "
                    f"({reason})"
                )
            log.info("watch %s resumes from revision %d (%s)", kind.value, next_revision, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _watch_stream(
        self, kind: Kind, prefix: bytes, end: bytes, start_revision: int
    ) -> AsyncGenerator[_Batch, None]:
        """One gRPC watch stream; yields the decoded events of each response."""
        await self._client.connect()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=prefix, range_end=end, start_revision=start_revision, prev_kv=True
            )
        )
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield create
            await stop.wait()

        call = self._client.watchstub.Watch(requests(), metadata=self._client.metadata)
        responses = call.__aiter__()
        try:
            while True:
                response = await self._next_response(responses)
                if response.compact_revision:
                    raise Gone(
                        f"watch from revision {start_revision}: etcd compacted its history up "
                        f"to revision {response.compact_revision}; list again and watch from "
                        "the list's resourceVersion",
                        compacted_revision=response.compact_revision,
                    )
                if response.canceled:
                    raise _WatchStreamEndedError(f"cancelled by etcd: {response.cancel_reason}")
                decoded = [self._watch_event(kind, event) for event in response.events]
                batch = [event for event in decoded if event is not None]
                if batch:
                    yield batch
        finally:
            stop.set()
            call.cancel()

    @staticmethod
    async def _next_response(responses: AsyncIterator[Any]) -> Any:
        try:
            return await anext(responses)
        except StopAsyncIteration:
            raise _WatchStreamEndedError("etcd closed the watch stream") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled, not just the gRPC call
            # grpc.aio cancels the call when the channel closes or is reset.
            raise _WatchStreamEndedError("the watch call was cancelled") from None

    def _watch_event(self, kind: Kind, event: Any) -> WatchEvent | None:
        """The event as a watcher sees it; None for a change it must not see.

        Invalid documents do not exist for a watcher (as for a list): an object whose new
        version is invalid is DELETED (with its last valid version), one whose invalid
        version becomes valid is ADDED, and changes between invalid versions are skipped.
        """
        kv = event.kv
        previous = event.prev_kv if event.HasField("prev_kv") else None
        if event.type == rpc.Event.EventType.DELETE:
            if previous is None:
                raise Gone(
                    f"the last state of deleted {kv.key.decode()!r} is compacted; list again",
                    compacted_revision=kv.mod_revision,
                )
            self._documents.forget(kv.key)
            was_invalid = self._invalid.was_invalid(kv.key, previous.mod_revision)
            last = None if was_invalid else self._last_version(kind, previous, kv.mod_revision)
            self._invalid.valid(kv.key, kv.mod_revision)
            if last is None:
                return None  # never delivered: nothing to delete for the watcher
            return WatchEvent("DELETED", last, kv.mod_revision)
        created = kv.create_revision == kv.mod_revision
        was_invalid = previous is not None and self._invalid.was_invalid(
            kv.key, previous.mod_revision
        )
        current = self._decoded(kind, kv.key, kv.value, kv.mod_revision)
        if isinstance(current, str):
            self._documents.forget(kv.key)
            if created or previous is None or was_invalid:
                return None
            # The watcher holds the previous version: to it the object is gone now.
            last = self._last_version(kind, previous, kv.mod_revision)
            if last is None:
                return None
            return WatchEvent("DELETED", last, kv.mod_revision)
        # Controllers update what they were just told about: spare them the read.
        self._documents.remember(kv.key, _Stored(kv.value, kv.mod_revision))
        kind_of_change: Literal["ADDED", "MODIFIED"] = (
            "ADDED" if created or was_invalid else "MODIFIED"
        )
        return WatchEvent(kind_of_change, current, kv.mod_revision)
