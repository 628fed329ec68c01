"""Finalizers and deletion: marks, children first, cascades, the children finalizer.

An object is removed when it is marked (``deletionTimestamp``) and holds no finalizer.
Every parent kind holds ``CHILDREN_FINALIZER`` from its creation; the registry releases it
once no child remains, by a transaction that also compares every child range as empty,
so a child created meanwhile makes the release lose its compare instead of leaving an
orphan. Each change here is a read-decide-swap round (``_cas_once``), repeated when its
compare is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kukeon.api import AnyResource, FieldError, Kind, key_of

from .codec import label_of
from .errors import (
    ChildrenExist,
    Conflict,
    Invalid,
    NotFound,
    SpaceExceeded,
    StoreError,
    Unavailable,
)
from .keys import display_name, parent_key, range_end
from .quotaserial import serial_root
from .reads import RegistryReads
from .registrybase import MAX_CAS_ROUNDS, utc_now
from .txn import (
    Compares,
    Decide,
    Lost,
    Stored,
    compare_created,
    compare_modified,
    delete_op,
    put_op,
)

log = logging.getLogger(__name__)

CHILDREN_FINALIZER = "kukeon.io/children"
"""Held by every parent kind; released by the registry once it has no children left."""

_CHILDREN_NAMED_IN_ERRORS = 10
_CASCADE_BATCH = 16

Children = list[tuple[Kind, tuple[str, ...]]]

Precondition = Callable[[AnyResource], None]
"""Raises (``Conflict``) when the object read is not the one a delete is meant for."""


def _mark_refused(label: str, finalizers: Sequence[str], error: SpaceExceeded) -> SpaceExceeded:
    """A full etcd refused the mark of an object its finalizers hold: why a delete, which
    etcd takes while full, was refused, and what can be deleted meanwhile."""
    return SpaceExceeded(
        f"{error}; {label} holds finalizers ({', '.join(finalizers)}), so it is first marked "
        "for deletion, a write etcd refuses while full; an object without finalizers (a "
        "Secret, for one) is deleted at once, which frees room"
    )


class RegistryDeletion(RegistryReads):
    """delete, continue_cascade, add_finalizer and remove_finalizer."""

    @staticmethod
    def _no_new_finalizers(label: str, names: Sequence[str]) -> Invalid:
        why = f"cannot add finalizer(s) {', '.join(names)}: the object is being deleted"
        return Invalid(f"{label}: {why}", causes=[FieldError("metadata.finalizers", why)])

    async def _cas_loop(
        self,
        kind: Kind,
        key: Sequence[str],
        op: str,
        decide: Decide,
    ) -> AnyResource | None:
        """Read, decide, compare-and-swap; again whenever the compare is lost."""
        for _ in range(MAX_CAS_ROUNDS):
            result = await self._cas_once(kind, key, op, decide)
            if not isinstance(result, Lost):
                return result
        raise Unavailable(f"{op} {label_of(kind, key)}: the object kept changing, gave up")

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        label = label_of(kind, key)
        if await self._read_one(self._layout.key(kind, key).encode(), f"read {label}") is None:
            raise NotFound(f"{label} not found")

        def decide(current: AnyResource, stored: Stored) -> tuple[Any, list[Any]]:
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
        label = label_of(kind, key)
        if name == CHILDREN_FINALIZER:
            why = f"{CHILDREN_FINALIZER} is released by the registry when no children remain"
            raise Invalid(f"{label}: {why}", causes=[FieldError("metadata.finalizers", why)])

        def decide(current: AnyResource, stored: Stored) -> tuple[Any, list[Any]]:
            if name not in current.metadata.finalizers:
                return "keep", []
            remaining = [f for f in current.metadata.finalizers if f != name]
            if current.metadata.deletion_timestamp is not None and not remaining:
                return None, []
            document = json.loads(stored.value)
            document["metadata"]["finalizers"] = remaining
            return document, []

        return await self._cas_loop(kind, key, f"remove finalizer {name!r} from", decide)

    async def _children(self, kind: Kind, key: Sequence[str]) -> Children:
        children: Children = []
        for child_kind, prefix in self._layout.children_prefixes(kind, key):
            raw = prefix.encode()

            async def attempt(raw: bytes = raw) -> Any:
                return await self._range(raw, range_end(raw), keys_only=True)

            response = await self._retrier.run(
                attempt, what=f"list children of {label_of(kind, key)}", repeatable=True
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
                attempt, what=f"look for children of {label_of(kind, key)}", repeatable=True
            )
            if response.kvs:
                return True
        return False

    def _no_children_compares(self, kind: Kind, key: Sequence[str]) -> Compares:
        compares: Compares = []
        for _, prefix in self._layout.children_prefixes(kind, key):
            raw = prefix.encode()
            compares.append(compare_created(raw, 0, range_end(raw)))
        return compares

    async def delete(
        self,
        kind: Kind,
        key: tuple[str, ...],
        *,
        cascade: bool = False,
        background: bool = False,
        grace_seconds: int | None = None,
        precondition: Precondition | None = None,
        hold: str | None = None,
    ) -> AnyResource | None:
        """Mark the object deleted; it goes when its finalizers are empty (then None).

        ``precondition`` (a DELETE's uid and resourceVersion) is checked on the very
        version each compare-and-swap is made against, so it holds for what is deleted.

        ``hold`` (without ``cascade``: a CellSet's orphaning finalizer) is added by the same
        write that marks the object, so a delete refused (its precondition) adds nothing,
        and the precondition is checked on the version the caller read, not on one the
        finalizer made; an object already being deleted without it cannot take it.

        ``grace_seconds`` (a cell's, without ``cascade``) is recorded as the deletion's
        ``deletionGracePeriodSeconds``, or lowers the one recorded by an earlier delete.

        With children: refused (``ChildrenExist``) unless ``cascade``, which marks the
        object first (no new child can be created under it), deletes the children depth
        first, and releases ``kukeon.io/children`` once none remain. Children still held by
        their own finalizers keep the parent pending; the last one to go releases it.

        ``background`` (with ``cascade``) only marks the object and returns: kukeond's
        cascade (:meth:`continue_cascade`, run by its leader) deletes the children, however
        many, and survives restarts, since the mark is all it needs to know.
        """
        label = label_of(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"delete {label}")
        if stored is None:
            raise NotFound(f"{label} not found")
        for _ in range(MAX_CAS_ROUNDS):
            if stored is None:
                return None
            if not isinstance(
                self._codec.decoded(kind, raw_key, stored.value, stored.mod_revision), str
            ):
                break
            if precondition is not None or hold is not None:
                why = "no precondition holds" if hold is None else f"it cannot hold {hold}"
                raise Conflict(f"{label}: its stored document is unreadable, so {why}")
            if await self._remove_invalid(kind, key, stored, cascade=cascade):
                return None
            stored = await self._read_one(raw_key, f"delete {label}")

        if not cascade:
            return await self._delete_childless(kind, key, grace_seconds, precondition, hold)
        if hold is not None:
            raise ValueError("a finalizer is held by a delete without cascade only")

        def mark(current: AnyResource, stored: Stored) -> tuple[Any, list[Any]]:
            if precondition is not None:
                precondition(current)
            if current.metadata.deletion_timestamp is not None:
                return "keep", []
            document = json.loads(stored.value)
            document["metadata"]["deletionTimestamp"] = utc_now().isoformat()
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
        self, kind: Kind, key: tuple[str, ...], stored: Stored, *, cascade: bool
    ) -> bool:
        """Remove a key whose document does not decode (no finalizer in it can be read).

        Children are deleted first with ``cascade``, else refused as for any object. False
        when the key changed meanwhile (the caller reads it again and decides again).
        """
        label = label_of(kind, key)
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
            compare = [compare_modified(raw_key, stored.mod_revision), *no_children]
            return await self._txn(compare, [delete_op(raw_key)], [])

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
    def _children_exist(label: str, children: Children) -> ChildrenExist:
        names = [label_of(k, n) for k, n in children[:_CHILDREN_NAMED_IN_ERRORS]]
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

    async def _delete_childless(
        self,
        kind: Kind,
        key: tuple[str, ...],
        grace_seconds: int | None = None,
        precondition: Precondition | None = None,
        hold: str | None = None,
    ) -> AnyResource | None:
        label = label_of(kind, key)
        no_children = self._no_children_compares(kind, key)
        held: list[str] = []  # the finalizers the last decision marked the object for

        for _ in range(MAX_CAS_ROUNDS):
            children = (
                await self._children(kind, key) if await self._has_children(kind, key) else []
            )
            if children:
                raw_key = self._layout.key(kind, key).encode()
                stored = await self._read_one(raw_key, label)
                if stored is None:
                    return None
                current = self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)
                if precondition is not None:
                    precondition(current)
                if current.metadata.deletion_timestamp is not None:
                    # Already being deleted (a cascade in progress): nothing to refuse.
                    return current
                raise self._children_exist(label, children)

            def decide(current: AnyResource, stored: Stored) -> tuple[Any, list[Any]]:
                if precondition is not None:
                    precondition(current)
                remaining = self._left_held(label, current, hold)
                held[:] = remaining
                if not remaining:
                    return None, no_children
                document = json.loads(stored.value)
                document["metadata"]["finalizers"] = remaining
                if not document["metadata"].get("deletionTimestamp"):
                    document["metadata"]["deletionTimestamp"] = utc_now().isoformat()
                given = document["metadata"].get("deletionGracePeriodSeconds")
                if grace_seconds is not None and (given is None or grace_seconds < given):
                    document["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
                if document == json.loads(stored.value):
                    return "keep", []
                return document, no_children

            try:
                result = await self._cas_once(kind, key, "delete", decide)
            except SpaceExceeded as error:
                if not held:  # a removal etcd refused: its own words say it
                    raise
                raise _mark_refused(label, held, error) from error
            if not isinstance(result, Lost):
                return result
            # Lost the compare: a child appeared or the object changed; decide again.
        raise Unavailable(f"delete {label}: the object kept changing, gave up")

    def _left_held(self, label: str, current: AnyResource, hold: str | None) -> list[str]:
        """What a childless object's delete leaves it held by: its finalizers but the
        children's (none remain), and ``hold``, which an object being deleted cannot take."""
        finalizers = list(current.metadata.finalizers)
        if hold is not None and hold not in finalizers:
            if current.metadata.deletion_timestamp is not None:
                raise self._no_new_finalizers(label, [hold])
            finalizers.append(hold)
        return [name for name in finalizers if name != CHILDREN_FINALIZER]

    async def _cas_once(
        self, kind: Kind, key: Sequence[str], op: str, decide: Decide
    ) -> AnyResource | Lost | None:
        """One read-decide-CAS round; returns ``Lost.LOST`` when the compare failed."""
        label = label_of(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"{op} {label}")
        if stored is None:
            return None
        current = self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)
        outcome, extra_compare = decide(current, stored)
        if outcome == "keep":
            return current
        remove = outcome is None
        data = b"" if remove else self._codec.encode(outcome, label=label)

        async def attempt() -> Any:
            compare = [compare_modified(raw_key, stored.mod_revision), *extra_compare]
            return await self._txn(
                compare, [delete_op(raw_key) if remove else put_op(raw_key, data)], []
            )

        response = await self._retrier.run(attempt, what=f"{op} {label}", repeatable=True)
        if not response.succeeded:
            return Lost.LOST
        if remove:
            self._documents.forget(raw_key)
            await self._after_removal(kind, key)
            return None
        self._documents.remember(raw_key, Stored(data, response.header.revision))
        return self._codec.decode(kind, raw_key, data, response.header.revision)

    async def _release_children(self, kind: Kind, key: Sequence[str]) -> AnyResource | None:
        """Drop ``kukeon.io/children`` from a deleting parent whose children are all gone."""
        no_children = self._no_children_compares(kind, key)
        for _ in range(MAX_CAS_ROUNDS):
            if await self._has_children(kind, key):
                raw_key = self._layout.key(kind, key).encode()
                stored = await self._read_one(raw_key, "read")
                if stored is None:
                    return None
                return self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)

            def decide(current: AnyResource, stored: Stored) -> tuple[Any, list[Any]]:
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
            if not isinstance(result, Lost):
                return result
        raise Unavailable(f"release {label_of(kind, key)}: the object kept changing, gave up")

    async def _after_removal(self, kind: Kind, key: Sequence[str]) -> None:
        """A removed child may have been the last one holding a deleting parent; a removed
        realm leaves its quota serial key (``quotaserial``) to remove."""
        if kind == Kind.REALM:
            await self._remove_quota_serial(key[0])
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

    async def _remove_quota_serial(self, realm: str) -> None:
        """Remove a removed realm's serial key, only while the realm is still absent: then
        nothing of it is stored, so no write comparing the key as absent can miss an object
        (a crash before this leaves the key: harmless, a realm of that name takes it on)."""
        realm_raw = self._layout.key(Kind.REALM, (realm,)).encode()
        serial = serial_root(self._layout.registry_root) + realm.encode()

        async def attempt() -> Any:
            return await self._txn([compare_created(realm_raw, 0)], [delete_op(serial)], [])

        try:
            await self._retrier.run(
                attempt, what=f"remove the quota serial of realm {realm}", repeatable=True
            )
        except StoreError as error:
            # The realm is gone all the same; a lingering key only costs its bytes.
            log.warning("realm %s removed, its quota serial key left: %s", realm, error)
