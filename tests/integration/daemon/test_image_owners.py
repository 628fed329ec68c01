"""Who may undo an image import: a real kukeond over TLS, its admin and an editor of the
realm. What an admin imported into a realm is the admin's: the editor may not remove it,
prune it, import or pull over it (403 naming it), and its archive stays in the node's store;
so is a record that does not say who imported it (written before records said so); the
editor's own imports are the editor's, pulls the realm's; an image a cell names is refused
(409) unless forced.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from kukeon.runtime.containerd.namespaces import LABEL_INSTANCE
from tests.fixtures.containerd import clean_namespace
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
from tests.integration.controllers.helpers import cell_doc
from tests.integration.daemon.test_image_routes import realm_with_credentials

pytestmark = pytest.mark.integration

OWN = "kukeon.io/test/own:1"


def stored_archives(k: Any) -> list[str]:
    images = Path(k.config.state_dir) / "images"
    return sorted(p.name for p in images.glob("*.tar")) if images.exists() else []


async def test_an_editor_undoes_no_admins_import(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()  # the admin's import of the busybox test image into the realm
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    admin_archive = f"{hashlib.sha256(k.image.archive.read_bytes()).hexdigest()}.tar"
    assert admin_archive in stored_archives(k)
    own = image_archive(tmp_path, OWN)

    async with node.session("editor") as editor, node.session("admin") as admin:
        async with editor.get(images) as response:
            assert response.status == 200
            items = {i["name"]: i for i in (await response.json())["items"]}
        assert items[k.image.name]["importedBy"] == "admin"

        async with editor.delete(f"{images}/{k.image.name}") as response:
            assert response.status == 403, await response.text()
            status = await response.json()
        assert "imported by an admin" in status["message"]
        assert status["details"]["name"] == k.image.name

        # Forced or not: force is about cells, not whose the image is.
        async with editor.delete(f"{images}/{k.image.name}", params={"force": "true"}) as r:
            assert r.status == 403

        # The editor's import over the admin's name: refused whole, nothing changed.
        async with editor.post(images, data=k.image.archive.read_bytes()) as response:
            assert response.status == 403, await response.text()
            assert k.image.name in (await response.json())["message"]

        # The editor's own import is the editor's, and stays in the realm.
        async with editor.post(images, data=own.read_bytes()) as response:
            assert response.status == 201, await response.text()
        async with editor.get(f"{images}/{OWN}") as response:
            assert (await response.json())["importedBy"] == "editor"

        # Prune by the editor: removes its own unused image, keeps the admin's.
        async with editor.post(f"{images}/prune") as response:
            assert response.status == 200, await response.text()
            pruned = await response.json()
        assert pruned["removed"] == [OWN]
        assert pruned["kept"] == [k.image.name]
        assert pruned["archivesReleased"] == []
        assert admin_archive in stored_archives(k)

        async with editor.get(images) as response:
            names = [i["name"] for i in (await response.json())["items"]]
        assert names == [k.image.name]

        # The admin removes anything; the archive goes with the last holder of this
        # control plane: another one on the same containerd (its own archive store) holding
        # the image keeps nothing here.
        other = f"{k.realm}-other.kukeon.io"
        await k.containerd.namespaces.ensure(other, labels={LABEL_INSTANCE: "other"})
        try:
            await k.containerd.images(other).import_archive(k.image.archive)
            async with admin.delete(f"{images}/{k.image.name}") as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
        finally:
            await clean_namespace(k.containerd, other)
        assert answer["removed"] == [k.image.name]
        assert answer["archivesReleased"] == [k.image.name]
        assert admin_archive not in stored_archives(k)


async def test_an_image_a_cell_names_is_kept_unless_forced(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    own = image_archive(tmp_path, OWN)
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    main = {"id": "main", "image": OWN, "command": "sleep", "args": ["600"]}
    cell = {"apiVersion": "kukeon.io/v1beta1", **cell_doc(k, "user", [main])}
    async with node.session("editor") as editor:
        async with editor.post(images, data=own.read_bytes()) as response:
            assert response.status == 201, await response.text()
        async with editor.post(cells, json=cell) as response:
            assert response.status == 201, await response.text()
        async with editor.delete(f"{images}/{OWN}") as response:
            assert response.status == 409, await response.text()
            assert "s1/st1/user" in (await response.json())["message"]
        async with editor.delete(f"{images}/{OWN}", params={"force": "true"}) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["usedBy"] == ["s1/st1/user"]


async def test_an_image_that_does_not_say_who_imported_it_is_the_admins(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """A record without the owner label (an import or a pull before kukeon wrote it) may
    have been an admin's import: an editor may not remove, prune or replace it."""
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    old = image_archive(tmp_path, OWN)
    await k.containerd.images(k.namespace).import_archive(old)  # as kukeond did before
    async with node.session("editor") as editor, node.session("admin") as admin:
        async with editor.get(f"{images}/{OWN}") as response:
            assert (await response.json())["importedBy"] is None
        async with editor.delete(f"{images}/{OWN}") as response:
            assert response.status == 403, await response.text()
            status = await response.json()
        assert "does not say who imported it" in status["message"]
        assert "only an admin removes it" in status["message"]
        assert status["details"]["name"] == OWN
        async with editor.post(images, data=old.read_bytes()) as response:
            assert response.status == 403, await response.text()
            assert OWN in (await response.json())["message"]
        async with editor.post(f"{images}/prune") as response:
            pruned = await response.json()
        assert pruned["kept"] == sorted([k.image.name, OWN])
        assert pruned["removed"] == []
        async with admin.delete(f"{images}/{OWN}") as response:
            assert response.status == 200, await response.text()


@pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"])
async def test_an_editors_pull_is_the_realms_and_replaces_no_admins_import(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    registry: Registry,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    node = tls_kukeond
    k = node.k
    await realm_with_credentials(k, registry)
    images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    pull = {"image": registry.reference}
    async with node.session("editor") as editor, node.session("admin") as admin:
        async with editor.post(f"{images}/pull", params=pull) as response:
            assert response.status == 201, await response.text()
            assert (await response.json())["importedBy"] == "registry"
        async with editor.delete(f"{images}/{registry.reference}") as response:
            assert response.status == 200, await response.text()

        # The admin imports that name: the editor's pull would replace the admin's image.
        archive = image_archive(tmp_path, registry.reference, stop_signal="SIGINT")
        async with admin.post(images, data=archive.read_bytes()) as response:
            assert response.status == 201, await response.text()
        async with editor.get(f"{images}/{registry.reference}") as response:
            imported = await response.json()
        assert imported["importedBy"] == "admin"
        async with editor.post(f"{images}/pull", params=pull) as response:
            assert response.status == 403, await response.text()
            status = await response.json()
        assert "imported by an admin" in status["message"]
        assert status["details"]["name"] == registry.reference
        async with editor.get(f"{images}/{registry.reference}") as response:
            assert (await response.json())["digest"] == imported["digest"]
