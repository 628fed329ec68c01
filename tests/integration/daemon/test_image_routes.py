"""The realm image routes of kukeond (list, inspect, import, pull, rm, prune) against its
real containerd, through its unix socket; pulls from a real registry with the realm's
credentials."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.realm import namespace_node_label
from kukeon.runtime.containerd.containers import LABEL_REALM
from kukeon.runtime.containerd.oci import host_architecture
from tests.fixtures.containerd import MAKE_TEST_IMAGE
from tests.fixtures.kukeond import Kukeond
from tests.integration.containerd.test_pull_registry import (  # noqa: F401 - fixtures
    USERNAME,
    Registry,
    registry,
    test_image,
)

# The test registry (docker-registry) listens on 127.0.0.1: kukeond pulls from a registry on
# its node only when its configuration lists it, as an installation's must.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"]),
]

API = "http://kukeond/apis/kukeon.io/v1beta1"
OTHER_NAME = "kukeon.io/test/other:1"


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def archive_facts(path: Path) -> dict[str, Any]:
    """The manifest of a one-image OCI archive: its layers' and config's digests and sizes."""
    with tarfile.open(path) as tar:
        members = {member.name.removeprefix("./"): member for member in tar.getmembers()}

        def read(name: str) -> Any:
            handle = tar.extractfile(members[name])
            assert handle is not None
            return json.loads(handle.read())

        index = read("index.json")
        digest = index["manifests"][0]["digest"]
        manifest = read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    return {
        "digest": digest,
        "config": manifest["config"]["digest"],
        "layers": [layer["digest"] for layer in manifest["layers"]],
        "size": manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]),
    }


def cell_document(k: Kukeond, name: str, image: str) -> dict[str, Any]:
    return {
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [{"id": "main", "image": image, "command": "sleep", "args": ["600"]}],
        },
    }


def stored_archives(k: Kukeond) -> list[str]:
    images = Path(k.config.state_dir) / "images"
    return (
        sorted(str(p.relative_to(images)) for p in images.rglob("*.tar")) if images.exists() else []
    )


@pytest.fixture(scope="module")
def other_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox test image under another name."""
    archive = tmp_path_factory.mktemp("other-image") / "other.tar"
    subprocess.run(
        [str(MAKE_TEST_IMAGE), str(archive), OTHER_NAME], check=True, capture_output=True
    )
    return archive


async def test_list_inspect_rm_and_prune(kukeond: Kukeond, other_image: Path) -> None:
    k = kukeond
    await k.hierarchy()  # imports the busybox test image into the realm
    facts = archive_facts(k.image.archive)
    images_url = f"{API}/realms/{k.realm}/images"
    other = other_image

    async with session(k) as http:
        async with http.post(images_url, data=other.read_bytes()) as response:
            assert response.status == 201, await response.text()
            assert (await response.json())["images"] == [OTHER_NAME]

        async with http.get(images_url) as response:
            assert response.status == 200
            items = {item["name"]: item for item in (await response.json())["items"]}
        assert set(items) == {k.image.name, OTHER_NAME}
        busybox = items[k.image.name]
        assert busybox["digest"] == facts["digest"]
        assert busybox["size"] == facts["size"]  # layers and config, not the manifest's 4xx B
        assert busybox["size"] > 500_000
        assert busybox["created"] == "1970-01-01T00:00:00Z"
        assert busybox["platform"] == f"linux/{host_architecture()}"

        async with http.get(f"{images_url}/{k.image.name}") as response:
            assert response.status == 200, await response.text()
            inspected = await response.json()
        assert inspected["name"] == k.image.name
        assert inspected["size"] == facts["size"]
        assert inspected["configDigest"] == facts["config"]
        assert [layer["digest"] for layer in inspected["layers"]] == facts["layers"]
        assert any(entry.startswith("PATH=") for entry in inspected["config"]["env"])
        assert inspected["config"]["cmd"] == ["sh"]

        async with http.get(f"{images_url}/kukeon.io/test/nope:9") as response:
            assert response.status == 404
            assert "kukeon.io/test/nope:9" in (await response.json())["message"]

        # A cell of the realm names busybox: rm refuses, naming it; prune keeps it.
        await k.apply(cell_document(k, "user", k.image.name))
        async with http.delete(f"{images_url}/{k.image.name}") as response:
            assert response.status == 409
            message = (await response.json())["message"]
        assert "s1/st1/user" in message
        assert "force" in message

        other_archive = f"{hashlib.sha256(other.read_bytes()).hexdigest()}.tar"
        assert other_archive in stored_archives(k)  # kept for the node's other realms
        async with http.post(f"{images_url}/prune") as response:
            assert response.status == 200, await response.text()
            pruned = await response.json()
        assert pruned["removed"] == [OTHER_NAME]
        # No realm holds it any more and no cell names it: the kept archive goes too.
        assert pruned["archivesReleased"] == [OTHER_NAME]
        assert other_archive not in stored_archives(k)
        async with http.get(images_url) as response:
            names = [item["name"] for item in (await response.json())["items"]]
        assert names == [k.image.name]

        # --force removes it under the cell; once the cell is gone a plain rm works, and
        # containerd's collector frees the image's content.
        await k.registry.delete(Kind.CELL, (k.realm, "s1", "st1", "user"))
        await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "user"))
        async with http.delete(f"{images_url}/{k.image.name}") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["removed"] == [k.image.name]
        async with http.delete(f"{images_url}/{k.image.name}") as response:
            assert response.status == 404
    content = k.containerd.content(k.namespace)
    for digest in (facts["digest"], facts["config"], *facts["layers"]):
        assert not await content.has_blob(digest), digest


async def test_rm_force_removes_an_image_a_cell_names(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_document(k, "user", k.image.name))
    async with session(k) as http:
        url = f"{API}/realms/{k.realm}/images/{k.image.name}"
        async with http.delete(url, params={"force": "true"}) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
    assert answer["removed"] == [k.image.name]
    assert answer["usedBy"] == ["s1/st1/user"]
    assert answer["archivesReleased"] == []  # the cell still names it: it may need it again


def not_an_archive(kind: str, valid: Path) -> bytes:
    if kind == "junk":
        return b"this is not a tar archive at all"
    if kind == "no-layout":  # a tar, but not an OCI layout
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        return buffer.getvalue()
    if kind == "deep-index":  # an index.json nested past Python's recursion limit: was a 500
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, member in (
                ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                ("index.json", b"[" * 100_000 + b"]" * 100_000),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(member)
                tar.addfile(info, io.BytesIO(member))
        return buffer.getvalue()
    data = valid.read_bytes()
    if kind == "truncated-gzip":
        return gzip.compress(data, mtime=0)[: len(data) // 3]
    return data[: len(data) // 2]  # a tar cut in the middle of a layer


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("junk", "not a tar archive"),
        ("no-layout", "no oci-layout file"),
        ("truncated-gzip", "cannot be read"),
        ("truncated-tar", "cannot be read"),
        ("deep-index", "index.json is nested too deeply"),
    ],
)
async def test_a_bad_archive_is_refused_in_one_line_and_leaves_nothing(
    kukeond: Kukeond, kind: str, why: str
) -> None:
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    body = not_an_archive(kind, k.image.archive)
    before = stored_archives(k)
    async with (
        session(k) as http,
        http.post(f"{API}/realms/{k.realm}/images", data=body) as response,
    ):
        assert response.status == 422
        status = await response.json()
    message = status["message"]
    assert message.startswith("the upload is not a valid OCI image archive: ")
    assert why in message
    assert "\n" not in message
    assert str(k.config.state_dir) not in message
    assert stored_archives(k) == before


async def realm_with_credentials(k: Kukeond, pushed: Registry) -> None:
    """The test realm, allowed to pull from the test registry, with a space and a stack."""
    credentials = {
        "serverAddress": f"http://{pushed.host}",
        "username": USERNAME,
        "password": pushed.password,
    }
    await k.apply(
        {
            "kind": "Realm",
            "metadata": {"name": k.realm},
            "spec": {"registryCredentials": [credentials]},
        }
    )
    await k.apply({"kind": "Space", "metadata": {"name": "s1"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "st1"},
            "spec": {"realmId": k.realm, "spaceId": "s1"},
        }
    )
    await k.wait_for(Kind.STACK, (k.realm, "s1", "st1"), state="Ready")


async def test_pull_uses_the_realms_registry_credentials(
    kukeond: Kukeond,
    registry: Registry,  # noqa: F811 - the fixture
) -> None:
    k = kukeond
    await realm_with_credentials(k, registry)
    url = f"{API}/realms/{k.realm}/images/pull"
    async with session(k) as http:
        async with http.post(url, params={"image": registry.reference}) as response:
            assert response.status == 201, await response.text()
            pulled = await response.json()
        assert pulled["name"] == registry.reference
        assert pulled["size"] > 0
        async with http.get(f"{API}/realms/{k.realm}/images") as response:
            names = [item["name"] for item in (await response.json())["items"]]
        assert registry.reference in names

        missing = registry.reference.replace(":test", ":missing")
        async with http.post(url, params={"image": missing}) as response:
            assert response.status == 422
            message = (await response.json())["message"]
        assert missing in message
        assert "\n" not in message

        async with http.post(url, params={"image": "Not A Reference"}) as response:
            assert response.status == 400
        async with http.post(url) as response:
            assert response.status == 400


async def test_a_cell_says_it_is_pulling_its_image(
    kukeond: Kukeond,
    registry: Registry,  # noqa: F811 - the fixture
) -> None:
    k = kukeond
    await realm_with_credentials(k, registry)
    revision = await k.registry.current_revision()
    key = (k.realm, "s1", "st1", "pulled")
    await k.apply(cell_document(k, "pulled", registry.reference))
    await k.wait_for(Kind.CELL, key, state="Ready", within=120)
    # Every version the cell's document went through, from etcd's history.
    seen: list[tuple[str, str | None, str | None]] = []
    async for event in k.registry.watch(Kind.CELL, key[:3], resource_version=revision):
        cell = event.object
        assert isinstance(cell, Cell)
        status = cell.status
        seen.append((str(status.state), status.reason, status.message))
        if str(status.state) == "Ready":
            break
    assert ("Pending", "Pulling", f"pulling image {registry.reference}") in seen, seen
    assert seen[-1] == ("Ready", None, None)


@pytest.mark.kukeond_config(insecure_registries=[])
async def test_an_unlisted_registry_on_the_node_is_not_pulled_from(
    kukeond: Kukeond,
    registry: Registry,  # noqa: F811 - the fixture
) -> None:
    """A registry on loopback that kukeond's configuration does not list gets no request:
    `kukectl image pull` is answered 422 saying what to list, and a cell naming such an
    image fails with that reason (before, loopback was spoken to over HTTP unasked: any
    service on the node's loopback got GETs under /v2/ from an image reference)."""
    k = kukeond
    await realm_with_credentials(k, registry)
    why = f"registry {registry.host}: {registry.reference}: {registry.host} is a loopback address"
    async with session(k) as http:
        url = f"{API}/realms/{k.realm}/images/pull"
        async with http.post(url, params={"image": registry.reference}) as response:
            assert response.status == 422, await response.text()
            message = (await response.json())["message"]
    assert why in message
    assert "insecureRegistries, --insecure-registry" in message
    await k.apply(cell_document(k, "refused", registry.reference))
    cell = await k.wait_for(
        Kind.CELL,
        (k.realm, "s1", "st1", "refused"),
        until=lambda c: isinstance(c, Cell) and c.status.reason == "ImageUnavailable",
    )
    assert isinstance(cell, Cell)
    assert cell.status.message is not None
    assert why in cell.status.message


async def test_a_namespace_an_import_made_goes_with_its_realm(kukeond: Kukeond) -> None:
    """An import into a realm no cell of runs on the node makes the realm's namespace there,
    labelled as the realm's controller labels it: once the realm is deleted (its node held
    no finalizer: no cell), the node's orphan collector purges it, images and all."""
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    async with (
        session(k) as http,
        http.post(f"{API}/realms/{k.realm}/images", data=k.image.archive.read_bytes()) as r,
    ):
        assert r.status == 201, await r.text()
    labels = (await k.containerd.namespaces.get(k.namespace)).labels
    assert labels[namespace_node_label(k.config.node_name)] == "true"
    assert labels[LABEL_REALM] == k.realm
    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
    await k.wait_gone(Kind.REALM, (k.realm,))
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.collect_orphans()
    names = {namespace.name for namespace in await k.containerd.namespaces.list()}
    assert k.namespace not in names
