"""The image storage a realm's quota answer shows (``images``): what this node's containerd
holds for the realm, read when asked, and the limit an import or a pull is checked against
there (the realm's ``spec.quota.imageStorageBytes``, else the node's default)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from aiohttp import web

from kukeon.api import ObjectMeta, Realm
from kukeon.api.realm import RealmQuota, RealmSpec
from kukeon.apiserver.quotausage import IMAGE_USAGE_KEY, ImageUsage, image_usage_document
from kukeon.controllers.imagearchives import ImageArchives
from kukeon.controllers.images import ImageProvider, ImageStorageLimits
from kukeon.daemon.imageroutes import ImageRoutes
from kukeon.runtime.containerd.errors import ContainerdUnavailableError


class _Content:
    def __init__(self, blobs: dict[str, int] | None) -> None:
        self.blobs = blobs

    async def sizes(self) -> dict[str, int]:
        if self.blobs is None:
            raise ContainerdUnavailableError(
                address="/run/containerd.sock", operation="list", detail="connection refused"
            )
        return dict(self.blobs)


class _Containerd:
    def __init__(self, blobs: dict[str, dict[str, int]] | None) -> None:
        self.blobs = blobs
        self.asked: list[str] = []

    def content(self, namespace: str) -> _Content:
        self.asked.append(namespace)
        return _Content(None if self.blobs is None else self.blobs.get(namespace, {}))


def _routes(tmp_path: Path, containerd: _Containerd, storage: ImageStorageLimits) -> ImageRoutes:
    images = ImageProvider(
        containerd=cast(Any, containerd), archives=ImageArchives(tmp_path), storage=storage
    )
    host = SimpleNamespace(
        containerd=containerd,
        settings=SimpleNamespace(node_name="n1"),
        namespace_of=lambda realm: f"{realm.metadata.name}.kukeon.io",
    )
    controllers = SimpleNamespace(images=images, host=host)
    return ImageRoutes(controllers=cast(Any, controllers), registry=cast(Any, None))


def _realm(quota: int | None) -> Realm:
    spec = RealmSpec(quota=RealmQuota(image_storage_bytes=quota)) if quota is not None else None
    return Realm(metadata=ObjectMeta(name="r"), spec=spec or RealmSpec())


async def test_the_realms_blobs_and_its_own_limit_before_the_nodes_default(
    tmp_path: Path,
) -> None:
    containerd = _Containerd({"r.kukeon.io": {"sha256:a": 1000, "sha256:b": 24}, "o": {"x": 9}})
    routes = _routes(tmp_path, containerd, ImageStorageLimits(realm=8000, node=1 << 30))
    assert await routes.realm_image_usage(_realm(5000)) == ImageUsage("n1", 1024, 5000)
    assert containerd.asked == ["r.kukeon.io"]  # the realm's namespace only
    # Unset: the node's realmImageStorageBytes; 0: no limit (the node-wide cap is not it).
    assert await routes.realm_image_usage(_realm(None)) == ImageUsage("n1", 1024, 8000)
    assert await routes.realm_image_usage(_realm(0)) == ImageUsage("n1", 1024, None)


async def test_a_containerd_that_does_not_answer_is_said_not_raised(tmp_path: Path) -> None:
    routes = _routes(tmp_path, _Containerd(None), ImageStorageLimits(realm=8000))
    usage = await routes.realm_image_usage(_realm(None))
    assert (usage.node, usage.used, usage.hard) == ("n1", None, 8000)
    assert "connection refused" in usage.problem
    assert image_usage_document(usage)["problem"] == usage.problem


def test_the_routes_hand_the_hook_to_the_quota_answer(tmp_path: Path) -> None:
    app = web.Application()
    routes = _routes(tmp_path, _Containerd({}), ImageStorageLimits())
    routes.add_routes(app)
    assert app[IMAGE_USAGE_KEY] == routes.realm_image_usage


def test_no_limit_is_no_hard_as_in_the_quotas_hard() -> None:
    assert image_usage_document(ImageUsage("n1", 10, None)) == {"node": "n1", "used": 10}
    assert image_usage_document(ImageUsage("n1", 10, 20)) == {
        "node": "n1",
        "used": 10,
        "hard": 20,
    }
