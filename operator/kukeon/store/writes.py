"""Writes of the registry: create, update (spec and metadata) and update_status.

A create compares the key as absent and its parent as alive at the revision last seen so
(``_parent_revisions``); an update compares the caller's ``resourceVersion`` and merges
into the stored document (status kept, or only status written), from the document cache
when it holds that exact revision. A write that leaves the stored bytes as they are is no
write at all (no new revision, no watch event).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple

from kukeon.api import AnyResource, FieldError, Kind, key_of, to_document

from .codec import SEALED_KINDS, ValidatedDump, label_of
from .deletion import CHILDREN_FINALIZER, RegistryDeletion
from .encryption import restore_sealed, validation_copy
from .errors import AlreadyExists, Conflict, Invalid, NotFound, Unavailable
from .keys import child_kinds, parent_key
from .quotaserial import NULL_SLOT, Guard, QuotaSlot
from .realmquota import counts_against_quota
from .registrybase import MAX_CAS_ROUNDS, utc_now
from .txn import (
    Stored,
    compare_created,
    compare_modified,
    delete_op,
    put_op,
    read_op,
)

_PARENT_CACHE_SIZE = 4096


class _Merged(NamedTuple):
    """What an update writes."""

    model: AnyResource
    data: bytes
    generation: int
    remove: bool
    """The object is being deleted and this update drops its last finalizer."""


def _kind_of(res: AnyResource) -> Kind:
    return Kind(res.kind)


@functools.cache  # the kind table never changes
def _has_children(kind: Kind) -> bool:
    return bool(child_kinds(kind))


def _spec_moved(document: dict[str, Any], stored: dict[str, Any], placement: bool) -> bool:
    """Whether the spec changed; for a ``placement``, apart from its ``nodeName``."""
    spec, before = document.get("spec"), stored.get("spec")
    if placement and isinstance(spec, dict) and isinstance(before, dict):
        spec = {k: v for k, v in spec.items() if k != "nodeName"}
        before = {k: v for k, v in before.items() if k != "nodeName"}
    return spec != before


class RegistryWrites(RegistryDeletion):
    """create, update and update_status, each one compare-and-swap transaction."""

    async def create(
        self, res: AnyResource, *, validated: ValidatedDump | None = None
    ) -> AnyResource:
        """Store a new object: AlreadyExists if the key is taken, NotFound without a live parent.

        ``validated``: the proof that ``res`` is a model ``parse_resource`` returned, unchanged
        since (the API server's parse of the request): then only the registry's own metadata
        is validated again. The caller hands ``res`` over: it is kept as the stored version.
        """
        kind = _kind_of(res)
        key = key_of(res)
        label = label_of(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        model, data, uid = self._new_document(kind, raw_key, res, label, validated)
        size = len(raw_key) + len(data)
        hold = self._quota_hold(kind, key, objects=1, size=size, label=label, creates=raw_key)
        async with hold as slot:
            created = await self._create_rounds(kind, key, raw_key, model, data, uid, slot)
            if self._quotas is not None and created.metadata.resource_version:
                self._quotas.assume(raw_key, data, int(created.metadata.resource_version))
            return created

    def _quota_hold(
        self,
        kind: Kind,
        key: Sequence[str],
        *,
        objects: int,
        size: int,
        label: str,
        creates: bytes | None = None,
    ) -> AbstractAsyncContextManager[QuotaSlot]:
        """The realm's quota held for one write (``realmquota``); nothing without quotas,
        for a kind no realm's quota counts, or for a write that charges nothing (it needs
        neither a check nor the realm's serial: a late-seen shrink only refuses early)."""
        if self._quotas is None or not counts_against_quota(kind) or (objects, size) == (0, 0):
            return contextlib.nullcontext(NULL_SLOT)
        # A space's create counts against `spec.quota.spaces` too (its subnets).
        spaces = 1 if kind == Kind.SPACE and creates is not None else 0
        return self._quotas.reserve(
            key[0], objects=objects, storage_bytes=size, label=label, creates=creates, spaces=spaces
        )

    async def _create_rounds(
        self,
        kind: Kind,
        key: tuple[str, ...],
        raw_key: bytes,
        model: AnyResource,
        data: bytes,
        uid: str,
        slot: QuotaSlot,
    ) -> AnyResource:
        """The create's transaction, again while the parent's revision it compared is stale
        or another node's write to the realm came first (the realm's serial, ``slot``)."""
        label = label_of(kind, key)
        parent = parent_key(kind, key)

        parent_raw = self._layout.key(*parent).encode() if parent is not None else None

        async def attempt(parent_revision: int, guard: Guard) -> Any:
            compare = [compare_created(raw_key, 0), *guard.compares]
            failure = [read_op(raw_key)]
            if parent_raw is not None:
                # -1 never matches: without a known revision the failure branch reads it.
                compare.append(compare_modified(parent_raw, parent_revision))
                failure.append(read_op(parent_raw))
            success = [put_op(raw_key, data), *guard.success]
            return await self._txn(compare, success, [*failure, *guard.failure])

        for _ in range(MAX_CAS_ROUNDS):
            parent_revision = self._parent_revisions.get(parent_raw or b"", -1)
            async with slot.attempt() as guard:
                # Repeatable: after an in-flight failure the next round recognises its own
                # uid (and the serial its own token).
                response = await self._retrier.run(
                    functools.partial(attempt, parent_revision, guard),
                    what=f"create {label}",
                    repeatable=True,
                )
                behind = slot.settle(guard, response)
            if response.succeeded:
                self._documents.remember(raw_key, Stored(data, response.header.revision))
                return self._codec.written(kind, raw_key, model, data, response.header.revision)
            existing = response.responses[0].response_range.kvs
            if existing:
                stored = existing[0]
                if Stored(stored.value, stored.mod_revision).metadata.get("uid") == uid:
                    return self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)
                raise AlreadyExists(f"{label} already exists")
            if behind is not None:
                await slot.catch_up(behind)  # the next round checks the quota again
            if parent is None or parent_raw is None:
                continue
            self._parent_revisions.pop(parent_raw, None)
            parent_kvs = response.responses[1].response_range.kvs
            parent_label = label_of(*parent)
            if not parent_kvs:
                raise NotFound(f"cannot create {label}: its {parent_label} does not exist")
            found = self._codec.decoded(
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

    def _new_document(
        self,
        kind: Kind,
        raw_key: bytes,
        res: AnyResource,
        label: str,
        validated: ValidatedDump | None,
    ) -> tuple[AnyResource, bytes, str]:
        """The validated model, stored bytes and uid of a new object.

        Apart, so that nothing else of the work (dict trees) outlives it: a write holds
        what it keeps across its round trip, and with many in flight that is promoted
        into the older GC generations, whose full collections then cost the most.
        """
        uid = str(uuid.uuid4())
        created = utc_now()
        finalizers = self._initial_finalizers(kind, res.metadata.finalizers)
        if kind not in SEALED_KINDS and validated is not None and validated.proves(res):
            fresh = self._codec.new_object(res, uid=uid, created=created, finalizers=finalizers)
            if fresh is not None:
                return fresh, self._codec.encode_model(fresh, label=label), uid
        # The registry's own metadata goes into the document itself (validated just below
        # with the rest): no copy of the model to dump.
        document = to_document(res)
        metadata: dict[str, Any] = document["metadata"]
        metadata.pop("deletionTimestamp", None)
        metadata.pop("deletionGracePeriodSeconds", None)
        metadata.pop("resourceVersion", None)
        metadata["uid"] = uid
        metadata["creationTimestamp"] = created.isoformat()
        metadata["generation"] = 1
        metadata["finalizers"] = finalizers
        # The status of a new object is the controllers' to write, starting from Pending.
        document.pop("status", None)
        if kind not in SEALED_KINDS:
            model = self._codec.validated(document)
            return model, self._codec.encode_model(model, label=label), uid
        document, model = self._codec.validate(document)
        self._codec.seal(kind, raw_key, document, res, None, label)
        return model, self._codec.encode(document, label=label), uid

    @staticmethod
    def _initial_finalizers(kind: Kind, requested: Sequence[str]) -> list[str]:
        finalizers = [name for name in requested if name != CHILDREN_FINALIZER]
        if _has_children(kind):
            finalizers.append(CHILDREN_FINALIZER)
        return finalizers

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

    async def _current(self, raw_key: bytes, label: str, expected: int, op: str) -> Stored:
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

    async def update(
        self, res: AnyResource, *, charged: bool = False, placement: bool = False
    ) -> AnyResource:
        """Write spec and metadata (labels, annotations, finalizers); keep the stored status.

        ``generation`` goes up only when the spec changed. An object being deleted whose
        last finalizer this update drops is removed; the returned object is its last state.
        ``charged``: a user's write (the API's), refused when what it adds to the document
        does not fit the realm's quota; kukeond's own (bindings, finalizers) always pass.
        ``placement``: kukeond placing a cell (the scheduler's binding, a cell handed back to
        it): a change of ``spec.nodeName`` alone leaves ``generation`` as it is, as a pod's
        binding subresource does, since nobody changed what the cell should be.
        """
        kind = _kind_of(res)
        key = key_of(res)
        label = label_of(kind, key)
        expected = self._expected_revision(res, label)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._current(raw_key, label, expected, "update")
        merged = self._merged_update(kind, raw_key, res, stored, label, placement)
        if merged.data == stored.value:
            return self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)
        growth = len(merged.data) - len(stored.value) if charged and not merged.remove else 0
        hold = self._quota_hold(kind, key, objects=0, size=max(growth, 0), label=label)
        async with hold as slot:
            revision = await self._compare_and_write(
                kind, key, stored, merged.data, remove=merged.remove, op="update", slot=slot
            )
            if self._quotas is not None and not merged.remove:
                self._quotas.assume(raw_key, merged.data, revision)
        if merged.remove:
            return self._codec.as_written(merged.model, revision, generation=merged.generation)
        return self._codec.written(
            kind, raw_key, merged.model, merged.data, revision, generation=merged.generation
        )

    def _merged_update(
        self,
        kind: Kind,
        raw_key: bytes,
        res: AnyResource,
        stored: Stored,
        label: str,
        placement: bool = False,
    ) -> _Merged:
        """``res``'s spec and metadata merged into the stored document, validated (apart
        from ``update`` for the reason given in ``_new_document``)."""
        stored_document = self._codec.stored_document(kind, raw_key, stored)
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
        document, model = self._codec.validate(document)
        self._codec.seal(kind, raw_key, document, res, stored_document, label)
        generation: int = stored_metadata.get("generation", 1)
        if _spec_moved(document, stored_document, placement) or (
            kind == Kind.SECRET and document.get("status") != stored_document.get("status")
        ):
            generation += 1
            document["metadata"]["generation"] = generation
        data = self._codec.encode(document, label=label)
        return _Merged(model, data, generation, remove=deleting and not finalizers)

    async def update_status(self, res: AnyResource) -> AnyResource:
        """Write status only (CAS on resourceVersion); spec, metadata and generation stay."""
        kind = _kind_of(res)
        key = key_of(res)
        label = label_of(kind, key)
        expected = self._expected_revision(res, label)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._current(raw_key, label, expected, "update status of")
        model, data = self._merged_status(kind, raw_key, res, stored, label)
        if data == stored.value:
            return self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)
        revision = await self._compare_and_write(
            kind, key, stored, data, remove=False, op="update status of"
        )
        if self._quotas is not None:
            self._quotas.assume(raw_key, data, revision)
        return self._codec.written(kind, raw_key, model, data, revision)

    def _merged_status(
        self, kind: Kind, raw_key: bytes, res: AnyResource, stored: Stored, label: str
    ) -> tuple[AnyResource, bytes]:
        """``res``'s status in the stored document, validated, and its bytes (apart from
        ``update_status`` for the reason given in ``_new_document``)."""
        stored_document = self._codec.stored_document(kind, raw_key, stored)
        if kind == Kind.SECRET:
            why = "a Secret's status (its keys, sizes and digests) is written by the registry"
            raise Invalid(f"{label}: {why}", causes=[FieldError("status", why)])
        status = res.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        document, model = self._codec.validate(
            {**validation_copy(kind.value, stored_document), "status": status}
        )
        if kind in SEALED_KINDS:
            restore_sealed(kind.value, document, stored_document)
        return model, self._codec.encode(document, label=label)

    async def _compare_and_write(
        self,
        kind: Kind,
        key: Sequence[str],
        stored: Stored,
        data: bytes,
        *,
        remove: bool,
        op: str,
        slot: QuotaSlot = NULL_SLOT,
    ) -> int:
        """Put ``data`` (or delete the key) if it is still at ``stored.mod_revision``,
        again while only the realm's serial (``slot``: a charged growth) was lost.

        Not repeatable after an in-flight failure: the caller's resourceVersion is the
        compare, and only the caller can decide again (``OutcomeUnknown``).
        """
        label = label_of(kind, key)
        raw_key = self._layout.key(kind, key).encode()

        async def attempt(guard: Guard) -> Any:
            compare = [compare_modified(raw_key, stored.mod_revision), *guard.compares]
            write = delete_op(raw_key) if remove else put_op(raw_key, data)
            return await self._txn(
                compare, [write, *guard.success], [read_op(raw_key), *guard.failure]
            )

        while True:
            async with slot.attempt() as guard:
                response = await self._retrier.run(
                    functools.partial(attempt, guard), what=f"{op} {label}", repeatable=False
                )
                behind = slot.settle(guard, response)
            if response.succeeded:
                break
            current = response.responses[0].response_range.kvs
            if behind is None or not current or current[0].mod_revision != stored.mod_revision:
                self._documents.forget(raw_key)
                if not current:
                    raise NotFound(f"{label} not found")
                raise Conflict(
                    f"{label} was modified: resourceVersion {stored.mod_revision} is stale, "
                    f"the current one is {current[0].mod_revision}; read it again and retry"
                )
            await slot.catch_up(behind)  # bounded: it gives up after so many losses
        revision: int = response.header.revision
        if remove:
            self._documents.forget(raw_key)
            await self._after_removal(kind, key)
        else:
            self._documents.remember(raw_key, Stored(data, revision))
        return revision
