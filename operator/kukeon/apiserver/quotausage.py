"""``GET .../realms/{realm}/quota``: a realm's quota and what its objects use of it.

As Kubernetes' ResourceQuota status (``hard`` and ``used``): the limits in force (the
realm's ``spec.quota``, else kukeond's defaults; a limit absent from ``hard`` is none) and
what this API server's index counts now, writes in flight included
(``kukeon.store.realmquota``). Read by ``kukectl describe realm``. Anyone who may read the
realm may read it.

A kukeond that runs cells adds ``images``: the image content its own containerd holds for
the realm now (``used``, bytes as stored) and the realm's limit there (``hard``, absent:
none; ``spec.quota.imageStorageBytes``, else the node's ``realmImageStorageBytes``), read
at request time through ``IMAGE_USAGE_KEY`` (nothing is written to etcd). Images are per
node and this is the answering node's only (``node`` names it); another node's images are
``kukectl image ls --node NAME``. An ``--api-only`` kukeond holds no images: no ``images``.
``?node=`` naming another node (or any node on an ``--api-only`` kukeond) is a 400: this
route does not forward, and the answer must not carry one node's figures for another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import web

from kukeon.api import API_VERSION, Kind, Realm
from kukeon.apiserver.handlerbase import HandlerBase
from kukeon.apiserver.queryparams import node_name
from kukeon.apiserver.request import json_answer
from kukeon.apiserver.status import ApiError, Cause
from kukeon.apiserver.target import Target
from kukeon.store.realmquota import RealmQuotas

QUOTA_SUBRESOURCE = "quota"
QUOTA_STATUS_KIND = "RealmQuotaStatus"


class ImageUsage(NamedTuple):
    """A realm's image storage on one node."""

    node: str
    used: int | None
    """Bytes of image content the realm's namespace holds (None: could not be read)."""
    hard: int | None
    """The realm's limit on that node (None: no limit)."""
    problem: str = ""
    """Why ``used`` could not be read."""


ImageUsageRead = Callable[[Realm], Awaitable[ImageUsage]]
IMAGE_USAGE_KEY: web.AppKey[ImageUsageRead] = web.AppKey("kukeon_image_usage")
"""Set by a kukeond that runs cells: how its containerd's image storage of a realm is read."""


def image_usage_document(usage: ImageUsage) -> dict[str, Any]:
    """``images`` of the quota answer (``hard`` absent: no limit, as in ``hard`` above)."""
    found: dict[str, Any] = {"node": usage.node, "used": usage.used}
    if usage.hard is not None:
        found["hard"] = usage.hard
    if usage.problem:
        found["problem"] = usage.problem
    return found


class QuotaUsageReads(HandlerBase):
    """The realm quota subresource (read only)."""

    async def quota(self, request: web.Request, target: Target) -> web.StreamResponse:
        self._authorize(request, "get", target)
        node = node_name(request)  # a name no node can have: the client's 400, not a read
        found = await self._store(target, self._registry.get(Kind.REALM, target.key))  # 404
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
        answer: dict[str, Any] = {
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
        read_images = request.app.get(IMAGE_USAGE_KEY)
        if read_images is not None and isinstance(found, Realm):
            usage = await read_images(found)
            _check_node(node, usage.node)
            answer["images"] = image_usage_document(usage)
        else:
            _check_node(node, None)
        return json_answer(answer)


def _check_node(asked: str | None, answering: str | None) -> None:
    """``?node=`` is honoured by the image routes only; here the images are always the
    answering node's, so naming another node is refused rather than answered with this
    one's figures under the name asked for."""
    if asked is None or asked == answering:
        return
    held = (
        f"the quota answer's images are the answering node's ({answering}), not node {asked}'s"
        if answering
        else "this API server runs no cells and answers no node's images"
    )
    message = (
        f"{held}; a node's images: .../realms/REALM/images?node=NAME (kukectl image ls --node NAME)"
    )
    raise ApiError(400, f"query parameter node: {message}", causes=[Cause("node", message)])
