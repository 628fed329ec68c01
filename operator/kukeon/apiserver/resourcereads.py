"""The reads of the resource routes: get, list and watch.

A watch (``?watch=true``) is served from the API server's shared feeds (``watchhub``) in
the watch protocol of ``watchstream``: newline-delimited ``{type, object}`` events, with
BOOKMARKs while idle. Every read shows only what the caller may see: the realms of its
role, and the objects its label and field selectors choose.
"""

from __future__ import annotations

import json

from aiohttp import web

from kukeon.api import API_VERSION, AnyResource, key_of, to_document
from kukeon.apiserver import queryparams
from kukeon.apiserver.auth import Principal
from kukeon.apiserver.fieldselector import FieldSelector
from kukeon.apiserver.handlerbase import HandlerBase
from kukeon.apiserver.request import field_filter, json_answer, label_selector
from kukeon.apiserver.revisionwait import wait_for_revision, wait_limit
from kukeon.apiserver.secretdigests import (
    body_without_digests,
    event_without_digests,
    hides_digests,
    without_digests,
)
from kukeon.apiserver.status import from_store_error
from kukeon.apiserver.target import Target
from kukeon.apiserver.watchhub import EncodedEvent
from kukeon.apiserver.watchstream import WatchResponder
from kukeon.store import LabelSelector, StoreError
from kukeon.store.keys import check_scope


def _realm_of(res: AnyResource) -> str:
    key = key_of(res)
    return key[0]


class ChosenObjects:
    """What a watch with label or field selectors has shown its client, so that an object
    starting to match is ADDED and one ceasing to match is DELETED, as kube-apiserver's
    watch cache says it; filtered by its new version alone, an object that stopped
    matching was never taken back from the client (``get -w -l``, reflectors, the web
    console kept it). The DELETED event carries the object as it is now (kube-apiserver's
    carries the version before, at the new revision): clients take it by its key.

    A watch resumed from a resourceVersion (kukectl's ``get -w`` and reflectors list
    first, then watch from the list's revision) has no list here: an object's first event
    is judged by its version before (``EncodedEvent.prior``: the one the registry held,
    or for a sealed kind one read with its values left sealed), and from then on the
    object is followed. Without it (a version no one here decoded), a match is sent as
    the feed says (MODIFIED) and a non-match not at all.
    """

    _TYPED = b'{"type":"'

    def __init__(self, listed_objects: list[AnyResource], *, listed: bool) -> None:
        self._shown = {key_of(res) for res in listed_objects}
        self._complete = listed
        self._followed: set[tuple[str, ...]] = set()
        """Resumed: the objects whose client's copy is known, from their first event."""

    def line(self, event: EncodedEvent, *, now: bool, before: bool | None = None) -> bytes | None:
        """The event's line as this client must see it; None to send nothing. ``before``:
        whether the version before matched, when known (a MODIFIED event's ``prior``)."""
        key = key_of(event.object)
        known = self._complete or key in self._followed
        was = key in self._shown if known or before is None else before
        known = known or before is not None
        if event.type == "DELETED":
            self._shown.discard(key)
            self._followed.discard(key)
            return event.line if was or (now and not known) else None
        if not self._complete:
            self._followed.add(key)
        if not now:
            self._shown.discard(key)
            return self._retyped(event, "DELETED") if was else None
        self._shown.add(key)
        if was or event.type == "ADDED" or not known:
            return event.line
        return self._retyped(event, "ADDED")

    def _retyped(self, event: EncodedEvent, new_type: str) -> bytes:
        old = self._TYPED + event.type.encode() + b'"'
        if not event.line.startswith(old):  # never: watchhub.encode writes the type first
            return event.line
        return self._TYPED + new_type.encode() + b'"' + event.line[len(old) :]


_WARNED_NAMES = 10
"""Invalid documents named in a list's warning; the rest are counted."""


def _json_bytes(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class ResourceReads(HandlerBase):
    """get, list and watch of every kind."""

    async def get(self, request: web.Request, target: Target) -> web.StreamResponse:
        principal = self._authorize(request, "get", target)
        hide = hides_digests(principal, target.kind)
        # Every GET is a consistent read (at least etcd's revision when it arrived), so
        # any resourceVersion the server has reached is honoured ("not older than").
        await self._reached(target, queryparams.resource_version(request))
        if await self._cache_fresh(target):
            assert self._cache is not None
            cached = self._cache.lookup(target.kind, target.key)
            if cached is not None:
                return _json_bytes(body_without_digests(cached.body) if hide else cached.body)
            # Absent: etcd says how (not found, or a document that does not decode).
        res = await self._store(target, self._registry.get(target.kind, target.key))
        document = to_document(res)
        return json_answer(without_digests(document) if hide else document)

    async def _reached(
        self, target: Target, wanted: int | None, stream_for: float | None = None
    ) -> None:
        """A read from a resourceVersion newer than etcd's waits for it a little, then is a
        504 ``ResourceVersionTooLarge`` (``revisionwait``); none or "0" reads the latest.
        ``stream_for``: a watch's ``timeoutSeconds``, which bounds the wait too."""
        if not wanted:
            return
        if self._cache is not None and self._cache.cached(target.kind):
            known, current = self._cache.revision(target.kind), self._cache.current_revision
        else:
            known, current = 0, self._registry.current_revision
        wait = wait_limit(self._settings.request_timeout, stream_for)
        await self._store(target, wait_for_revision(wanted, current, known=known, wait=wait))

    async def _cache_fresh(self, target: Target) -> bool:
        """Whether this read may be answered from the watch cache (``watchcache``)."""
        if self._cache is None or not self._cache.cached(target.kind):
            return False
        fresh: bool = await self._store(target, self._cache.fresh(target.kind))
        return fresh

    async def list_or_watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        if queryparams.flag(request, "watch"):
            return await self.watch(request, target)
        principal = self._authorize(request, "list", target)
        text, selector = label_selector(request)
        fields = field_filter(request, target.kind)
        wanted = queryparams.list_resource_version(request)
        queryparams.whole_list_options(request, watch=False)
        queryparams.timeout_seconds(request)
        # A list always reads at least etcd's revision when it arrived: any resourceVersion
        # the server has reached is honoured ("not older than"), a newer one is a 504.
        await self._reached(target, wanted)
        if await self._cache_fresh(target):
            # The store's list refuses a scope no key can have (a CellProfile's stack under
            # space '-'); the cache, a map, would answer it empty and the warning's key range
            # then failed with a 500.
            self._check_scope(target)
            answer = self._list_from_cache(target, principal, selector, fields)
        else:
            listed = await self._store(
                target, self._registry.list(target.kind, target.scope, label_selector=text)
            )
            hide = hides_digests(principal, target.kind)
            items = [
                without_digests(to_document(res)) if hide else to_document(res)
                for res in listed.items
                if principal.may_see_realm(_realm_of(res)) and fields.matches(res)
            ]
            answer = json_answer(
                {
                    "apiVersion": API_VERSION,
                    "kind": f"{target.kind.value}List",
                    "metadata": {"resourceVersion": str(listed.resource_version)},
                    "items": items,
                }
            )
        self._warn_of_invalid(answer, target, principal)
        return answer

    @staticmethod
    def _check_scope(target: Target) -> None:
        try:
            check_scope(target.kind, target.scope)
        except StoreError as exc:
            raise from_store_error(exc, kind=target.kind.value, name=target.name) from None

    def _warn_of_invalid(self, answer: web.Response, target: Target, principal: Principal) -> None:
        """A list skips stored documents that are not valid: its answer says which (a
        ``Warning`` header, as kube-apiserver's; kukectl prints it), so an operator does
        not take them for gone. A GET of one says why."""
        invalid_under = getattr(self._registry, "invalid_under", None)
        if invalid_under is None:
            return
        # As the list's own items: a Realm's key is its name, which an editor of other
        # realms is not told either.
        keys = [
            key
            for key in invalid_under(target.kind, target.scope)
            if principal.may_see_realm(key[0])
        ]
        if not keys:
            return
        shown = ", ".join("/".join(key) for key in keys[:_WARNED_NAMES])
        more = f" and {len(keys) - _WARNED_NAMES} more" if len(keys) > _WARNED_NAMES else ""
        what = "document is" if len(keys) == 1 else "documents are"
        text = (
            f"{len(keys)} stored {target.kind.value} {what} invalid and not listed: "
            f"{shown}{more} (a get of one says why)"
        )
        # A key is whatever was written into etcd: only printable ASCII goes into a header.
        safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
        answer.headers["Warning"] = f'299 - "{safe}"'

    def _list_from_cache(
        self,
        target: Target,
        principal: Principal,
        selector: LabelSelector,
        fields: FieldSelector[AnyResource],
    ) -> web.Response:
        """The list as ``json_answer`` would encode it, from the cached bodies."""
        assert self._cache is not None
        revision = self._cache.revision(target.kind)
        chosen = self._cache.under(target.kind, target.scope, selector)
        if hides_digests(principal, target.kind):
            bodies = [
                body_without_digests(cached.body)
                for cached in chosen
                if principal.may_see_realm(_realm_of(cached.resource))
                and fields.matches(cached.resource)
            ]
        elif principal.sees_every_realm and not fields.terms:
            bodies = [cached.body for cached in chosen]  # nothing more to filter
        else:
            bodies = [
                cached.body
                for cached in chosen
                if principal.may_see_realm(_realm_of(cached.resource))
                and fields.matches(cached.resource)
            ]
        head = json.dumps(
            {
                "apiVersion": API_VERSION,
                "kind": f"{target.kind.value}List",
                "metadata": {"resourceVersion": str(revision)},
            },
            separators=(",", ":"),
        )
        return _json_bytes(b"".join((head[:-1].encode(), b',"items":[', b",".join(bodies), b"]}")))

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        """Newline-delimited ``{type, object}`` events, with BOOKMARKs while idle.

        Without ``resourceVersion`` (or with "0") the stream starts with an ADDED event per
        existing object, read at one revision, then follows changes after it. With one, it
        follows changes after that revision; if etcd has compacted it away the answer is a
        410 Status (or, once streaming, an ERROR event carrying it) and the client relists.
        """
        principal = self._authorize(request, "watch", target)
        text, selector = label_selector(request)
        fields = field_filter(request, target.kind)
        requested_rv = queryparams.watch_resource_version(request)
        queryparams.whole_list_options(request, watch=True)
        timeout = queryparams.timeout_seconds(request)
        await self._reached(target, requested_rv, timeout)

        def visible(res: AnyResource) -> bool:
            return (
                principal.may_see_realm(_realm_of(res))
                and fields.matches(res)
                and selector.matches(res.metadata.labels)
            )

        hide = hides_digests(principal, target.kind)
        initial: list[AnyResource] = []
        if not requested_rv:  # absent or "0": list first, then follow
            listed = await self._store(
                target, self._registry.list(target.kind, target.scope, label_selector=text)
            )
            initial = [res for res in listed.items if visible(res)]
            start = int(listed.resource_version)
        else:
            start = requested_rv
        chosen = (
            ChosenObjects(initial, listed=not requested_rv)
            if selector.requirements or fields.terms
            else None
        )

        def encode(event: EncodedEvent) -> tuple[int, bytes | None]:
            now = visible(event.object)
            line: bytes | None = event.line
            if chosen is not None:
                before = None if event.prior is None else visible(event.prior)
                line = chosen.line(event, now=now, before=before)
            if line is None or (chosen is None and not now):
                return event.revision, None
            return event.revision, event_without_digests(line) if hide else line

        responder = WatchResponder(
            kind=target.kind.value,
            encode=encode,
            bookmark_interval=self._settings.bookmark_interval,
            start_grace=self._settings.watch_start_grace,
            closing=self._closing,
            current_revision=self._registry.current_revision,
        )
        subscription = self._hub.subscribe(target.kind, target.scope, start)
        try:
            return await responder.respond(
                request,
                subscription.queue,
                initial=[
                    without_digests(to_document(res)) if hide else to_document(res)
                    for res in initial
                ],
                start=start,
                stream_for=timeout,
            )
        finally:
            subscription.close()
