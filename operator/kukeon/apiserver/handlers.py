"""The resource routes: get, list, watch, create, replace, patch and delete of every kind.

One ``ResourceHandlers`` serves all four kinds: the URL tells the kind, its parents'
names and the subresource (``Target``); the handler checks the caller's rights first
(nothing is read from the body or written before that), makes the body agree with the URL
(parent ids are filled from the URL when absent and refused when they disagree), validates
it with ``kukeon.api.parse_resource`` so every invalid field is reported at once, checks
what a non-admin's write asks of the host against its realm's security level (``admission``;
for a patch, on the patched object), and only then writes to the registry. ``?dryRun=All``
runs every check and stops before the write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from kukeon.api import (
    API_VERSION,
    SCOPE_PLACEHOLDER,
    AnyResource,
    Cell,
    InvalidResource,
    Kind,
    Secret,
    key_of,
    parent_of,
    parse_resource,
    to_document,
)
from kukeon.api.container import containerd_container_id
from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.admission import Admission
from kukeon.apiserver.auth import Principal, Role, Verb, denial
from kukeon.apiserver.bodies import THREAD_THRESHOLD, BodyError, decode_body
from kukeon.apiserver.fieldselector import FieldSelector, FieldSelectorError, parse_field_selector
from kukeon.apiserver.mergepatch import MERGE_PATCH_CONTENT_TYPE, apply_merge_patch
from kukeon.apiserver.paths import API_ROOT, HIERARCHY, KINDS, display_key
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.settings import ApiSettings
from kukeon.apiserver.status import ApiError, Cause, from_store_error, status_document
from kukeon.apiserver.watchhub import EncodedEvent, Item, WatchHub
from kukeon.store import (
    MAX_DOCUMENT_BYTES,
    Conflict,
    Invalid,
    LabelSelector,
    NotFound,
    StoreError,
    parse_selector,
)

log = logging.getLogger(__name__)

PRINCIPAL_KEY = web.RequestKey("kukeon_principal", Principal)
"""Where the auth middleware leaves the authenticated caller on the request."""

# Path parameter name of each level of the hierarchy.
_LEVEL_PARAMS: Mapping[Kind, str] = {
    Kind.REALM: "realm",
    Kind.SPACE: "space",
    Kind.STACK: "stack",
    Kind.CELL: "cell",
    Kind.NODE: "node",
    Kind.SECRET: "secret",
}
_PATCH_RETRIES = 5


class Target(NamedTuple):
    """What a URL points at."""

    kind: Kind
    scope: tuple[str, ...]
    """Parent names from the URL; empty for a cross-parent collection."""
    name: str | None
    subresource: str | None

    @property
    def key(self) -> tuple[str, ...]:
        assert self.name is not None
        return (*self.scope, self.name)

    @property
    def realm(self) -> str | None:
        """The realm the request touches, or None when it spans every realm."""
        if self.kind == Kind.REALM:
            return self.name
        return self.scope[0] if self.scope else None

    def label(self) -> str:
        if self.name is None:
            return f"{KINDS[self.kind].plural} under {display_key(self.scope) or 'every parent'}"
        return f'{self.kind.value.lower()} "{display_key(self.key)}"'


def route_patterns(kind: Kind) -> tuple[str, str]:
    """(collection, object) URL patterns of ``kind`` under its parents."""
    info = KINDS[kind]
    prefix = "".join(f"/{KINDS[p].plural}/{{{_LEVEL_PARAMS[p]}}}" for p in info.parents)
    collection = f"{API_ROOT}{prefix}/{info.plural}"
    return collection, f"{collection}/{{{_LEVEL_PARAMS[kind]}}}"


def _target(request: web.Request, kind: Kind, *, subresource: str | None = None) -> Target:
    info = KINDS[kind]
    match = request.match_info
    scope = tuple(match[_LEVEL_PARAMS[p]] for p in info.parents if _LEVEL_PARAMS[p] in match)
    return Target(kind, scope, match.get(_LEVEL_PARAMS[kind]), subresource)


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        # Only reachable if the app was built without its auth middleware: refuse.
        raise ApiError(401, "Unauthorized: the request was not authenticated")
    return principal


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def is_watch(request: web.Request) -> bool:
    """Lenient, for the middlewares (which must not fail); the handler parses it strictly."""
    return _is_true(request.query.get("watch"))


def _dry_run(request: web.Request) -> bool:
    return queryparams.dry_run(request)


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


async def _read_body(request: web.Request, limit: int) -> Any:
    """The request body as a document (JSON, or YAML when the content type says so).

    A Content-Length over ``limit`` is a 413 before a byte is read (aiohttp would read
    ``limit`` bytes first, and wait for a body a client only announced); aiohttp enforces
    the limit again while reading a chunked body. ``kukeon.apiserver.bodies`` bounds the
    nesting depth and refuses repeated keys. A large body is decoded in a worker thread.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(
            413, f"the request body of {length} bytes is larger than the limit of {limit} bytes"
        )
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "the request needs a body")
    content_type = request.content_type
    try:
        if len(raw) > THREAD_THRESHOLD:
            return await asyncio.to_thread(decode_body, raw, content_type)
        return decode_body(raw, content_type)
    except BodyError as exc:
        causes = [Cause(exc.field, exc.message)] if exc.field else []
        raise ApiError(exc.code, exc.message, causes=causes) from None


_SELECTOR_MAX = 4096


def _selector(request: web.Request) -> tuple[str | None, LabelSelector]:
    text = queryparams.single(request, "labelSelector")
    if text is not None and len(text) > _SELECTOR_MAX:
        raise ApiError(
            400,
            f"labelSelector is {len(text)} characters long, over the limit of {_SELECTOR_MAX}",
            causes=[Cause("labelSelector", f"at most {_SELECTOR_MAX} characters")],
        )
    try:
        return text, parse_selector(text)
    except Invalid as exc:
        raise ApiError(
            400, str(exc), causes=[Cause(c[0], c[1]) for c in exc.causes] or ()
        ) from None


def _field_filter(request: web.Request, kind: Kind) -> FieldSelector[AnyResource]:
    """``fieldSelector``: the fields each kind supports (``apiserver/fieldselector.py``)."""
    text = queryparams.single(request, "fieldSelector")
    try:
        return parse_field_selector(kind, text)
    except FieldSelectorError as exc:
        raise ApiError(
            400, f"fieldSelector: {exc}", causes=[Cause("fieldSelector", str(exc))]
        ) from None


def _secret_scope_from_url(metadata: dict[str, Any], scope: tuple[str, ...]) -> list[Cause]:
    """Fill a Secret's metadata.realm/space/stack from its URL (`-`: none), or say why not."""
    causes: list[Cause] = []
    for level, from_url in zip(("realm", "space", "stack"), scope, strict=False):
        wanted = None if from_url == SCOPE_PLACEHOLDER else from_url
        given = metadata.get(level) or None
        if given is None and wanted is not None:
            metadata[level] = wanted
        elif given != wanted:
            shown = (
                repr(wanted) if wanted is not None else f"unset ({SCOPE_PLACEHOLDER} in the URL)"
            )
            causes.append(
                Cause(f"metadata.{level}", f"must be {shown} (the URL), got {quote(given)}")
            )
    return causes


def _base64_values(secret: Secret) -> dict[str, str]:
    values = secret.values() or {}
    return {key: base64.b64encode(value).decode() for key, value in values.items()}


def _realm_of(res: AnyResource) -> str:
    key = key_of(res)
    return key[0]


def _check_finalizers(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """A client may remove a finalizer (to free an object whose owner is gone for good), never
    add one: each is a promise that a kukeond will release it, and one nobody keeps would
    hold a deletion (and `kukectl delete --wait`) for ever. kukeond sets its own through the
    registry, not through this API."""
    kept = set(current.metadata.finalizers) if current is not None else set()
    added = sorted(set(res.metadata.finalizers) - kept)
    if added:
        why = (
            f"cannot add {', '.join(quote(name) for name in added)}: only kukeond adds "
            "finalizers (and releases them); a client may only remove one"
        )
        raise ApiError(
            422,
            f"{target.label()}: metadata.finalizers: {why}",
            reason="Invalid",
            kind=target.kind.value,
            name=target.name,
            causes=[Cause("metadata.finalizers", why)],
        )


_NOT_ACTED_ON = {
    "ports": "publishing ports is not implemented yet",
    "networks": "joining other spaces' networks is not implemented yet",
    "cniConfigPath": "a container's own CNI configuration is not implemented yet (a space's "
    "spec.cniConfigPath is)",
}
"""Container fields the model loads (kukeon manifests carry them) but kukeond does not act
on: a write that sets or changes one is refused, so nobody believes it works."""


def _check_acted_on(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse what a write asks that kukeond would ignore, or that only kukeon decides: the
    fields of `_NOT_ACTED_ON`, and a `containerdId` other than the derived one. Compared with
    the stored object, so a document written before these rules stays writable as long as
    the write leaves those values as they were."""
    if not isinstance(res, Cell):
        return
    before = {c.id: c for c in current.spec.containers} if isinstance(current, Cell) else {}
    causes: list[Cause] = []
    for index, container in enumerate(res.spec.containers):
        path = f"spec.containers[{index}]"
        old = before.get(container.id)
        fields = {"ports", "networks", "cni_config_path"}
        written = container.model_dump(by_alias=True, include=fields)
        kept = old.model_dump(by_alias=True, include=fields) if old else {}
        for field, why in _NOT_ACTED_ON.items():
            if written.get(field) and written.get(field) != kept.get(field):
                causes.append(Cause(f"{path}.{field}", why))
        derived = containerd_container_id(
            space=res.spec.space_id, stack=res.spec.stack_id, cell=res.metadata.name,
            container=container.id,
        )  # fmt: skip
        given = container.containerd_id
        if given and given != derived and given != (old.containerd_id if old else None):
            why = f"is derived by kukeon ({quote(derived)}): leave it out"
            causes.append(Cause(f"{path}.containerdId", why))
    if causes:
        raise ApiError(
            422,
            f"{target.label()}: " + "; ".join(f"{c.field}: {c.message}" for c in causes),
            reason="Invalid",
            kind=target.kind.value,
            name=target.name or res.metadata.name,
            causes=causes,
        )


class ResourceHandlers:
    """aiohttp handlers for every kind, bound to one registry."""

    def __init__(
        self,
        *,
        registry: RegistryApi,
        settings: ApiSettings,
        closing: asyncio.Event,
        hub: WatchHub,
    ) -> None:
        self._registry = registry
        self._hub = hub
        self._settings = settings
        self._closing = closing
        self._admission = Admission(registry=registry, allowances=settings.host_allowances)
        self._cascades: dict[tuple[Kind, tuple[str, ...]], asyncio.Task[None]] = {}

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

    # --- routing -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        for kind in KINDS:
            collection, obj = route_patterns(kind)
            router.add_get(collection, self._bind(self.list_or_watch, kind))
            router.add_post(collection, self._bind(self.create, kind))
            router.add_get(obj, self._bind(self.get, kind))
            router.add_put(obj, self._bind(self.replace, kind))
            router.add_patch(obj, self._bind(self.patch, kind))
            router.add_delete(obj, self._bind(self.delete, kind))
            router.add_get(f"{obj}/status", self._bind(self.get, kind, "status"))
            router.add_put(f"{obj}/status", self._bind(self.replace, kind, "status"))
            router.add_patch(f"{obj}/status", self._bind(self.patch, kind, "status"))
            if KINDS[kind].parents:
                cross = f"{API_ROOT}/{KINDS[kind].plural}"
                router.add_get(cross, self._bind(self.list_or_watch, kind))

    @staticmethod
    def _bind(
        handler: Callable[[web.Request, Target], Any], kind: Kind, subresource: str | None = None
    ) -> Callable[[web.Request], Any]:
        async def bound(request: web.Request) -> web.StreamResponse:
            result: web.StreamResponse = await handler(
                request, _target(request, kind, subresource=subresource)
            )
            return result

        return bound

    # --- helpers -------------------------------------------------------------------------

    def _authorize(self, request: web.Request, verb: Verb, target: Target) -> Principal:
        principal = principal_of(request)
        why = denial(principal, verb=verb, realm=target.realm, subresource=target.subresource)
        if why is not None:
            raise ApiError(
                403,
                f"{why}: {verb} {target.label()} is forbidden",
                kind=target.kind.value,
                name=target.name,
            )
        return principal

    async def _admit(
        self, request: web.Request, target: Target, res: AnyResource, current: AnyResource | None
    ) -> None:
        """Admission (``admission``): what a non-admin's spec write may ask of the host.

        Runs on the object as it would be stored, after any patch, before any write.
        """
        if target.subresource is not None:
            return  # status: only admins (the controllers) write it
        _check_finalizers(target, res, current)
        _check_acted_on(target, res, current)
        await self._store(target, self._admission.admit(principal_of(request), res, current))

    async def _store(self, target: Target, call: Any) -> Any:
        """Await a registry call, translating its errors into API errors."""
        try:
            return await call
        except StoreError as exc:
            raise from_store_error(exc, kind=target.kind.value, name=target.name) from None

    def _prepare(self, body: Any, target: Target, *, name_from_url: bool) -> dict[str, Any]:
        """Make the body agree with the URL: kind, name and parent ids."""
        if not isinstance(body, dict):
            raise ApiError(400, f"the request body must be a {target.kind.value} object")
        document = dict(body)
        causes: list[Cause] = []
        kind = document.get("kind")
        if kind is None:
            document["kind"] = target.kind.value
        elif kind != target.kind.value:
            causes.append(
                Cause("kind", f"must be {target.kind.value} on this URL, got {quote(kind)}")
            )
        document.setdefault("apiVersion", API_VERSION)
        metadata = document.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ApiError(
                400, "metadata must be an object", causes=[Cause("metadata", "must be an object")]
            )
        metadata = dict(metadata)
        if name_from_url and target.name is not None:
            name = metadata.get("name")
            if not name:
                metadata["name"] = target.name
            elif name != target.name:
                causes.append(
                    Cause(
                        "metadata.name",
                        f"must be {quote(target.name)} (the name in the URL), got {quote(name)}",
                    )
                )
        document["metadata"] = metadata
        if target.kind == Kind.SECRET:
            causes.extend(_secret_scope_from_url(metadata, target.scope))
        spec = document.get("spec")
        if spec is None:
            spec = {}
        if isinstance(spec, dict):
            spec = dict(spec)
            for field, parent in zip(KINDS[target.kind].parent_fields, target.scope, strict=False):
                given = spec.get(field)
                if given in (None, ""):
                    spec[field] = parent
                elif given != parent:
                    causes.append(
                        Cause(
                            f"spec.{field}",
                            f"must be {parent!r} (the parent in the URL), got {quote(given)}",
                        )
                    )
            document["spec"] = spec
        if causes:
            raise ApiError(
                400,
                f"{target.kind.value} does not match the URL: "
                + "; ".join(f"{c.field}: {c.message}" for c in causes),
                kind=target.kind.value,
                name=target.name or metadata.get("name"),
                causes=causes,
            )
        return document

    @staticmethod
    def _parse(document: Mapping[str, Any]) -> AnyResource:
        try:
            return parse_resource(document)
        except InvalidResource as exc:
            raise ApiError(
                422,
                f'{exc.kind} "{exc.name}" is invalid: '
                + "; ".join(
                    f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes
                ),
                kind=exc.kind,
                name=exc.name,
                causes=[Cause(c.field, c.message) for c in exc.causes],
            ) from None

    # --- read ----------------------------------------------------------------------------

    async def get(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "get", target)
        res = await self._store(target, self._registry.get(target.kind, target.key))
        return _json(to_document(res))

    async def list_or_watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        if queryparams.flag(request, "watch"):
            return await self.watch(request, target)
        principal = self._authorize(request, "list", target)
        text, _ = _selector(request)
        fields = _field_filter(request, target.kind)
        # Not used by a list (it always reads the latest revision), but never ignored when
        # malformed: a client that sent nonsense learns it.
        queryparams.resource_version(request)
        queryparams.timeout_seconds(request)
        listed = await self._store(
            target, self._registry.list(target.kind, target.scope, label_selector=text)
        )
        items = [
            to_document(res)
            for res in listed.items
            if principal.may_see_realm(_realm_of(res)) and fields.matches(res)
        ]
        return _json(
            {
                "apiVersion": API_VERSION,
                "kind": f"{target.kind.value}List",
                "metadata": {"resourceVersion": str(listed.resource_version)},
                "items": items,
            }
        )

    # --- watch ---------------------------------------------------------------------------

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        """Newline-delimited ``{type, object}`` events, with BOOKMARKs while idle.

        Without ``resourceVersion`` (or with "0") the stream starts with an ADDED event per
        existing object, read at one revision, then follows changes after it. With one, it
        follows changes after that revision; if etcd has compacted it away the answer is a
        410 Status (or, once streaming, an ERROR event carrying it) and the client relists.
        """
        principal = self._authorize(request, "watch", target)
        text, selector = _selector(request)
        fields = _field_filter(request, target.kind)
        requested_rv = queryparams.resource_version(request)
        timeout = queryparams.timeout_seconds(request)

        def visible(res: AnyResource) -> bool:
            return (
                principal.may_see_realm(_realm_of(res))
                and fields.matches(res)
                and selector.matches(res.metadata.labels)
            )

        initial: list[AnyResource] = []
        if not requested_rv:  # absent or "0": list first, then follow
            listed = await self._store(
                target, self._registry.list(target.kind, target.scope, label_selector=text)
            )
            initial = [res for res in listed.items if visible(res)]
            start = int(listed.resource_version)
        else:
            start = requested_rv

        subscription = self._hub.subscribe(target.kind, target.scope, start)
        queue = subscription.queue
        try:
            first: Item | bool = False
            if not initial and self._settings.watch_start_grace > 0:
                # A compacted revision is refused as soon as etcd sees the watch: give it a
                # moment so that answer can be a plain HTTP 410 rather than an ERROR event.
                # (asyncio.timeout, not wait_for: on Python 3.11 that loses cancellations)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.watch_start_grace):
                        first = await queue.get()
            if isinstance(first, StoreError):
                raise from_store_error(first, kind=target.kind.value)
            if isinstance(first, BaseException):
                raise first
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Cache-Control": "no-store"}
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            stream = _EventWriter(response, kind=target.kind)
            for res in initial:
                await stream.event("ADDED", to_document(res))
            await self._follow(
                request=request,
                stream=stream,
                queue=queue,
                first=first,
                start=start,
                visible=visible,
                stream_for=timeout,
            )
            return response
        finally:
            subscription.close()

    async def _follow(
        self,
        *,
        request: web.Request,
        stream: _EventWriter,
        queue: asyncio.Queue[Item],
        first: Item | bool,
        start: int,
        visible: Callable[[AnyResource], bool],
        stream_for: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + stream_for if stream_for else None
        interval = self._settings.bookmark_interval
        next_bookmark = loop.time() + interval
        last_rv = start
        pending: Item | bool = first
        while True:
            if pending is False:
                now = loop.time()
                if self._closing.is_set() or _gone(request):
                    return
                if deadline is not None and now >= deadline:
                    return
                if now >= next_bookmark:
                    last_rv = max(last_rv, await self._bookmark_revision(queue, last_rv))
                    if queue.empty():
                        await stream.bookmark(last_rv)
                    next_bookmark = loop.time() + interval
                    continue
                wait = min(next_bookmark - now, 1.0)
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                try:
                    async with asyncio.timeout(wait):
                        pending = await queue.get()
                except TimeoutError:
                    continue
            item, pending = pending, False
            if item is None:
                return
            if isinstance(item, BaseException):
                error = (
                    from_store_error(item, kind=stream.kind.value)
                    if isinstance(item, StoreError)
                    else ApiError(500, "the watch stream failed; see the server log")
                )
                if not isinstance(item, StoreError):
                    log.error("watch %s failed", stream.kind.value, exc_info=item)
                await stream.event("ERROR", error.to_status())
                return
            assert isinstance(item, EncodedEvent)
            last_rv = max(last_rv, item.revision)
            if visible(item.object):
                await stream.raw(item.line)

    async def _bookmark_revision(self, queue: asyncio.Queue[Item], last_rv: int) -> int:
        """A revision an idle watcher can safely resume from.

        The store's current revision may be ahead of an event etcd has not yet delivered
        to us; a short pause lets such an event land in the queue first (it then goes out
        before the bookmark, which is skipped this round).
        """
        try:
            revision = await self._registry.current_revision()
        except StoreError:
            return last_rv
        await asyncio.sleep(min(0.05, self._settings.bookmark_interval / 10))
        return revision if queue.empty() else last_rv

    # --- write ---------------------------------------------------------------------------

    async def create(self, request: web.Request, target: Target) -> web.StreamResponse:
        # An editor may create a realm it is scoped to; which realm that is, only the body
        # says. Everyone else is authorized before the body is even read.
        realm_from_body = target.kind == Kind.REALM and principal_of(request).role == Role.EDITOR
        if not realm_from_body:
            self._authorize(request, "create", target)
        dry_run = _dry_run(request)
        body = await _read_body(request, self._settings.max_body_bytes)
        document = self._prepare(body, target, name_from_url=False)
        document.pop("status", None)  # controllers own status
        metadata = document["metadata"]
        for managed in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
            metadata.pop(managed, None)
        res = self._parse(document)
        created_target = target._replace(name=res.metadata.name)
        if realm_from_body:
            self._authorize(request, "create", created_target)
        await self._admit(request, created_target, res, None)
        if dry_run:
            # Everything a real create checks, short of writing: the size, the key still
            # free, the parent present and not being deleted.
            self._check_size(res, created_target)
            await self._check_absent(created_target)
            await self._check_parent(res, created_target)
            return _json(to_document(res), status=201)
        created = await self._store(created_target, self._registry.create(res))
        return _json(to_document(created), status=201)

    @staticmethod
    def _check_size(res: AnyResource, target: Target) -> None:
        size = len(json.dumps(to_document(res), separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_DOCUMENT_BYTES:
            why = f"the document is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
            raise ApiError(
                422,
                f"{target.label()}: {why}",
                kind=target.kind.value,
                name=target.name,
                causes=[Cause("", why)],
            )

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
        dry_run = _dry_run(request)
        body = await _read_body(request, self._settings.max_body_bytes)
        document = self._prepare(body, target, name_from_url=True)
        res = self._parse(document)
        current = await self._store(target, self._registry.get(target.kind, target.key))
        if not res.metadata.resource_version:
            # No precondition given: an unconditional update, against what is stored now.
            res.metadata.resource_version = current.metadata.resource_version
        elif res.metadata.resource_version != current.metadata.resource_version:
            raise self._stale(target, res.metadata.resource_version, current)
        await self._admit(request, target, res, current)
        if dry_run:
            merged = self._merged(current, res, target.subresource)
            self._check_size(merged, target)
            return _json(to_document(merged))
        write = self._registry.update_status if target.subresource else self._registry.update
        updated = await self._store(target, write(res))
        return _json(to_document(updated))

    @staticmethod
    def _stale(target: Target, given: str | None, current: AnyResource) -> ApiError:
        return ApiError(
            409,
            f"{target.label()} has been modified: resourceVersion {given} is not the current "
            f"{current.metadata.resource_version}; read it again and retry",
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
        dry_run = _dry_run(request)
        if request.content_type != MERGE_PATCH_CONTENT_TYPE:
            raise ApiError(
                415,
                f"PATCH needs Content-Type {MERGE_PATCH_CONTENT_TYPE} (JSON merge patch, "
                f"RFC 7386), got {request.content_type!r}",
            )
        patch = await _read_body(request, self._settings.max_body_bytes)
        if not isinstance(patch, dict):
            raise ApiError(400, "a merge patch must be a JSON object")
        precondition = (patch.get("metadata") or {}).get("resourceVersion")
        for _ in range(_PATCH_RETRIES):
            current = await self._store(target, self._registry.get(target.kind, target.key))
            before = to_document(current)
            if isinstance(current, Secret) and ("data" in patch or "stringData" in patch):
                # A patch of values merges into the stored ones, which no document shows:
                # they are added here, in memory only, never to a response.
                before = {**before, "data": _base64_values(current)}
            after = apply_merge_patch(before, patch)
            if not isinstance(after, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            if target.subresource == "status":
                after = {**before, "status": after.get("status", {})}
            else:
                after["status"] = before.get("status", {})
            document = self._prepare(after, target, name_from_url=True)
            res = self._parse(document)
            if precondition is None:
                res.metadata.resource_version = current.metadata.resource_version
            elif str(precondition) != current.metadata.resource_version:
                raise self._stale(target, str(precondition), current)
            await self._admit(request, target, res, current)
            if dry_run:
                merged = self._merged(current, res, target.subresource)
                self._check_size(merged, target)
                return _json(to_document(merged))
            write = self._registry.update_status if target.subresource else self._registry.update
            try:
                updated = await write(res)
            except Conflict:
                if precondition is not None:
                    raise
                continue  # someone wrote in between: patch the newer version
            except StoreError as exc:
                raise from_store_error(exc, kind=target.kind.value, name=target.name) from None
            return _json(to_document(updated))
        raise ApiError(
            409,
            f"{target.label()} kept changing while being patched; retry",
            kind=target.kind.value,
            name=target.name,
        )

    async def delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "delete", target)
        dry_run = _dry_run(request)
        cascade = await self._cascade(request)
        if dry_run:
            current = await self._store(target, self._registry.get(target.kind, target.key))
            if not cascade:
                await self._check_childless(target)
            return _json(to_document(current))
        # A cascade is only marked here; the children go after the answer (any number,
        # across restarts: see _start_cascade) and the object after them.
        remaining = await self._store(
            target,
            self._registry.delete(target.kind, target.key, cascade=cascade, background=cascade),
        )
        if cascade and remaining is not None:
            self._start_cascade(target)
        if remaining is not None:
            # Still held by finalizers: the object, now carrying its deletionTimestamp.
            return _json(to_document(remaining), status=202)
        return _json(
            status_document(
                code=200,
                reason="Deleted",
                message=f"{target.label()} deleted",
                name=target.name,
                kind=target.kind.value,
                success=True,
            )
        )

    async def _cascade(self, request: web.Request) -> bool:
        policy = queryparams.single(request, "propagationPolicy")
        if request.can_read_body:
            body = await _read_body(request, self._settings.max_body_bytes)
            if isinstance(body, dict):
                policy = policy or body.get("propagationPolicy")
                if "dryRun" in body and body["dryRun"] not in ([], ["All"]):
                    raise ApiError(400, "DeleteOptions.dryRun must be ['All']")
        if policy is not None:
            if policy in ("Foreground", "Background"):
                return True
            raise ApiError(
                400,
                f"propagationPolicy {quote(policy)} is not supported: use Foreground or Background "
                "(children are deleted) or leave it out (refused while children exist)",
                causes=[Cause("propagationPolicy", "must be Foreground or Background")],
            )
        return queryparams.flag(request, "cascade")

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


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _EventWriter:
    """Writes watch events, one JSON object per line."""

    def __init__(self, response: web.StreamResponse, *, kind: Kind) -> None:
        self._response = response
        self.kind = kind

    async def raw(self, line: bytes) -> None:
        await self._response.write(line)

    async def event(self, event_type: str, obj: Mapping[str, Any]) -> None:
        line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":"))
        await self._response.write(line.encode() + b"\n")

    async def bookmark(self, revision: int) -> None:
        await self.event(
            "BOOKMARK",
            {
                "apiVersion": API_VERSION,
                "kind": self.kind.value,
                "metadata": {"resourceVersion": str(revision)},
            },
        )
