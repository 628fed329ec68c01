"""`kukectl image` as a user runs it (a subprocess) against a real kukeond: import, ls,
inspect, rm, prune, and pull from a real registry with the realm's credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kukeon.api import Kind
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.containerd.test_pull_registry import (  # noqa: F401 - fixtures
    USERNAME,
    Registry,
    registry,
    test_image,
)
from tests.integration.daemon.test_image_import_names import renamed_archive

# The test registry (docker-registry) listens on 127.0.0.1: kukeond pulls from a registry on
# its node only when its configuration lists it, as an installation's must.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kukeond_config(insecure_registries=["127.0.0.1"]),
]


async def parents(k: Kukeond, **realm_spec: object) -> None:
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": realm_spec})
    await k.apply({"kind": "Space", "metadata": {"name": "web"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "site"},
            "spec": {"realmId": k.realm, "spaceId": "web"},
        }
    )
    await k.wait_for(Kind.STACK, (k.realm, "web", "site"), state="Ready")


async def test_import_ls_inspect_rm_prune(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    realm = ["--realm", k.realm]
    await parents(k)

    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an archive\n" * 100)
    code, out, err = await kukectl(k, "image", "import", str(junk), *realm)
    assert code == 1
    assert out == ""
    assert err.startswith("error: the upload is not a valid OCI image archive: not a tar archive")
    assert err.count("\n") == 1
    assert str(k.config.state_dir) not in err

    code, out, err = await kukectl(k, "image", "import", str(k.image.archive), *realm)
    assert code == 0, err
    assert out == f"image/{k.image.name} imported into realm {k.realm}\n"

    code, out, err = await kukectl(k, "image", "ls", *realm)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["NAME", "DIGEST", "SIZE", "CREATED"]
    name, digest, size, created = row.split()
    assert name == k.image.name
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", digest)
    assert re.fullmatch(r"[0-9.]+(kB|MB)", size)  # the layers', not the manifest's 4xx B
    assert created.endswith("y")  # the reproducible test image says 1970

    code, out, err = await kukectl(k, "image", "ls", *realm, "-o", "wide")
    assert code == 0, err
    assert re.search(r"sha256:[0-9a-f]{64}\s", out)
    assert out.splitlines()[0].split()[-1] == "PLATFORM"

    code, out, err = await kukectl(k, "image", "ls", *realm, "-o", "json")
    assert code == 0, err
    listed = json.loads(out)
    assert [item["name"] for item in listed["items"]] == [k.image.name]
    item = listed["items"][0]
    assert item["digest"].startswith(digest)
    assert item["size"] > 500_000
    assert item["created"] == "1970-01-01T00:00:00Z"

    code, out, err = await kukectl(k, "image", "ls", *realm, "-o", "yaml")
    assert code == 0, err
    assert yaml.safe_load(out)["items"] == listed["items"]

    code, out, err = await kukectl(k, "image", "inspect", k.image.name, *realm)
    assert code == 0, err
    inspected = yaml.safe_load(out)
    assert inspected["name"] == k.image.name
    assert inspected["size"] == item["size"]
    assert inspected["platform"].startswith("linux/")
    assert len(inspected["layers"]) == 1
    assert inspected["config"]["cmd"] == ["sh"]
    assert any(entry.startswith("PATH=") for entry in inspected["config"]["env"])

    code, out, err = await kukectl(k, "image", "inspect", "kukeon.io/test/nope:1", *realm)
    assert code == 1
    assert err == f"error: image 'kukeon.io/test/nope:1' not found in realm {k.realm}\n"

    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "user"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "web",
                "stackId": "site",
                "containers": [{"id": "main", "image": k.image.name, "command": "true"}],
            },
        }
    )
    code, out, err = await kukectl(k, "image", "rm", k.image.name, *realm)
    assert code == 1
    assert "web/site/user" in err
    assert err.count("\n") == 1

    code, out, err = await kukectl(k, "image", "prune", *realm)
    assert code == 0, err
    assert out == f"no unused images in realm {k.realm}\n"

    code, out, err = await kukectl(k, "image", "rm", "--force", k.image.name, *realm)
    assert code == 0, err
    assert out == f"image/{k.image.name} removed from realm {k.realm}\n"
    assert "web/site/user" in err

    await k.registry.delete(Kind.CELL, (k.realm, "web", "site", "user"))
    await k.wait_gone(Kind.CELL, (k.realm, "web", "site", "user"))
    code, out, err = await kukectl(k, "image", "ls", *realm)
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()[1:]]
    if names:  # the cell's controller may have imported it again before it went
        code, out, err = await kukectl(k, "image", "prune", *realm)
        assert code == 0, err
        assert out == f"image/{k.image.name} removed from realm {k.realm}\n"
    code, out, err = await kukectl(k, "image", "ls", *realm)
    assert out.splitlines() == ["NAME   DIGEST   SIZE   CREATED"]

    code, out, err = await kukectl(k, "image", "rm", k.image.name, "other:1", *realm)
    assert code == 1
    assert err.count("error: ") == 2


async def test_pull_with_the_realms_credentials(
    kukeond: Kukeond,
    registry: Registry,  # noqa: F811 - the fixture
) -> None:
    k = kukeond
    credentials = {
        "serverAddress": f"http://{registry.host}",
        "username": USERNAME,
        "password": registry.password,
    }
    await parents(k, registryCredentials=[credentials])
    code, out, err = await kukectl(k, "image", "pull", registry.reference, "--realm", k.realm)
    assert code == 0, err
    assert re.fullmatch(
        rf"image/{re.escape(registry.reference)} pulled into realm {k.realm} "
        r"\(sha256:[0-9a-f]{12}, [0-9.]+(kB|MB)\)\n",
        out,
    )
    code, out, err = await kukectl(k, "image", "ls", "--realm", k.realm, "-o", "json")
    assert code == 0, err
    assert [item["name"] for item in json.loads(out)["items"]] == [registry.reference]

    missing = registry.reference.replace(":test", ":missing")
    code, out, err = await kukectl(k, "image", "pull", missing, "--realm", k.realm)
    assert code == 1
    assert err.startswith(f"error: image {missing!r}: pulling failed: ")
    assert err.count("\n") == 1

    code, out, err = await kukectl(k, "image", "prune", "--realm", k.realm)
    assert code == 0, err
    assert out == f"image/{registry.reference} removed from realm {k.realm}\n"


async def test_import_refuses_an_image_name_no_cell_could_give(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await parents(k)
    crafted = renamed_archive(k.image.archive, tmp_path / "myapp.tar", ["MyApp:1"])
    code, out, err = await kukectl(k, "image", "import", str(crafted), "--realm", k.realm)
    assert (code, out) == (1, ""), err
    assert err.startswith(
        "error: the image archive names 1 image(s) by what is not an image reference, which "
        "no cell could name: 'MyApp:1'; nothing was imported (name each image as a cell "
        "would, e.g. registry.example/app:1); index.json manifests[0]: invalid image "
        "reference 'MyApp:1': repository path component 'MyApp' must be lowercase"
    ), err
    assert err.count("\n") == 1
    code, out, err = await kukectl(k, "image", "ls", "--realm", k.realm, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["items"] == []
