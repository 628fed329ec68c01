"""CellSets from a CellProfile over the real HTTP API, as a realm-scoped editor: the profile
resolved at the write (its errors naming spec.profile, spec.params.NAME or
spec.template.spec), the resolved template admitted as the editor's own (a privileged
profile an admin wrote is a 403 for the editor), round trips kept, a manifest applied
again re-resolving, `rollout undo` pinning the template; and on a real kukeond, the cells
of such a set come up Ready with the values substituted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import (
    CELLSET_LABEL,
    PROFILE_ENV,
    PROFILE_LABEL,
    Cell,
    CellSet,
    CellState,
    Kind,
    parse_resource,
    to_request_document,
)
from kukeon.cli.cellsets import rolled_back, undo_target
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond
from tests.integration.apiserver.conftest import Api, Certs, running_api, tls_session
from tests.integration.apiserver.test_cellprofiles import (
    EDITOR,
    V,
    fields_of,
    post,
    profile_doc,
    profiles_path,
    write_tokens,
)
from tests.integration.apiserver.test_cellsets_api import SETS, sessions
from tests.integration.controllers.helpers import exec_in

__all__ = ["sessions"]  # the fixture, shared with test_cellsets_api

pytestmark = pytest.mark.integration

PARAMETERS = [
    {"name": "VERSION", "default": "1.36"},
    {"name": "GREETING", "required": True},
]


def web_profile(image: str = "busybox:${VERSION}", **container: Any) -> dict[str, Any]:
    cell = {
        "containers": [{"id": "main", "image": image, "env": ["GREETING=${GREETING}"], **container}]
    }
    return profile_doc("web", cell, parameters=PARAMETERS)


def set_doc(profile: str = "web", **params: str) -> dict[str, Any]:
    return {
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}},
            "profile": profile,
            "params": params,
        },
    }


async def put(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with session.put(path, json=body) as response:
        return response.status, await response.json()


async def get(session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    async with session.get(path) as response:
        assert response.status == 200, await response.text()
        found: dict[str, Any] = await response.json()
        return found


async def test_a_set_from_a_profile_is_resolved_and_admitted_as_the_editor(
    sessions: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, editor = sessions
    profiles = profiles_path("team")
    status, body = await post(admin, profiles, web_profile())
    assert status == 201, body
    root = profile_doc("root", {"containers": [{"id": "main", "image": "x", "privileged": True}]})
    status, body = await post(admin, profiles, root)
    assert status == 201, body

    status, body = await post(editor, SETS, set_doc("absent"))
    assert (status, fields_of(body)) == (422, ["spec.profile"]), body
    status, body = await post(editor, SETS, set_doc(NOPE="x"))
    assert status == 422, body
    assert sorted(fields_of(body)) == ["spec.params.GREETING", "spec.params.NOPE"]
    status, body = await post(editor, SETS, set_doc("root"))
    assert (status, fields_of(body)) == (403, ["spec.template.spec.containers[0].privileged"])
    assert "from profile 'root'" in body["message"]
    status, body = await post(admin, SETS, set_doc("root"), dry_run=True)
    assert status == 201, body  # an admin may

    status, body = await post(editor, SETS, set_doc(GREETING="hi"))
    assert status == 201, body
    template = body["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web", PROFILE_LABEL: "web"}
    container = template["spec"]["containers"][0]
    assert container["image"] == "busybox:1.36"
    assert container["env"] == ["GREETING=hi", f"{PROFILE_ENV}=web"]

    await round_trips_and_reapplies(admin, editor)


async def round_trips_and_reapplies(
    admin: aiohttp.ClientSession, editor: aiohttp.ClientSession
) -> None:
    """The stored document written back is kept; with its template edited it is a 422; the
    manifest applied again re-resolves (unchanged: no new generation; after an edit of the
    profile: a new template); `rollout undo` writes the old template inline."""
    stored = await get(editor, f"{SETS}/web")
    status, body = await put(editor, f"{SETS}/web", stored)
    assert status == 200, body
    assert body["metadata"]["generation"] == stored["metadata"]["generation"]
    status, body = await put(editor, f"{SETS}/web", set_doc(GREETING="hi"))
    assert status == 200, body
    assert body["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    edited = await get(editor, f"{SETS}/web")
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:edited"
    status, body = await put(editor, f"{SETS}/web", edited)
    assert (status, fields_of(body)) == (422, ["spec.template.spec"]), body

    status, body = await put(admin, f"{profiles_path('team')}/web", web_profile("busybox:2"))
    assert status == 200, body
    status, body = await put(editor, f"{SETS}/web", stored)  # the stored document: kept
    assert body["spec"]["template"] == stored["spec"]["template"]
    status, body = await put(editor, f"{SETS}/web", set_doc(GREETING="hi"))  # the manifest
    assert status == 200, body
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    assert body["metadata"]["generation"] == stored["metadata"]["generation"] + 1

    # undo (the revisions as the set controller would have kept them)
    found = parse_resource(body)
    assert isinstance(found, CellSet)
    old = parse_resource(stored)
    assert isinstance(old, CellSet)
    revisions = [
        {"revision": 1, "templateHash": old.template_hash(), "template": old.template_document()},
        {
            "revision": 2,
            "templateHash": found.template_hash(),
            "template": found.template_document(),
        },
    ]
    status_document = {**body, "status": {"revisions": revisions}}
    async with admin.put(f"{SETS}/web/status", json=status_document) as response:
        assert response.status == 200, await response.text()
    found = parse_resource(await get(editor, f"{SETS}/web"))
    assert isinstance(found, CellSet)
    undone = to_request_document(rolled_back(found, undo_target(found, 0)))
    status, body = await put(editor, f"{SETS}/web", undone)
    assert status == 200, body
    assert "profile" not in body["spec"]
    assert body["spec"]["template"] == stored["spec"]["template"]


async def test_a_set_from_a_profile_makes_ready_cells_with_the_values(
    kukeond: Kukeond, certs: Certs, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    cell = {
        "containers": [
            {
                "id": "main",
                "image": "${IMAGE}",
                "command": "sh",
                "args": ["-c", SLEEPER_SCRIPT],
                "env": ["GREETING=${GREETING}"],
            }
        ]
    }
    parameters = [{"name": "IMAGE", "default": k.image.name}, {"name": "GREETING"}]
    sets = f"{V}/realms/{k.realm}/spaces/s1/stacks/st1/cellsets"
    async with (
        running_api(k.registry, certs, write_tokens(tmp_path, k.realm)) as api,
        tls_session(api, EDITOR) as editor,
    ):
        profile = profile_doc("web", cell, parameters=parameters)
        status, body = await post(editor, profiles_path(k.realm, "s1"), profile)
        assert status == 201, body
        status, body = await post(editor, sets, set_doc(GREETING="from-the-set"))
        assert status == 201, body

    deadline = time.monotonic() + 60
    while True:
        listed = await k.registry.list(
            Kind.CELL, (k.realm, "s1", "st1"), label_selector=f"{CELLSET_LABEL}=web"
        )
        cells = [c for c in listed.items if isinstance(c, Cell)]
        if len(cells) == 2 and all(c.status.state == CellState.READY for c in cells):
            break
        assert time.monotonic() < deadline, [(c.metadata.name, c.status.state) for c in cells]
        await asyncio.sleep(0.2)
    name = cells[0].metadata.name
    code, environ = await exec_in(k, f"s1_st1_{name}_main", "cat", "/proc/1/environ")
    assert code == 0
    assert {"GREETING=from-the-set", f"{PROFILE_ENV}=web"} <= set(environ.split("\0"))
