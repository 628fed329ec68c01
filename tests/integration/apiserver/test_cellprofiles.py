"""CellProfiles through the API: applied, run as cells, looked up stack/space/realm, admitted.

A run (``POST .../stacks/ST/profileruns``) makes a cell labelled ``kukeon.io/profile``
whose containers see ``KUKEON_CELL_PROFILE_NAME``; a label selector finds it; a later edit
of the profile leaves it alone. The cell goes through the same authorization and admission
as a cell written by hand, so an editor gets nothing through a profile it could not write.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kukeon.api import PROFILE_ENV, PROFILE_LABEL, Kind
from kukeon.store import Registry
from tests.fixtures.kukeond import Kukeond
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    Api,
    Certs,
    create_tree,
    running_api,
    tls_session,
)
from tests.integration.controllers.helpers import exec_in

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
EDITOR = "editor-profiles-" + uuid.uuid4().hex


def profiles_path(realm: str, space: str = "-", stack: str = "-") -> str:
    return f"{V}/realms/{realm}/spaces/{space}/stacks/{stack}/cellprofiles"


def runs_path(realm: str, space: str, stack: str) -> str:
    return f"{V}/realms/{realm}/spaces/{space}/stacks/{stack}/profileruns"


def profile_doc(name: str, cell: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"kind": "CellProfile", "metadata": {"name": name}, "spec": {"cell": cell, **spec}}


def fields_of(body: dict[str, Any]) -> list[str]:
    return [cause["field"] for cause in body.get("details", {}).get("causes", [])]


def write_tokens(tmp_path: Path, realm: str) -> Path:
    path = tmp_path / "profile-tokens.yaml"
    entries = [
        {"token": ADMIN_TOKEN, "user": "alice", "role": "admin"},
        {"token": EDITOR, "user": "eddie", "role": "editor", "realms": [realm]},
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


async def post(
    session: aiohttp.ClientSession, path: str, body: Any, *, dry_run: bool = False
) -> tuple[int, dict[str, Any]]:
    params = {"dryRun": "All"} if dry_run else None
    async with session.post(path, json=body, params=params) as response:
        return response.status, await response.json()


@pytest.fixture
async def team_api(
    registry: Registry, certs: Certs, tmp_path: Path
) -> AsyncIterator[tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession]]:
    """An API over a bare registry with realm team (space s, stack st): admin and editor."""
    async with (
        running_api(registry, certs, write_tokens(tmp_path, "team")) as api,
        tls_session(api, ADMIN_TOKEN) as admin,
        tls_session(api, EDITOR) as editor,
    ):
        await create_tree(admin, "team")
        await create_tree(admin, "other")
        yield api, admin, editor


async def test_a_run_makes_a_labelled_cell_whose_container_sees_the_profile(
    kukeond: Kukeond, certs: Certs, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    realm = k.realm
    cell = {
        "containers": [
            {
                "id": "main",
                "image": "${IMAGE}",
                "command": "sh",
                "args": ["-c", "echo ${MSG} > /tmp/msg; exec sleep 3600"],
            }
        ]
    }
    parameters = [
        {"name": "IMAGE", "default": k.image.name},
        {"name": "MSG", "required": True, "description": "what the cell writes"},
    ]
    async with (
        running_api(k.registry, certs, write_tokens(tmp_path, realm)) as api,
        tls_session(api, EDITOR) as editor,
    ):
        # an undeclared reference is refused, naming the field that holds it
        undeclared = profile_doc("worker", {"containers": [{"id": "a", "image": "${NOPE}"}]})
        status, body = await post(editor, profiles_path(realm), undeclared)
        assert status == 422, body
        assert "spec.cell.containers[0].image" in fields_of(body)

        status, body = await post(
            editor, profiles_path(realm), profile_doc("worker", cell, parameters=parameters)
        )
        assert status == 201, body

        runs = runs_path(realm, "s1", "st1")
        status, body = await post(editor, runs, {"profile": "worker"})
        assert (status, fields_of(body)) == (422, ["parameters.MSG"]), body
        status, body = await post(
            editor, runs, {"profile": "worker", "parameters": {"MSG": "x", "NOPE": "y"}}
        )
        assert (status, fields_of(body)) == (422, ["parameters.NOPE"]), body
        for hostile, field in (
            ([], None),
            ({"profile": 5}, "profile"),
            ({"profile": "worker", "parameters": {"MSG": ["x"]}}, "parameters.MSG"),
            ({"profile": "worker", "image": "x"}, "image"),
        ):
            status, body = await post(editor, runs, hostile)
            assert status == 400, (hostile, body)
            assert field is None or field in fields_of(body), body
        status, body = await post(editor, runs, {"profile": "absent"})
        assert status == 404, body

        status, body = await post(
            editor, runs, {"profile": "worker", "parameters": {"MSG": "hello-profile"}}
        )
        assert status == 201, body
        name = body["metadata"]["name"]
        assert name.startswith("worker-")
        assert len(name) == len("worker-") + 6
        assert body["metadata"]["labels"] == {PROFILE_LABEL: "worker"}

        cells = f"{V}/realms/{realm}/spaces/s1/stacks/st1/cells"
        selector = {"labelSelector": f"{PROFILE_LABEL}=worker"}
        async with editor.get(cells, params=selector) as response:
            listed = await response.json()
        assert [item["metadata"]["name"] for item in listed["items"]] == [name]

        key = (realm, "s1", "st1", name)
        await k.wait_for(Kind.CELL, key, state="Ready")
        cid = f"s1_st1_{name}_main"
        code, environ = await exec_in(k, cid, "cat", "/proc/1/environ")
        assert code == 0
        assert f"{PROFILE_ENV}=worker" in environ.split("\0")
        assert await exec_in(k, cid, "cat", "/tmp/msg") == (0, "hello-profile\n")

        # a later edit of the profile leaves the cell as it was made
        before = (await k.registry.get(Kind.CELL, key)).spec
        edited = profile_doc("worker", {"containers": [{"id": "b", "image": "other"}]})
        async with editor.put(f"{profiles_path(realm)}/worker", json=edited) as response:
            assert response.status == 200, await response.text()
        assert (await k.registry.get(Kind.CELL, key)).spec == before

        async with editor.delete(f"{cells}/{name}") as response:
            assert response.status in (200, 202), await response.text()
        await k.wait_gone(Kind.CELL, key)


async def test_a_run_looks_in_the_stack_then_the_space_then_the_realm(
    team_api: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, _ = team_api
    cell = {"containers": [{"id": "main", "image": "busybox"}]}
    places = {
        "realm": profiles_path("team"),
        "space": profiles_path("team", "s"),
        "stack": profiles_path("team", "s", "st"),
    }
    for prefix, path in places.items():
        status, body = await post(admin, path, profile_doc("web", cell, prefix=prefix))
        assert status == 201, body
        assert body["metadata"]["realm"] == "team"
    runs = runs_path("team", "s", "st")
    for prefix, path in reversed(places.items()):
        status, body = await post(admin, runs, {"profile": "web"}, dry_run=True)
        assert status == 201, body
        assert body["metadata"]["name"].startswith(f"{prefix}-"), body
        async with admin.delete(f"{path}/web") as response:
            assert response.status == 200, await response.text()
    status, body = await post(admin, runs, {"profile": "web"}, dry_run=True)
    assert status == 404, body
    # a profile of another realm is never found
    status, body = await post(admin, profiles_path("other"), profile_doc("elsewhere", cell))
    assert status == 201, body
    status, body = await post(admin, runs, {"profile": "elsewhere"}, dry_run=True)
    assert status == 404, body


async def test_an_editor_gets_no_more_through_a_profile_than_through_a_cell(
    team_api: tuple[Api, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, editor = team_api
    privileged = {"containers": [{"id": "main", "image": "busybox", "privileged": True}]}
    status, body = await post(admin, profiles_path("team"), profile_doc("root", privileged))
    assert status == 201, body
    runs = runs_path("team", "s", "st")

    status, body = await post(editor, runs, {"profile": "root", "name": "escalated"})
    assert status == 403, body
    assert "spec.containers[0].privileged" in fields_of(body)
    async with admin.get(f"{V}/realms/team/spaces/s/stacks/st/cells/escalated") as response:
        assert response.status == 404
    # the same as writing the cell by hand; an admin may
    status, body = await post(admin, runs, {"profile": "root"}, dry_run=True)
    assert status == 201, body

    # another realm's stack is not the editor's, profile or not
    plain = {"containers": [{"id": "main", "image": "busybox"}]}
    status, body = await post(admin, profiles_path("other"), profile_doc("plain", plain))
    assert status == 201, body
    status, body = await post(editor, runs_path("other", "s", "st"), {"profile": "plain"})
    assert status == 403, body
    # and what the editor may write by hand, it may run
    status, body = await post(editor, profiles_path("team"), profile_doc("plain", plain))
    assert status == 201, body
    status, body = await post(editor, runs, {"profile": "plain", "name": "mine"})
    assert status == 201, body
    assert body["spec"]["containers"][0]["env"] == [f"{PROFILE_ENV}=plain"]
