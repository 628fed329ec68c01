"""``GET .../realms/{realm}/quota``: a realm's quota and what its objects use of it.

As Kubernetes' ResourceQuota status (``hard`` and ``used``): the limits in force (the
realm's ``spec.quota``, else kukeond's defaults; a limit absent from ``hard`` is none) and
what this API server's index counts now, writes in flight included
(``kukeon.store.realmquota``). Read by ``kukectl describe realm``. Anyone who may read the
realm may read it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kukeon.api import API_VERSION, Kind
from kukeon.apiserver.handlerbase import HandlerBase
from kukeon.apiserver.request import json_answer
from kukeon.apiserver.status import ApiError
from kukeon.apiserver.target import Target
from kukeon.store.realmquota import RealmQuotas

QUOTA_SUBRESOURCE = "quota"
QUOTA_STATUS_KIND = "RealmQuotaStatus"


class QuotaUsageReads(HandlerBase):
    """The realm quota subresource (read only)."""

    async def quota(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "get", target)
        await self._store(target, self._registry.get(Kind.REALM, target.key))  # 404 if absent
        quotas = getattr(self._registry, "quotas", None)
        if not isinstance(quotas, RealmQuotas):
            raise ApiError(
                404,
                "this API server does not count the realms' usage (its registry enforces no "
                "quotas)",
                kind=target.kind.value,
                name=target.name,
            )
        realm = target.key[0]
        await self._store(target, quotas.wait_synced())
        limits, used = quotas.limits(realm), quotas.usage(realm)
        hard: dict[str, Any] = {}
        if limits.objects is not None:
            hard["objects"] = limits.objects
        if limits.storage_bytes is not None:
            hard["storageBytes"] = limits.storage_bytes
        if limits.spaces is not None:
            hard["spaces"] = limits.spaces
        return json_answer(
            {
                "apiVersion": API_VERSION,
                "kind": QUOTA_STATUS_KIND,
                "metadata": {"name": realm},
                "hard": hard,
                "used": {
                    "objects": used.objects,
                    "storageBytes": used.storage_bytes,
                    "spaces": used.spaces,
                },
            }
        )
