"""The writes of the resource routes: create, replace, patch and delete.

Each write is authorized before its body is read, made to agree with its URL and
validated (``writerules``), admitted (``handlerbase``) and only then written; with
``?dryRun=All`` every check runs and the write does not. A replace or patch without a
``resourceVersion`` is an unconditional write against the stored object (a patch retries
a lost compare on the newer version); with one, a stale version is a 409. A cascading
delete only marks the object: its children go after the answer (``_start_cascade``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any, NamedTuple

from aiohttp import web

from kukeon.api import AnyResource, Kind, Secret, parent_of, to_document
from kukeon.api.cellset import ORPHAN_FINALIZER
from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.auth import Role
from kukeon.apiserver.cellsetprofiles import resolve_profile
from kukeon.apiserver.deleteoptions import ORPHAN, Preconditions, delete_options
from kukeon.apiserver.fieldvalidation import FieldChecks
from kukeon.apiserver.handlerbase import HandlerBase
from kukeon.apiserver.request import json_answer, principal_of, read_body
from kukeon.apiserver.status import ApiError, Cause, from_store_error, status_document
from kukeon.apiserver.statusroom import check_status_room
from kukeon.apiserver.target import Target
from kukeon.apiserver.writebudget import set_cells_bytes
from kukeon.apiserver.writerules import base64_values, check_size, document_size, prepare
from kukeon.client.mergepatch import MERGE_PATCH_CONTENT_TYPE, apply_merge_patch
from kukeon.client.paths import HIERARCHY, KINDS
from kukeon.store import Conflict, NotFound, Registry, StoreError
from kukeon.store.codec import ValidatedDump
from kukeon.store.deletion import Precondition
from kukeon.store.realmquota import RealmQuotas, counts_against_quota

log = logging.getLogger(__name__)

# A patch without a resourceVersion is applied to the newest version: a conflict means
# another write landed in between, so each round one of the racing writers wins and N
# writers need at most N rounds (as kube-apiserver's GuaranteedUpdate re-reads on each
# conflict). The bound only stops a livelock no real load makes.
_PATCH_RETRIES = 100


class ResourceWrites(HandlerBase):
    """create, replace (spec or status), patch (spec or status) and delete of every kind."""

    async def close(self) -> None:
        """Stop the cascades this server started (kukeond's leader finishes them)."""
        for task in self._cascades.values():
            task.cancel()
        await asyncio.gather(*self._cascades.values(), return_exceptions=True)

    def _start_cascade(self, target: Target) -> None:
        """Delete a marked object's children now, outside the request.

        Only a head start: kukeond's cascade leader does the same from the marks, so a
        cascade cut by a restart (of this server or of any kukeond) is finished anyway,
        and an API server running without controllers still completes one.
        """
        key = (target.kind, target.key)
        if key in self._cascades:
            return

        async def run() -> None:
            try:
                await self._registry.delete(target.kind, target.key, cascade=True)
            except NotFound:
                pass
            except Exception as error:  # logged: kukeond's cascade leader carries on
                log.warning("cascade of %s interrupted: %s", target.label(), error)
            finally:
                self._cascades.pop(key, None)

        self._cascades[key] = asyncio.create_task(run(), name=f"cascade {target.label()}")

    async def create(self, request: web.Request, target: Target) -> web.StreamResponse:
        # An editor may create a realm it is scoped to; which realm that is, only the body
        # says. Everyone else is authorized before the body is even read.
        realm_from_body = target.kind == Kind.REALM and principal_of(request).role == Role.EDITOR
        if not realm_from_body:
            self._authorize(request, "create", target)
        dry_run = queryparams.dry_run(request)
        checks = FieldChecks(request)
        body = await read_body(request, self._settings.max_body_bytes, checks=checks)
        document = prepare(body, target, name_from_url=False)
        document.pop("status", None)  # controllers own status
        metadata = document["metadata"]
        for managed in (
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            metadata.pop(managed, None)
        res = checks.parse(document)
        validated = ValidatedDump.of(res)  # the registry need not validate it again
        created_target = target._replace(name=res.metadata.name)
        if realm_from_body:
            self._authorize(request, "create", created_target)
        res = await self._resolved(created_target, res, None)
        await self._admit(request, created_target, res, None)
        check_status_room(created_target, res, None)
        if dry_run:
            # Everything a real create checks, short of writing: the size, the key still
            # free, the parent present and not being deleted.
            check_size(res, created_target)
            await self._check_quota(res, created_target)
            await self._check_absent(created_target)
            await self._check_parent(res, created_target)
            return json_answer(to_document(res), status=201)
        async with self._charged(request, created_target, partial(charged_bytes, res, None)):
            created = await self._store(created_target, self._create(res, validated))
        return json_answer(to_document(created), status=201)

    async def _create(self, res: AnyResource, validated: ValidatedDump) -> AnyResource:
        """The registry's create, told that ``res`` is the body's validated parse (used only if
        nothing changed it since: ``ValidatedDump``); a stand-in registry is just called."""
        if isinstance(self._registry, Registry):
            return await self._registry.create(res, validated=validated)
        return await self._registry.create(res)

    async def _check_quota(self, res: AnyResource, target: Target) -> None:
        """A dry run's create is refused over the realm's quota as the create would be."""
        quotas = getattr(self._registry, "quotas", None)
        if not isinstance(quotas, RealmQuotas) or not counts_against_quota(target.kind):
            return
        size = quotas.key_size(target.kind, target.key) + document_size(res)
        spaces = 1 if target.kind == Kind.SPACE else 0
        check = quotas.check(
            target.key[0], objects=1, storage_bytes=size, label=target.label(), spaces=spaces
        )
        await self._store(target, check)

    async def _check_parent(self, res: AnyResource, target: Target) -> None:
        parent = parent_of(res)
        if parent is None:
            return
        kind, key = parent
        parent_target = Target(kind, key[:-1], key[-1], None)
        try:
            found = await self._registry.get(kind, key)
        except StoreError as exc:
            error = from_store_error(exc, kind=target.kind.value, name=target.name)
            if error.code != 404:
                raise error from None
            found = None
        why = "does not exist" if found is None else "is being deleted"
        if found is None or found.metadata.deletion_timestamp is not None:
            raise ApiError(
                404,
                f"cannot create {target.label()}: its {parent_target.label()} {why}",
                kind=target.kind.value,
                name=target.name,
            )

    async def _check_absent(self, target: Target) -> None:
        try:
            await self._registry.get(target.kind, target.key)
        except StoreError as exc:
            if from_store_error(exc).code == 404:
                return
            raise from_store_error(exc, kind=target.kind.value, name=target.name) from None
        raise ApiError(
            409,
            f"{target.label()} already exists",
            reason="AlreadyExists",
            kind=target.kind.value,
            name=target.name,
        )

    async def replace(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "update", target)
        dry_run = queryparams.dry_run(request)
        checks = FieldChecks(request)
        body = await read_body(request, self._settings.max_body_bytes, checks=checks)
        document = prepare(body, target, name_from_url=True)
        if target.subresource is None:
            # A spec write keeps the stored status whatever the body says (Kubernetes'
            # PUT): a client of another version may send status fields this server lacks.
            document.pop("status", None)
        res = checks.parse(document)
        current = await self._store(target, self._registry.get(target.kind, target.key))
        self._check_uid(target, res.metadata.uid, current)
        if not res.metadata.resource_version:
            # No precondition given: an unconditional update, against what is stored now.
            res.metadata.resource_version = current.metadata.resource_version
        elif res.metadata.resource_version != current.metadata.resource_version:
            raise self._stale(target, res.metadata.resource_version, current)
        res = await self._resolved(target, res, current)
        await self._admit(request, target, res, current)
        check_status_room(target, res, current)
        if dry_run:
            merged = self._merged(current, res, target.subresource)
            check_size(merged, target)
            return json_answer(to_document(merged))
        async with self._charged(request, target, partial(charged_bytes, res, current)):
            updated = await self._store(target, self._write(target, res))
        return json_answer(to_document(updated))

    def _write(self, target: Target, res: AnyResource) -> Coroutine[Any, Any, AnyResource]:
        """A replace or patch: status as it is, spec charged to the realm's quota."""
        if target.subresource:
            return self._registry.update_status(res)
        return self._registry.update(res, charged=True)

    async def _resolved(
        self, target: Target, res: AnyResource, current: AnyResource | None
    ) -> AnyResource:
        """A spec write of a CellSet naming a profile, with its template from the profile
        (``cellsetprofiles``); anything else as it is."""
        if target.subresource is not None:
            return res
        return await resolve_profile(self._registry, res, current)

    @staticmethod
    def _stale(target: Target, given: str | None, current: AnyResource) -> ApiError:
        return ApiError(
            409,
            # The given version is the client's (a hostile one may send 1 MB): cut, quoted.
            f"{target.label()} has been modified: resourceVersion {quote(given)} is not the "
            f"current {current.metadata.resource_version}; read it again and retry",
            reason="Conflict",
            kind=target.kind.value,
            name=target.name,
        )

    @staticmethod
    def _check_uid(target: Target, given: str | None, current: AnyResource) -> None:
        """A body naming another uid is about another object of that name (one deleted and
        made again since it was read): a 409, as Kubernetes' precondition, never applied to
        the new one."""
        if given and given != current.metadata.uid:
            raise ApiError(
                409,
                f"{target.label()}: precondition failed: the uid given, {quote(given)}, is not "
                f"the object's, {current.metadata.uid} (it was deleted and made again since "
                "it was read?); read it again and retry",
                reason="Conflict",
                kind=target.kind.value,
                name=target.name,
            )

    @staticmethod
    def _merged(current: AnyResource, res: AnyResource, subresource: str | None) -> AnyResource:
        """What a write of ``res`` would store: spec+metadata or status, not both."""
        if subresource == "status":
            return current.model_copy(update={"status": res.status}, deep=True)
        return res.model_copy(update={"status": current.status}, deep=True)

    async def patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "patch", target)
        dry_run = queryparams.dry_run(request)
        if request.content_type != MERGE_PATCH_CONTENT_TYPE:
            raise ApiError(
                415,
                f"PATCH needs Content-Type {MERGE_PATCH_CONTENT_TYPE} (JSON merge patch, "
                f"RFC 7386), got {request.content_type!r}",
            )
        checks = FieldChecks(request)
        patch = await read_body(
            request, self._settings.max_body_bytes, frozenset({MERGE_PATCH_CONTENT_TYPE}), checks
        )
        if not isinstance(patch, dict):
            raise ApiError(400, "a merge patch must be a JSON object")
        precondition, uid = _patch_preconditions(patch, target)
        for _ in range(_PATCH_RETRIES):
            current = await self._store(target, self._registry.get(target.kind, target.key))
            before = to_document(current)
            if isinstance(current, Secret) and ("data" in patch or "stringData" in patch):
                # A patch of values merges into the stored ones, which no document shows:
                # they are added here, in memory only, never to a response.
                before = {**before, "data": base64_values(current)}
            after = apply_merge_patch(before, patch)
            if not isinstance(after, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            if target.subresource == "status":
                # The object's own fields stay as stored (Kubernetes ignores them on status);
                # a key the object has not is kept for the field checks to name ("statuz").
                unknown = {key: value for key, value in after.items() if key not in before}
                after = {**unknown, **before, "status": after.get("status", {})}
            else:
                after["status"] = before.get("status", {})
            document = prepare(after, target, name_from_url=True)
            res = checks.parse(document)
            self._check_uid(target, uid, current)
            if precondition is None:
                res.metadata.resource_version = current.metadata.resource_version
            elif str(precondition) != current.metadata.resource_version:
                raise self._stale(target, str(precondition), current)
            res = await self._resolved(target, res, current)
            await self._admit(request, target, res, current)
            check_status_room(target, res, current)
            if dry_run:
                merged = self._merged(current, res, target.subresource)
                check_size(merged, target)
                return json_answer(to_document(merged))
            try:
                async with self._charged(request, target, partial(charged_bytes, res, current)):
                    updated = await self._write(target, res)
            except Conflict:
                if precondition is not None:
                    raise
                continue  # someone wrote in between: patch the newer version
            except StoreError as exc:
                raise from_store_error(exc, kind=target.kind.value, name=target.name) from None
            return json_answer(to_document(updated))
        raise ApiError(
            409,
            f"{target.label()} kept changing while being patched; retry",
            kind=target.kind.value,
            name=target.name,
        )

    async def delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "delete", target)
        options = await delete_options(request, self._settings.max_body_bytes)
        hold = _orphan_finalizer(target) if options.policy == ORPHAN else None
        cascade = options.policy is True
        if options.grace is not None:
            if target.kind != Kind.CELL:
                why = "only a cell's deletion stops containers (its children's have their own)"
                raise ApiError(
                    400, f"gracePeriodSeconds: {why}", causes=[Cause("gracePeriodSeconds", why)]
                )
            cascade = False  # a cell has no children: a cascade is a plain delete
        precondition = _precondition(target, options.preconditions)
        if options.dry_run:
            current = await self._store(target, self._registry.get(target.kind, target.key))
            if precondition is not None:
                await self._store(target, _checked(precondition, current))
            if not cascade:
                await self._check_childless(target)
            return json_answer(to_document(current))
        # A cascade is only marked here; the children go after the answer (any number,
        # across restarts: see _start_cascade) and the object after them.
        async with self._charged(request, target):  # a tombstone: the key and the revision
            remaining = await self._store(
                target,
                self._registry.delete(
                    target.kind,
                    target.key,
                    cascade=cascade,
                    background=cascade,
                    grace_seconds=options.grace,
                    precondition=precondition,
                    hold=hold,
                ),
            )
        if cascade and remaining is not None:
            self._start_cascade(target)
        if remaining is not None:
            # Still held by finalizers: the object, now carrying its deletionTimestamp.
            return json_answer(to_document(remaining), status=202)
        return json_answer(
            status_document(
                code=200,
                reason="Deleted",
                message=f"{target.label()} deleted",
                name=target.name,
                kind=target.kind.value,
                success=True,
            )
        )

    async def _check_childless(self, target: Target) -> None:
        kinds = list(HIERARCHY)
        if target.kind not in kinds or kinds.index(target.kind) + 1 >= len(kinds):
            return
        child = kinds[kinds.index(target.kind) + 1]
        children = await self._store(target, self._registry.list(child, target.key))
        if children.items:
            names = ", ".join(res.metadata.name for res in children.items[:10])
            raise ApiError(
                409,
                f"{target.label()} still has {KINDS[child].plural} ({names}); "
                "delete them first or use cascade",
                kind=target.kind.value,
                name=target.name,
            )


class _PatchPreconditions(NamedTuple):
    """What a merge patch's metadata says the object must be: its version and uid."""

    version: str | None
    uid: str | None


def _patch_preconditions(patch: dict[str, Any], target: Target) -> _PatchPreconditions:
    """A merge patch's ``metadata.resourceVersion`` and ``metadata.uid``: the version and the
    object it must apply to, if given.

    Only an object's are; metadata that is no object is the 400 ``prepare`` names once the
    patch is applied. Read here, from the patch, as each must be a string (422): a status
    patch drops the patch's metadata, so nothing later named them (a version no object has
    was a 409 "has been modified", a uid not checked at all).
    """
    metadata = patch.get("metadata")
    given = metadata if isinstance(metadata, dict) else {}
    for field in ("resourceVersion", "uid"):
        if given.get(field) is not None and not isinstance(given[field], str):
            why = f"must be a string: the {field} of the object the patch was made against"
            raise ApiError(
                422,
                f"{target.label()} is invalid: metadata.{field}: {why}",
                reason="Invalid",
                causes=[Cause(f"metadata.{field}", why)],
                kind=target.kind.value,
                name=target.name,
            )
    # An empty version is no precondition, as a replace's (and kube-apiserver's) is.
    return _PatchPreconditions(given.get("resourceVersion") or None, given.get("uid"))


def _orphan_finalizer(target: Target) -> str:
    """What an Orphan delete holds the object by: only a CellSet's dependents (its cells) may
    outlive it, the set controller releasing them before it drops the finalizer
    (controllers.cellsetowners). The delete adds it in the same write that marks the
    object, so a delete refused after this check (a precondition) adds nothing."""
    if target.kind != Kind.CELL_SET:
        why = "only a CellSet's cells can outlive it"
        raise ApiError(
            400, f"propagationPolicy Orphan: {why}", causes=[Cause("propagationPolicy", why)]
        )
    return ORPHAN_FINALIZER


def _precondition(target: Target, given: Preconditions | None) -> Precondition | None:
    """A DeleteOptions' preconditions as the registry's check of the version it deletes."""
    if given is None or (given.uid is None and given.resource_version is None):
        return None

    def check(current: AnyResource) -> None:
        if given.uid is not None and given.uid != current.metadata.uid:
            raise Conflict(
                f"{target.label()}: precondition failed: the uid given, {quote(given.uid)}, is "
                f"not the object's, {current.metadata.uid}"
            )
        version = given.resource_version
        if version is not None and version != current.metadata.resource_version:
            raise Conflict(
                f"{target.label()}: precondition failed: resourceVersion {quote(version)} is "
                f"not the current {current.metadata.resource_version}"
            )

    return check


async def _checked(precondition: Precondition, current: AnyResource) -> None:
    """A dry run's precondition, raised as the store's error a real delete would raise."""
    precondition(current)


def charged_bytes(res: AnyResource, current: AnyResource | None) -> int:
    """What a write of ``res`` (over ``current``) costs its realm's write budget: its
    document, and for a set the cells kukeond will write for it (``writebudget``)."""
    return document_size(res) + set_cells_bytes(res, current)
