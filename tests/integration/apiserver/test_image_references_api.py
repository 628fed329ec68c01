"""An image that is not a reference (Docker's grammar, the node's own parser) is refused by
every write (create, replace, merge patch, a profile's run; dry run or not) with a 422
naming the field, and nothing is written. A cell stored before the rule (written to the
registry directly, as an older kukeond let it be) is still listed and read, and stays
writable while a write keeps its image as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Cell, Kind, parse_resource
from kukeon.api.imageref import reference_problem
from tests.fixtures.kukeond import Kukeond
from tests.integration.apiserver.conftest import (
    Api,
    Certs,
    cell_doc,
    realm_doc,
    running_api,
    space_doc,
    stack_doc,
)
from tests.integration.controllers.helpers import cell_doc as cell_doc_of
from tests.integration.controllers.helpers import cell_key

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
SPACES = f"{V}/realms/default/spaces"
STACK = f"{SPACES}/default/stacks/default"
PROFILES = f"{V}/realms/default/spaces/-/stacks/-/cellprofiles"
MERGE = {"Content-Type": "application/merge-patch+json"}
BAD = "Busybox:latest"  # an upper-case repository: no registry serves it
WORSE = "busybox@sha256:abc"


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    return response.status, body


def _fields(body: dict[str, Any]) -> list[str]:
    return [cause["field"] for cause in body.get("details", {}).get("causes", [])]


def _refused(status: int, body: dict[str, Any], field: str, image: str) -> None:
    assert (status, body.get("reason"), _fields(body)) == (422, "Invalid", [field]), body
    why = reference_problem(image)
    assert why is not None
    assert body["details"]["causes"][0]["message"] == why
    assert f"{field}: {why}" in body["message"]


async def _defaults(http: aiohttp.ClientSession) -> None:
    for path, doc in (
        (f"{V}/realms", realm_doc("default")),
        (SPACES, space_doc("default")),
        (f"{SPACES}/default/stacks", stack_doc("default")),
    ):
        status, body = await _answer(await http.post(path, json=doc))
        assert status == 201, body


async def test_a_create_replace_or_patch_naming_a_bad_image_is_a_422_writing_nothing(
    http: aiohttp.ClientSession,
) -> None:
    await _defaults(http)
    for dry_run in ("?dryRun=All", ""):
        status, body = await _answer(
            await http.post(f"{STACK}/cells{dry_run}", json=cell_doc("bad", image=BAD))
        )
        _refused(status, body, "spec.containers[0].image", BAD)
    status, body = await _answer(await http.get(f"{STACK}/cells/bad"))
    assert status == 404, body  # nothing written

    status, body = await _answer(await http.post(f"{STACK}/cells", json=cell_doc("good")))
    assert status == 201, body
    version = body["metadata"]["resourceVersion"]

    replaced = cell_doc("good", image=WORSE)
    replaced["metadata"]["resourceVersion"] = version
    status, body = await _answer(await http.put(f"{STACK}/cells/good", json=replaced))
    _refused(status, body, "spec.containers[0].image", WORSE)

    patch = {"spec": {"containers": [{"id": "main", "image": BAD, "root": True}]}}
    response = await http.patch(f"{STACK}/cells/good", data=json.dumps(patch), headers=MERGE)
    _refused(*await _answer(response), "spec.containers[0].image", BAD)

    status, body = await _answer(await http.get(f"{STACK}/cells/good"))
    assert status == 200, body
    assert body["metadata"]["resourceVersion"] == version  # nothing written
    assert body["spec"]["containers"][0]["image"] == "busybox:latest"

    # Every form Docker takes is taken.
    for name, image in (
        ("hub", "library/busybox:1.36"),
        ("local", "localhost:5000/x"),
        ("ipv6", "[::1]:5000/x"),
        ("digest", "x:tag@sha256:" + "ab" * 32),
    ):
        status, body = await _answer(
            await http.post(f"{STACK}/cells?dryRun=All", json=cell_doc(name, image=image))
        )
        assert status == 201, (image, body)


async def test_a_sets_template_a_profile_and_a_profiles_run_are_checked(
    http: aiohttp.ClientSession,
) -> None:
    await _defaults(http)
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"id": "main", "image": BAD}]},
    }
    cellset = {
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    _refused(status, body, "spec.template.spec.containers[0].image", BAD)
    status, body = await _answer(await http.get(f"{STACK}/cellsets/web"))
    assert status == 404, body

    def profile(name: str, image: str) -> dict[str, Any]:
        return {
            "kind": "CellProfile",
            "metadata": {"name": name},
            "spec": {
                "cell": {"containers": [{"id": "main", "image": image}]},
                "parameters": [{"name": "IMAGE", "default": "busybox"}],
            },
        }

    status, body = await _answer(await http.post(PROFILES, json=profile("bad", BAD)))
    _refused(status, body, "spec.cell.containers[0].image", BAD)
    # A parameter's image is the run's to check: the cell it makes.
    status, body = await _answer(await http.post(PROFILES, json=profile("p", "${IMAGE}")))
    assert status == 201, body
    run = {"profile": "p", "name": "from-p", "parameters": {"IMAGE": WORSE}}
    status, body = await _answer(await http.post(f"{STACK}/profileruns", json=run))
    _refused(status, body, "spec.containers[0].image", WORSE)
    status, body = await _answer(await http.get(f"{STACK}/cells/from-p"))
    assert status == 404, body


async def test_a_cell_stored_with_a_bad_image_is_listed_and_stays_writable(
    http: aiohttp.ClientSession, api: Api
) -> None:
    await _defaults(http)
    old = cell_doc("old", image=BAD)
    old["spec"].update(realmId="default", spaceId="default", stackId="default")
    await api.registry.create(parse_resource(old))  # as an older kukeond let it be written

    status, body = await _answer(await http.get(f"{STACK}/cells"))
    assert status == 200, body
    assert [item["metadata"]["name"] for item in body["items"]] == ["old"]
    status, body = await _answer(await http.get(f"{STACK}/cells/old"))
    assert (status, body["spec"]["containers"][0]["image"]) == (200, BAD), body

    stop = {"spec": {"desiredState": "Stopped"}, "metadata": {"labels": {"a": "b"}}}
    response = await http.patch(f"{STACK}/cells/old", data=json.dumps(stop), headers=MERGE)
    status, body = await _answer(response)
    assert status == 200, body
    body.pop("status", None)
    status, body = await _answer(await http.put(f"{STACK}/cells/old", json=body))
    assert status == 200, body  # `get` then `apply`/`replace`: unchanged, let through

    worse = {"spec": {"containers": [{"id": "main", "image": WORSE, "root": True}]}}
    response = await http.patch(f"{STACK}/cells/old", data=json.dumps(worse), headers=MERGE)
    _refused(*await _answer(response), "spec.containers[0].image", WORSE)
    fixed = {"spec": {"containers": [{"id": "main", "image": "busybox", "root": True}]}}
    response = await http.patch(f"{STACK}/cells/old", data=json.dumps(fixed), headers=MERGE)
    status, body = await _answer(response)
    assert status == 200, body


async def test_a_stored_cell_with_a_bad_image_is_listed_and_reports_its_failure(
    kukeond: Kukeond, certs: Certs, tokens_file: Path
) -> None:
    """The operator's bad day: a cell in etcd with an image the API now refuses. Its node
    still sees it and says why it cannot run (a permanent failure, as before the rule); the
    API still lists and reads it; only a write that changes the image is refused."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "stored")
    await k.apply(cell_doc_of(k, "stored", [{"id": "app", "image": BAD, "command": "true"}]))
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    assert isinstance(failed, Cell)
    assert failed.status.reason == "InvalidImageReference", failed.status.message
    assert BAD in (failed.status.message or "")

    async with (
        running_api(k.registry, certs, tokens_file) as api,
        aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(api.socket)), base_url="http://kukeond"
        ) as http,
    ):
        cells = f"{V}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
        status, body = await _answer(await http.get(cells))
        assert status == 200, body
        [listed] = [item for item in body["items"] if item["metadata"]["name"] == "stored"]
        assert listed["status"]["state"] == "Failed"
        assert listed["status"]["reason"] == "InvalidImageReference"
        status, body = await _answer(await http.get(f"{cells}/stored"))
        assert (status, body["spec"]["containers"][0]["image"]) == (200, BAD), body

        labelled = {"metadata": {"labels": {"seen": "yes"}}}
        response = await http.patch(f"{cells}/stored", data=json.dumps(labelled), headers=MERGE)
        status, body = await _answer(response)
        assert status == 200, body
        worse = {"spec": {"containers": [{"id": "app", "image": WORSE, "command": "true"}]}}
        response = await http.patch(f"{cells}/stored", data=json.dumps(worse), headers=MERGE)
        _refused(*await _answer(response), "spec.containers[0].image", WORSE)
