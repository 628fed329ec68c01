"""``kukectl image rm`` (the route, through kukeond's real unix socket and containerd) of an
image recorded under two spellings: ``busybox:1`` (an import before imports normalised
names) and ``docker.io/library/busybox:1`` (a pull, or an import since). A cell naming
either finds one of them, so removing one spelling alone left the image in use and listed;
both records go, and the node's archive store entries of both spellings. And a new import
of a name replaces its archive in the store: the old copy does not stay until an rm."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_image_import_names import (
    API,
    realm_images,
    renamed_archive,
    session,
)

pytestmark = pytest.mark.integration

SHORT, FULL = "busybox:1", "docker.io/library/busybox:1"


async def test_rm_removes_every_spelling_an_image_is_recorded_under(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    images = k.containerd.images(k.namespace)
    store = controllers.images.archives
    kept_before = set(store.directory.glob("*.tar"))
    one = renamed_archive(k.image.archive, tmp_path / "one.tar", [SHORT])
    async with (
        session(k) as http,
        http.post(f"{API}/realms/{k.realm}/images", data=one.read_bytes()) as response,
    ):
        assert response.status == 201, await response.text()
        assert (await response.json())["images"] == [FULL]
    # What a node before normalised names left beside it: a record and a kept archive
    # under the short spelling (another archive: an older build of the tag).
    [base] = [image for image in await images.list() if image.name == k.image.name]
    await images.put(SHORT, target=base.target)
    old = renamed_archive(k.image.archive, tmp_path / "old.tar", [SHORT, "kukeon.io/test/o:1"])
    await store.record(await store.store(old), [SHORT, "kukeon.io/test/o:1"])
    assert {SHORT, FULL} <= set(await store.names())

    await k.apply(cell_doc(k, "user", [{**container(k, "main"), "image": FULL}]))
    await k.wait_for(Kind.CELL, cell_key(k, "user"), state="Ready")
    async with session(k) as http:
        url = f"{API}/realms/{k.realm}/images/{SHORT}"
        # A cell naming the other spelling uses it: refused, as for one spelling.
        async with http.delete(url) as response:
            assert response.status == 409, await response.text()
            assert "s1/st1/user" in (await response.json())["message"]
        await k.registry.delete(Kind.CELL, cell_key(k, "user"))
        await k.wait_gone(Kind.CELL, cell_key(k, "user"))

        async with http.delete(url) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        assert answer["removed"] == [SHORT, FULL]  # as a cell looks for them
        assert {SHORT, FULL} <= set(answer["archivesReleased"])
        listed = await realm_images(http, k.realm)
        assert SHORT not in listed
        assert FULL not in listed
        async with http.delete(f"{API}/realms/{k.realm}/images/{FULL}") as response:
            assert response.status == 404, await response.text()
    kept = await store.names()
    assert SHORT not in kept
    assert FULL not in kept
    # The old archive stays for the other image it holds; the new one is gone.
    assert kept["kukeon.io/test/o:1"] in {p.name for p in store.directory.glob("*.tar")}
    assert len(set(store.directory.glob("*.tar")) - kept_before) == 1


async def test_a_new_import_of_a_name_replaces_its_kept_archive(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    controllers = k.daemon.controllers
    assert controllers is not None
    store = controllers.images.archives
    name = "kukeon.io/test/app:1"
    first = renamed_archive(k.image.archive, tmp_path / "first.tar", [name])
    # The same image under the same name, in other bytes (compressed): another stored file.
    second = tmp_path / "second.tar.gz"
    second.write_bytes(gzip.compress(first.read_bytes()))
    async with session(k) as http:
        for archive in (first, second):
            async with http.post(
                f"{API}/realms/{k.realm}/images", data=archive.read_bytes()
            ) as response:
                assert response.status == 201, await response.text()
            files = sorted(p.name for p in store.directory.glob("*.tar"))
            # One copy kept, the one the name points at: the replaced one went.
            assert files == [(await store.names())[name]], files
