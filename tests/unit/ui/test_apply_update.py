"""The console's Apply over an object that exists writes what `kukectl apply` writes: the
manifest's spec, labels and annotations, with what the system filled in kept (a cell's
nodeName, `kukeon.io/` annotations, a realm's admin-owned fields). It PUT the pasted
document as it was: a running cell re-applied unchanged lost its nodeName, was unscheduled
and started again. `POST /ui/apply-update` answers the update (or null: unchanged), behind
the token; a stale manifest resourceVersion is a 409 Conflict naming the field."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.unit.ui.conftest import ADMIN, VIEWER

Client = TestClient[web.Request, web.Application]


def _cell(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "containers": [{"id": "main", "image": "busybox", "args": ["sleep", "9"]}],
            **spec,
        },
    }


def _stored() -> dict[str, Any]:
    """The cell as a GET answers it: scheduled, with the scheduler's annotation."""
    document = _cell(nodeName="node-a")
    document["metadata"] = {
        **document["metadata"],
        "uid": "u-1",
        "resourceVersion": "41",
        "annotations": {"kukeon.io/scheduled-by": "scheduler"},
    }
    document["status"] = {"state": "Ready"}
    return document


async def _ask(client: Client, body: Any, token: str = ADMIN) -> tuple[int, Any]:
    response = await client.post(
        "/ui/apply-update", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def test_the_manifest_as_written_is_unchanged_over_the_scheduled_cell(
    client: Client,
) -> None:
    status, answer = await _ask(client, {"document": _cell(), "current": _stored()})
    assert (status, answer) == (200, {"update": None})


async def test_a_change_keeps_what_the_system_filled_in(client: Client) -> None:
    changed = _cell()
    changed["metadata"]["labels"] = {"app": "web", "tier": "front"}
    status, answer = await _ask(client, {"document": changed, "current": _stored()})
    assert status == 200, answer
    update = answer["update"]
    assert update["spec"]["nodeName"] == "node-a"
    assert update["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert update["metadata"]["annotations"] == {"kukeon.io/scheduled-by": "scheduler"}
    assert update["metadata"]["resourceVersion"] == "41"  # the CAS guard: the version read


async def test_a_stale_manifest_version_is_a_conflict_naming_the_field(client: Client) -> None:
    stale = _cell(desiredState="Stopped")
    stale["metadata"]["resourceVersion"] = "7"
    status, answer = await _ask(client, {"document": stale, "current": _stored()})
    assert status == 409
    assert answer["reason"] == "Conflict"
    assert "metadata.resourceVersion" in answer["message"]


async def test_an_invalid_document_goes_to_the_write_that_names_its_fields(
    client: Client,
) -> None:
    broken = _cell()
    broken["spec"]["containers"][0]["restartPolicy"] = "sometimes"
    status, answer = await _ask(client, {"document": broken, "current": _stored()})
    assert status == 200
    assert answer["update"]["spec"]["containers"][0]["restartPolicy"] == "sometimes"
    assert answer["update"]["metadata"]["resourceVersion"] == "41"


async def test_bad_bodies_are_400s_and_the_route_needs_a_token(client: Client) -> None:
    other = _cell()
    other["metadata"]["name"] = "other"
    bodies: list[Any] = [
        [],
        {"document": _cell()},
        {"document": "x", "current": _stored()},
        {"document": _cell(), "current": {"kind": "Cell"}},
        {"document": other, "current": _stored()},
    ]
    for body in bodies:
        status, answer = await _ask(client, body)
        assert status == 400, (body, answer)
        assert answer["kind"] == "Status"
    response = await client.post("/ui/apply-update", data=b'{"document": {"a": 1, "a": 2}}')
    assert response.status == 401
    response = await client.post(
        "/ui/apply-update",
        data=b"[" * 5000,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status == 400
    status, answer = await _ask(client, {"document": _cell(), "current": _stored()}, VIEWER)
    assert status == 200  # a pure computation: writing it is what the API authorizes
