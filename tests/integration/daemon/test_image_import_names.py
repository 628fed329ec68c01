"""``kukectl image import`` (the route, through kukeond's real unix socket) refuses an
archive that records an image under a name that is not an image reference (``MyApp:1``,
blanks): no cell could name it (the API refuses such an image), so it would only be left
unusable. The whole archive is refused, nothing imported or kept; an archive kept in the
node's archive store before that rule still imports for the cells that name it. A pull of
what is not a reference is a 400 (a query parameter, not a field of a body)."""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.runtime.containerd.errors import ImageNameNotReferenceError
from kukeon.runtime.containerd.oci import Descriptor
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
GOOD = "kukeon.io/test/good:1"


def renamed_archive(source: Path, target: Path, names: Sequence[str]) -> Path:
    """``source`` (an OCI archive of one image) with that image listed once per name in
    its ``index.json``, each under ``io.containerd.image.name`` (as ctr and kukeon read it)."""
    with tarfile.open(source) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(target, "w") as out:
        for member, data in members:
            if data is not None and posixpath.normpath(member.name) == "index.json":
                index = json.loads(data)
                entry = index["manifests"][0]
                index["manifests"] = [
                    {**entry, "annotations": {"io.containerd.image.name": name}} for name in names
                ]
                data = json.dumps(index).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


async def realm_images(http: aiohttp.ClientSession, realm: str) -> list[str]:
    async with http.get(f"{API}/realms/{realm}/images") as response:
        assert response.status == 200, await response.text()
        return [item["name"] for item in (await response.json())["items"]]


async def test_an_archive_naming_an_image_by_no_reference_is_refused_whole(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    mixed = renamed_archive(k.image.archive, tmp_path / "mixed.tar", [GOOD, "MyApp:1"])
    blanks = renamed_archive(k.image.archive, tmp_path / "blanks.tar", [" kukeon.io/test/b:1"])
    store = k.config.state_dir / "images"
    async with session(k) as http:
        async with http.post(f"{API}/realms/{k.realm}/images", data=mixed.read_bytes()) as response:
            assert response.status == 422, await response.text()
            status = await response.json()
        assert status["reason"] == "Invalid"
        message = status["message"]
        assert "'MyApp:1'" in message
        assert GOOD not in message
        assert "nothing was imported" in message
        assert str(k.config.state_dir) not in message
        assert status["details"]["causes"] == [
            {
                "field": "index.json manifests[1]",
                "message": "invalid image reference 'MyApp:1': repository path component "
                "'MyApp' must be lowercase letters and digits separated by '.', '_', '__' "
                "or '-'",
            }
        ]
        # All or nothing: the good image of the archive was not imported either, and the
        # node's archive store kept nothing of it.
        assert GOOD not in await realm_images(http, k.realm)
        assert sorted(p.name for p in store.glob("*.tar")) == []
        kept = store / "index.json"
        assert GOOD not in (kept.read_text() if kept.exists() else "")

        async with http.post(
            f"{API}/realms/{k.realm}/images", data=blanks.read_bytes()
        ) as response:
            assert response.status == 422, await response.text()
            causes = (await response.json())["details"]["causes"]
            assert causes == [
                {
                    "field": "index.json manifests[0]",
                    "message": "image name ' kukeon.io/test/b:1' has blanks around it",
                }
            ]

        good = renamed_archive(k.image.archive, tmp_path / "good.tar", [GOOD])
        async with http.post(f"{API}/realms/{k.realm}/images", data=good.read_bytes()) as response:
            assert response.status == 201, await response.text()
        assert GOOD in await realm_images(http, k.realm)

    # An archive kept by the node's archive store before the rule (imported for a cell
    # stored then, naming 'MyApp:1' exactly) still imports when asked to, as it did.
    images = k.containerd.images(k.namespace)
    with pytest.raises(ImageNameNotReferenceError):
        await images.import_archive(mixed)
    imported = await images.import_archive(mixed, references_only=False)
    assert [image.name for image in imported] == [GOOD, "MyApp:1"]


async def test_a_pull_of_what_is_not_a_reference_is_a_bad_request(kukeond: Kukeond) -> None:
    """The reference is a query parameter, not a field of a body: 400 BadRequest, as
    Kubernetes answers a malformed query (a cell's image, a field of its body, is 422)."""
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    url = f"{API}/realms/{k.realm}/images/pull"
    async with session(k) as http:
        for image, why in (
            ("MyApp:1", "'MyApp' must be lowercase"),
            ("[::ffff:1.2.3.4]:5000/x", "is not a host[:port]"),
            ("0123456789abcdef" * 4, "image id, not a name"),
        ):
            async with http.post(url, params={"image": image}) as response:
                assert response.status == 400, await response.text()
                status = await response.json()
            assert status["reason"] == "BadRequest"
            assert why in status["message"]
            assert [c["field"] for c in status["details"]["causes"]] == ["image"]
        assert await realm_images(http, k.realm) == []


async def test_an_import_records_the_normalised_name_so_both_spellings_find_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """An archive naming ``busybox:1`` was recorded under that literal name, so a cell
    naming ``docker.io/library/busybox:1`` did not find it (and went to Docker Hub). An
    import now records the normalised name, as ``ctr images import`` and ``docker load``
    do; what an import recorded as written before stays usable under either spelling, and
    a new import of the same reference moves it along (it is found first)."""
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    images = k.containerd.images(k.namespace)
    store = controllers.images.archives
    one = renamed_archive(k.image.archive, tmp_path / "one.tar", ["busybox:1"])
    async with session(k) as http:
        async with http.post(f"{API}/realms/{k.realm}/images", data=one.read_bytes()) as response:
            assert response.status == 201, await response.text()
            assert (await response.json())["images"] == ["docker.io/library/busybox:1"]
        listed = await realm_images(http, k.realm)
    assert "docker.io/library/busybox:1" in listed
    assert "busybox:1" not in listed
    assert "docker.io/library/busybox:1" in await store.names()

    # What a node before this recorded: an image record and a kept archive under the
    # name as written.
    [base] = [image for image in await images.list() if image.name == k.image.name]
    await images.put("busybox:2", target=base.target)
    three = renamed_archive(k.image.archive, tmp_path / "three.tar", ["busybox:3"])
    await store.record(await store.store(three), ["busybox:3"])

    spellings = {
        "short": "busybox:1",
        "full": "docker.io/library/busybox:1",
        "old-record": "docker.io/library/busybox:2",
        "old-archive": "docker.io/library/busybox:3",
    }
    for name, image in spellings.items():
        await k.apply(cell_doc(k, name, [{**container(k, "main"), "image": image}]))
    for name in spellings:
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")

    # A new import of a reference recorded as written before moves that record too (here
    # from a target of another image), and the kept archive of the old spelling: cells
    # naming it that way find them first.
    elsewhere = Descriptor(media_type=base.target.media_type, digest="sha256:" + "0" * 64, size=1)
    await images.put("busybox:4", target=elsewhere)
    four = renamed_archive(k.image.archive, tmp_path / "four.tar", ["busybox:4"])
    three_again = renamed_archive(k.image.archive, tmp_path / "three2.tar", ["busybox:3", GOOD])
    async with session(k) as http:
        for archive in (four, three_again):
            async with http.post(
                f"{API}/realms/{k.realm}/images", data=archive.read_bytes()
            ) as response:
                assert response.status == 201, await response.text()
    moved = await images.get("busybox:4")
    assert moved.target == (await images.get("docker.io/library/busybox:4")).target
    assert moved.target.digest == base.target.digest
    kept = await store.names()
    assert kept["busybox:3"] == kept["docker.io/library/busybox:3"] == kept[GOOD]
