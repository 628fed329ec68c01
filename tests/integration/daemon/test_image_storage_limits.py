"""How much image content a realm's users may leave on a node: a real kukeond over TLS, its
admin and an editor of the realm. The realm's `spec.quota.imageStorageBytes` (only an admin
sets it) and kukeond's `imageStorageMaxBytes` bound what an import adds (403 naming the
limit, nothing imported); blobs the realm already holds are not counted again; a pull is
refused once the limit is reached. A cell naming an image from a real registry (the
docker-registry fixture) is bounded by the same limit when its node pulls the image. The realm's
quota answer shows what the node holds for it and the limit there."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import Cell, Kind, Realm
from kukeon.controllers.images import ImageStorageLimits
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import (  # noqa: F401 - the fixture
    TlsKukeond,
    image_archive,
    tls_kukeond,
)
from tests.integration.containerd.test_pull_registry import (  # noqa: F401 - fixtures
    Registry,
    registry,
    test_image,
)
from tests.integration.daemon.test_image_routes import (
    API,
    cell_document,
    realm_with_credentials,
    session,
)

pytestmark = pytest.mark.integration

NODE_CAP = 1 << 40
REALM_DEFAULT = 3 << 30


async def held(node: TlsKukeond, namespaces: list[str] | None = None) -> int:
    client = node.k.containerd
    names = namespaces or [n.name for n in await client.namespaces.list()]
    blobs: dict[str, int] = {}
    for name in names:
        blobs.update(await client.content(name).sizes())
    return sum(blobs.values())


async def with_test_image(node: TlsKukeond) -> int:
    """The realm's hierarchy with the busybox test image; the bytes its namespace holds."""
    await node.k.hierarchy()
    before = await held(node, [node.k.namespace])
    assert before > 500_000
    return before


async def set_quota(node: TlsKukeond, limit: int) -> None:
    url = f"/apis/kukeon.io/v1beta1/realms/{node.k.realm}"
    async with node.session("admin") as admin:
        patch = {"spec": {"quota": {"imageStorageBytes": limit}}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with admin.patch(url, json=patch, headers=headers) as response:
            assert response.status == 200, await response.text()
    realm = await node.k.registry.get(Kind.REALM, (node.k.realm,))
    assert isinstance(realm, Realm)
    assert realm.spec.quota is not None
    assert realm.spec.quota.image_storage_bytes == limit


@pytest.mark.kukeond_config(image_storage_max_bytes=NODE_CAP)
async def test_a_realms_image_storage_is_bounded(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    before = await with_test_image(node)
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    await set_quota(node, before + 100)
    signalled = image_archive(tmp_path, "kukeon.io/test/signalled:1", stop_signal="SIGINT")
    async with node.session("editor") as editor:
        # An editor may not raise it.
        patch = {"spec": {"quota": {"imageStorageBytes": 0}}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with editor.patch(
            f"/apis/kukeon.io/v1beta1/realms/{k.realm}", json=patch, headers=headers
        ) as response:
            assert response.status == 403, await response.text()

        # A new config and manifest (~1 KB) do not fit in 100 bytes: nothing imported.
        async with editor.post(images, data=signalled.read_bytes()) as response:
            assert response.status == 403, await response.text()
            status = await response.json()
        assert "spec.quota.imageStorageBytes" in status["message"]
        assert f"limit of {before + 100} bytes" in status["message"]
        assert status["details"]["causes"][0]["field"] == "imageStorageBytes"
        assert await held(node, [k.namespace]) == before

        # The same image under another name adds no blob: it fits.
        renamed = image_archive(tmp_path, "kukeon.io/test/renamed:1")
        async with editor.post(images, data=renamed.read_bytes()) as response:
            assert response.status == 201, await response.text()

        # At the limit, a pull is refused before anything is fetched.
        await set_quota(node, before)
        async with editor.post(
            f"{images}/pull", params={"image": "127.0.0.1:1/nothing:1"}
        ) as response:
            assert response.status == 403, await response.text()
            assert "are held" in (await response.json())["message"]

        # Raised, the import goes through.
        await set_quota(node, before + 100_000)
        async with editor.post(images, data=signalled.read_bytes()) as response:
            assert response.status == 201, await response.text()
    assert await held(node, [k.namespace]) > before


@pytest.mark.kukeond_config(realm_image_storage_bytes=REALM_DEFAULT)
async def test_the_realms_quota_answer_shows_its_image_storage_on_the_node(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    before = await with_test_image(node)
    quota = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/quota"
    expected = {"node": k.config.node_name, "hard": REALM_DEFAULT}

    async def images_shown(who: str) -> dict[str, object]:
        async with node.session(who) as caller, caller.get(quota) as response:
            assert response.status == 200, await response.text()
            shown: dict[str, object] = (await response.json())["images"]
            return shown

    # A realm editor (whose import the limit refuses) sees it; the node's default applies.
    assert await images_shown("editor") == {**expected, "used": before}
    signalled = image_archive(tmp_path, "kukeon.io/test/signalled:1", stop_signal="SIGINT")
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    async with (
        node.session("editor") as editor,
        editor.post(images, data=signalled.read_bytes()) as response,
    ):
        assert response.status == 201, await response.text()
    after = await held(node, [k.namespace])
    assert after > before
    assert await images_shown("editor") == {**expected, "used": after}
    # The realm's own limit before the node's; 0: none (no `hard`, as in the quota's).
    await set_quota(node, after + 100)
    assert await images_shown("admin") == {**expected, "used": after, "hard": after + 100}
    await set_quota(node, 0)
    assert await images_shown("admin") == {"node": k.config.node_name, "used": after}

    # ?node= names the answering node, or is refused: this route does not forward, and
    # another node's name was answered with this node's figures (a bad name was too).
    async with node.session("admin") as admin:
        mine = {"node": k.config.node_name}
        async with admin.get(quota, params=mine) as response:
            assert response.status == 200, await response.text()
        for other in ("n-elsewhere", "Bad_Name"):
            async with admin.get(quota, params={"node": other}) as response:
                status = await response.json()
                assert response.status == 400, status
                assert status["message"].startswith("query parameter node: "), status
                assert status["details"]["causes"][0]["field"] == "node"


@pytest.mark.kukeond_config(image_storage_max_bytes=NODE_CAP)
async def test_every_realm_together_is_bounded_by_the_node_cap(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    assert controllers.images.storage == ImageStorageLimits(realm=None, node=NODE_CAP)
    # The containerd is the test session's: what other tests left counts too, so the cap
    # is set from what every namespace holds now.
    controllers.images.storage = ImageStorageLimits(node=await held(node) + 100)
    signalled = image_archive(tmp_path, "kukeon.io/test/signalled:1", stop_signal="SIGINT")
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    async with node.session("admin") as admin:
        async with admin.post(images, data=signalled.read_bytes()) as response:
            assert response.status == 403, await response.text()
            assert "imageStorageMaxBytes" in (await response.json())["message"]
        controllers.images.storage = ImageStorageLimits(node=await held(node) + 100_000)
        async with admin.post(images, data=signalled.read_bytes()) as response:
            assert response.status == 201, await response.text()


@pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"])
async def test_a_cell_naming_an_image_past_the_quota_does_not_pull_it(
    kukeond: Kukeond,
    registry: Registry,  # noqa: F811 - the fixture imported above
) -> None:
    """The image a node pulls by itself for a cell counts as a `kukectl image pull` does:
    past the realm's limit (read from the manifest, before any layer is fetched) the cell
    fails with ImageUnavailable naming the limit, the bytes held and those the image would
    add, and nothing of the image is left; under a larger limit the same cell starts."""
    k = kukeond
    await realm_with_credentials(k, registry)
    before = await k.containerd.content(k.namespace).sizes()
    limit = sum(before.values()) + 100
    url = f"{API}/realms/{k.realm}"
    headers = {"Content-Type": "application/merge-patch+json"}
    async with session(k) as http:
        patch = {"spec": {"quota": {"imageStorageBytes": limit}}}
        async with http.patch(url, json=patch, headers=headers) as response:
            assert response.status == 200, await response.text()
        key = (k.realm, "s1", "st1", "big")
        await k.apply(cell_document(k, "big", registry.reference))
        cell = await k.wait_for(
            Kind.CELL,
            key,
            until=lambda c: isinstance(c, Cell) and c.status.reason == "ImageUnavailable",
            within=120,
        )
        assert isinstance(cell, Cell)
        message = cell.status.message or ""
        assert f"over the limit of {limit} bytes" in message, message
        assert f"to the {sum(before.values())} bytes held" in message, message
        adding = int(message.split("pulling the image would add ")[1].split(" ")[0])
        assert adding > 100, message
        assert "spec.quota.imageStorageBytes" in message, message
        # Nothing of the refused image: no blob, no record.
        assert await k.containerd.content(k.namespace).sizes() == before
        names = [image.name for image in await k.containerd.images(k.namespace).list()]
        assert registry.reference not in names

        patch = {"spec": {"quota": {"imageStorageBytes": limit + adding}}}
        async with http.patch(url, json=patch, headers=headers) as response:
            assert response.status == 200, await response.text()
        await k.wait_for(Kind.CELL, key, state="Ready", within=120)
    assert sum((await k.containerd.content(k.namespace).sizes()).values()) <= limit + adding
