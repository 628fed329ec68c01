"""What every resource handler does first: authorize the caller, admit the write, translate
the registry's errors.

``ResourceHandlers`` (``handlers``) is put together from the reads (``resourcereads``) and
the writes (``resourcewrites``), both built on ``HandlerBase``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from kukeon.api import AnyResource, Kind
from kukeon.apiserver.admission import Admission
from kukeon.apiserver.auth import Principal, Role, Verb, denial
from kukeon.apiserver.fieldvalidation import warn
from kukeon.apiserver.imagerules import check_images
from kukeon.apiserver.levellowered import lowered_level_warnings
from kukeon.apiserver.portclaims import check_port_claims
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.request import principal_of
from kukeon.apiserver.settings import ApiSettings
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.apiserver.target import Target
from kukeon.apiserver.watchcache import WatchCache
from kukeon.apiserver.watchhub import WatchHub
from kukeon.apiserver.writebudget import WRITE_OVERHEAD_BYTES, RealmRates, WriteBudget
from kukeon.apiserver.writerules import (
    ContainerCheck,
    check_acted_on,
    check_finalizers,
    check_host_names,
    check_labels,
    check_networks,
    check_node_selector,
    check_runnable,
)
from kukeon.apiserver.writewarnings import command_line_warnings
from kukeon.store import NotFound, StoreError


def stored_nothing(error: ApiError | StoreError) -> bool:
    """Whether a failed write surely stored nothing: a refusal (4xx), or a 503 of an etcd
    known away (``EtcdAway``, refused before anything was sent: the one 503 that carries
    ``Retry-After``). Another 5xx may have landed (``OutcomeUnknown``), so it stays charged."""
    if isinstance(error, StoreError):
        error = from_store_error(error)
    return error.code < 500 or (error.code == 503 and error.retry_after_seconds is not None)


class HandlerBase:
    """The registry, settings and shared state of the resource handlers."""

    def __init__(
        self,
        *,
        registry: RegistryApi,
        settings: ApiSettings,
        closing: asyncio.Event,
        hub: WatchHub,
        cache: WatchCache | None = None,
        container_check: ContainerCheck | None = None,
        write_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._registry = registry
        self._container_check = container_check
        self._hub = hub
        self._cache = cache
        self._settings = settings
        self._closing = closing
        self._admission = Admission(
            registry=registry,
            allowances=settings.host_allowances,
            listed_registries=settings.insecure_registries,
        )
        self._cascades: dict[tuple[Kind, tuple[str, ...]], asyncio.Task[None]] = {}
        self._budget = WriteBudget(default=settings.realm_write_rate)
        self._rates = RealmRates(default=settings.realm_write_rate, read_realm=self._realm_or_none)
        self._write_refused = write_refused

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
        check_finalizers(target, res, current)
        check_labels(target, res, current)
        check_acted_on(target, res, current)
        check_runnable(target, res, current, self._container_check)
        check_images(target, res, current)
        check_host_names(target, res, current)
        await self._store(target, check_port_claims(self._registry, res, current))
        await self._store(target, check_node_selector(self._registry, target, res, current))
        await self._store(target, self._admission.admit(principal_of(request), res, current))
        # Last: a dry run refused only here passed every other check (`kukectl apply` takes
        # that for a pass when it creates the spaces named in the same run).
        await self._store(target, check_networks(self._registry, target, res, current))
        for text in command_line_warnings(res, current):
            warn(request, text)
        allowances = self._admission.allowances
        lowered = lowered_level_warnings(self._registry, allowances, res, current)
        for text in await self._store(target, lowered):
            warn(request, text)

    async def _store(self, target: Target, call: Any) -> Any:
        """Await a registry call, translating its errors into API errors."""
        try:
            return await call
        except StoreError as exc:
            raise from_store_error(exc, kind=target.kind.value, name=target.name) from None

    @contextlib.asynccontextmanager
    async def _charged(
        self, request: web.Request, target: Target, size: Callable[[], int] | None = None
    ) -> AsyncIterator[None]:
        """Charge the write about to be made to its realm's budget (``writebudget``): a 429
        when the realm has written all it may for now; given back when the write surely
        stored nothing (``stored_nothing``). ``size``: the document's bytes (none: a delete),
        measured only when charged. Admins and requests outside any realm are not charged."""
        realm = target.realm
        if realm is None or principal_of(request).role in (Role.ADMIN, Role.NODE):
            yield
            return
        cost = WRITE_OVERHEAD_BYTES + (size() if size is not None else 0)
        if target.kind == Kind.REALM and request.method == "POST":
            # A realm being created has no stored rate of its own, and its creator, below
            # admin, cannot give it one (admission): kukeond's, without reading etcd.
            rate = self._rates.default
        else:
            rate = await self._store(target, self._rates.of(realm))
        try:
            self._budget.charge(realm, cost, rate)
        except ApiError:
            if self._write_refused is not None:
                self._write_refused(realm)
            raise
        try:
            yield
        except (ApiError, StoreError) as error:
            if stored_nothing(error):
                self._budget.refund(realm, cost, rate)
            raise

    async def _realm_or_none(self, realm: str) -> AnyResource | None:
        try:
            return await self._registry.get(Kind.REALM, (realm,))
        except NotFound:
            return None
