"""CellSets over the real HTTP API: the routes under a stack, a 422 naming the field for a
selector that misses the template or an unknown field, and admission of the template as a
cell (an editor's privileged template is a 403 naming spec.template.spec...), also when it
comes back by `rollout undo`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import CellSet, parse_resource, to_document, to_request_document
from kukeon.cli.cellsets import rolled_back, undo_target
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    Api,
    Certs,
    create_tree,
    running_api,
    tls_session,
)
from tests.integration.apiserver.test_cellprofiles import EDITOR, V, fields_of, post, write_tokens

pytestmark = pytest.mark.integration

SETS = f"{V}/realms/team/spaces/s/stacks/st/cellsets"


def set_doc(**container: Any) -> dict[str, Any]:
    return {
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "main", "image": "busybox", **container}]},
            },
        },
    }


@pytest.fixture
async def sessions(
    registry: Registry, certs: Certs, tmp_path: Path
) -> AsyncIterator[tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession]]:
    async with (
        running_api(registry, certs, write_tokens(tmp_path, "team")) as api,
        tls_session(api, ADMIN_TOKEN) as admin,
        tls_session(api, EDITOR) as editor,
    ):
        await create_tree(admin)
        yield api, admin, editor


async def test_cellsets_over_http(
    sessions: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, editor = sessions
    status, body = await post(editor, SETS, set_doc(privileged=True))
    assert status == 403, body
    assert fields_of(body) == ["spec.template.spec.containers[0].privileged"]
    status, body = await post(admin, SETS, set_doc(privileged=True), dry_run=True)
    assert status == 201, body  # an admin may

    missing = set_doc()
    missing["spec"]["selector"]["matchLabels"] = {"app": "api"}
    status, body = await post(editor, SETS, missing)
    assert status == 422, body
    assert "spec.selector.matchLabels" in fields_of(body)

    unknown = set_doc()
    unknown["spec"]["spread"] = {"topologyKey": "zone", "maxSkew": 1}
    status, body = await post(editor, SETS, unknown)
    assert status == 422, body
    assert fields_of(body) == ["spec.spread.maxSkew"]

    status, body = await post(editor, SETS, set_doc())
    assert status == 201, body
    assert body["spec"]["realmId"] == "team"
    assert body["spec"]["stackId"] == "st"
    async with editor.get(f"{V}/cellsets") as response:
        listed = await response.json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web"]
    async with editor.patch(
        f"{SETS}/web",
        json={"spec": {"replicas": 4}},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 200, await response.text()
    await an_undo_passes_admission(admin, editor)
    orphan = {"propagationPolicy": "Orphan"}
    async with admin.delete(f"{V}/realms/team", params=orphan) as response:
        body = await response.json()
        assert response.status == 400, body
    assert fields_of(body) == ["propagationPolicy"]
    async with editor.delete(f"{SETS}/web", params={**orphan, "dryRun": "All"}) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["metadata"].get("finalizers") in (None, [])
    async with editor.delete(f"{SETS}/web") as response:
        assert response.status == 200, await response.text()


async def an_undo_passes_admission(
    admin: aiohttp.ClientSession, editor: aiohttp.ClientSession
) -> None:
    """`rollout undo` writes a kept template back with an ordinary update: a revision an
    editor may not write (here forged into the status by an admin) is refused to the
    editor as the same template written by hand would be, and allowed to an admin."""
    async with editor.get(f"{SETS}/web") as response:
        current = parse_resource(await response.json())
    assert isinstance(current, CellSet)
    privileged = set_doc(privileged=True)["spec"]["template"]
    forged = [
        {"revision": 1, "templateHash": "deadbeef", "template": privileged},
        {
            "revision": 2,
            "templateHash": current.template_hash(),
            "template": current.template_document(),
        },
    ]
    document = to_document(current)
    document["status"] = {"revisions": forged}
    async with admin.put(f"{SETS}/web/status", json=document) as response:
        assert response.status == 200, await response.text()
    async with editor.get(f"{SETS}/web") as response:
        found = parse_resource(await response.json())
    assert isinstance(found, CellSet)
    undone = to_request_document(rolled_back(found, undo_target(found, 0)))
    async with editor.put(f"{SETS}/web", json=undone) as response:
        body = await response.json()
        assert response.status == 403, body
    assert fields_of(body) == ["spec.template.spec.containers[0].privileged"]
    async with admin.put(f"{SETS}/web", json=undone, params={"dryRun": "All"}) as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"preconditions": {"resourceVersion": "1"}}, 409),
        ({"preconditions": {"uid": "not-the-sets"}}, 409),
        ({"gracePeriodSeconds": 5}, 400),
    ],
)
async def test_a_refused_orphaning_delete_leaves_the_set_as_it_was(
    sessions: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
    options: dict[str, Any],
    code: int,
) -> None:
    """An Orphan delete refused (a failed precondition, a grace on a set) writes nothing: the
    orphaning finalizer was added before the refusal, leaving the set held by a finalizer
    no delete had asked for and at a new resourceVersion (found by test_stateful_api)."""
    _, admin, _ = sessions
    status, created = await post(admin, SETS, set_doc())
    assert status == 201, created
    body = {"propagationPolicy": "Orphan", **options}
    async with admin.delete(f"{SETS}/web", json=body) as response:
        assert response.status == code, await response.text()
    async with admin.get(f"{SETS}/web") as response:
        after = await response.json()
    assert after["metadata"].get("finalizers") in (None, [])
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_an_orphaning_delete_with_the_sets_version_holds_it(
    sessions: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    """The precondition is checked on the version the client read: the orphaning finalizer,
    once added by a write of its own first, made every such delete a 409."""
    _, admin, _ = sessions
    status, created = await post(admin, SETS, set_doc())
    assert status == 201, created
    metadata = created["metadata"]
    preconditions = {"uid": metadata["uid"], "resourceVersion": metadata["resourceVersion"]}
    body = {"propagationPolicy": "Orphan", "preconditions": preconditions}
    async with admin.delete(f"{SETS}/web", json=body) as response:
        assert response.status == 202, await response.text()
        held = await response.json()
    assert held["metadata"]["finalizers"] == ["kukeon.io/orphan"]
    assert held["metadata"]["deletionTimestamp"]
