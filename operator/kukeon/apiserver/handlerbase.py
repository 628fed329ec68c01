"""What every resource handler does first: authorize the caller, admit the write, translate
the registry's errors.

``ResourceHandlers`` (``handlers``) is put together from the reads (``resourcereads``) and
the writes (``resourcewrites``), both built on ``HandlerBase``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from kukeon.api import AnyResource, Kind
from kukeon.apiserver.admission import Admission
from kukeon.apiserver.auth import Principal, Verb, denial
from kukeon.apiserver.imagerules import check_images
from kukeon.apiserver.portclaims import check_port_claims
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.request import principal_of
from kukeon.apiserver.settings import ApiSettings
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.apiserver.target import Target
from kukeon.apiserver.watchcache import WatchCache
from kukeon.apiserver.watchhub import WatchHub
from kukeon.apiserver.writerules import (
    ContainerCheck,
    check_acted_on,
    check_finalizers,
    check_host_names,
    check_labels,
    check_networks,
    check_runnable,
)
from kukeon.store import StoreError


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
    ) -> None:
        self._registry = registry
        self._container_check = container_check
        self._hub = hub
        self._cache = cache
        self._settings = settings
        self._closing = closing
        self._admission = Admission(registry=registry, allowances=settings.host_allowances)
        self._cascades: dict[tuple[Kind, tuple[str, ...]], asyncio.Task[None]] = {}

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
        await self._store(target, self._admission.admit(principal_of(request), res, current))
        # Last: a dry run refused only here passed every other check (`kukectl apply` takes
        # that for a pass when it creates the spaces named in the same run).
        await self._store(target, check_networks(self._registry, target, res, current))

    async def _store(self, target: Target, call: Any) -> Any:
        """Await a registry call, translating its errors into API errors."""
        try:
            return await call
        except StoreError as exc:
            raise from_store_error(exc, kind=target.kind.value, name=target.name) from None
