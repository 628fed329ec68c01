"""The console's Apply writes what `kukectl apply` writes (``kukeon.api.applying``): a new
object with the manifest recorded in ``kukeon.io/last-applied-configuration``, and over one
that exists the three-way merge of that record, the manifest and the object, so what the
system filled in (a cell's nodeName, `kukeon.io/` annotations) and what other commands wrote
and the manifest never named (`kukectl label`) stay. It PUT the pasted document as it was (a
running cell re-applied lost its nodeName, was unscheduled and started again), then merged
two ways and recorded nothing: a label added with `kukectl label` was gone at the next paste,
and kukectl's next apply of a console-made object was a first one. `POST /ui/apply-update`
answers ``{"create": ...}`` for ``current: null``, else the update (or null: unchanged),
behind the token; a stale manifest resourceVersion is a 409 Conflict naming the field, a
record too large a 422 at ``metadata.annotations``."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from kukeon.api import parse_resource
from kukeon.api.applying import LAST_APPLIED_ANNOTATION, last_applied, recorded
from kukeon.api.labelrules import ANNOTATIONS_MAX_BYTES
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


def _stored(*, applied: bool = True, **labels: str) -> dict[str, Any]:
    """The cell as a GET answers it: scheduled, with the scheduler's annotation, ``labels``
    added by others; ``applied``: created by an apply of ``_cell()``, which recorded it."""
    document = _cell(nodeName="node-a")
    annotations = {"kukeon.io/scheduled-by": "scheduler"}
    if applied:
        annotations[LAST_APPLIED_ANNOTATION] = last_applied(parse_resource(_cell()))
    document["metadata"] = {
        **document["metadata"],
        "labels": {**document["metadata"]["labels"], **labels},
        "uid": "u-1",
        "resourceVersion": "41",
        "annotations": annotations,
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
    annotations = update["metadata"]["annotations"]
    assert annotations["kukeon.io/scheduled-by"] == "scheduler"
    assert annotations[LAST_APPLIED_ANNOTATION] == last_applied(parse_resource(changed))
    assert update["metadata"]["resourceVersion"] == "41"  # the CAS guard: the version read


async def test_a_label_another_command_added_survives_the_paste_again(client: Client) -> None:
    """Applied, then `kukectl label cell web owner=ops`, then the same manifest pasted again:
    the label stays (the two-way rule wrote the manifest's labels over it); a label the
    last apply named and the manifest now drops goes."""
    labelled = _stored(owner="ops")
    status, answer = await _ask(client, {"document": _cell(), "current": labelled})
    assert (status, answer) == (200, {"update": None})
    dropped = _cell()
    dropped["metadata"]["labels"] = {}
    status, answer = await _ask(client, {"document": dropped, "current": labelled})
    assert status == 200, answer
    assert answer["update"]["metadata"]["labels"] == {"owner": "ops"}


async def test_the_first_apply_over_an_object_made_without_one_records_it(
    client: Client,
) -> None:
    """Over a cell made by `kukectl create` (no record), the manifest as written changes
    nothing but the record, which the next apply, kukectl's or the console's, merges with."""
    bare = _stored(applied=False, owner="ops")
    status, answer = await _ask(client, {"document": _cell(), "current": bare})
    assert status == 200, answer
    update = answer["update"]
    assert update["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert update["spec"]["nodeName"] == "node-a"
    assert recorded(parse_resource(update)) == json.loads(last_applied(parse_resource(_cell())))


async def test_a_create_carries_the_record_and_never_a_secret_value(client: Client) -> None:
    status, answer = await _ask(client, {"document": _cell(), "current": None})
    assert status == 200, answer
    created = answer["create"]
    assert created["metadata"]["annotations"] == {
        LAST_APPLIED_ANNOTATION: last_applied(parse_resource(_cell()))
    }
    assert created["spec"]["containers"][0]["args"] == ["sleep", "9"]
    secret = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Secret",
        "metadata": {"name": "keys", "realm": "r"},
        "stringData": {"token": "never-recorded-4711"},
    }
    status, answer = await _ask(client, {"document": secret, "current": None})
    assert status == 200, answer
    record = answer["create"]["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
    assert "never-recorded-4711" not in record
    assert base64.b64encode(b"never-recorded-4711").decode() not in record
    assert answer["create"]["data"] == {"token": base64.b64encode(b"never-recorded-4711").decode()}


async def test_a_record_too_large_is_a_422_at_the_annotations(client: Client) -> None:
    large = _cell()
    large["metadata"]["annotations"] = {"note": "x" * (ANNOTATIONS_MAX_BYTES // 2 + 10)}
    for current in (None, _stored()):
        status, answer = await _ask(client, {"document": large, "current": current})
        assert status == 422, answer
        assert answer["reason"] == "Invalid"
        assert [cause["field"] for cause in answer["details"]["causes"]] == ["metadata.annotations"]
        assert "nothing was written" in answer["message"]


async def test_a_manifest_read_back_replaces_whole(client: Client) -> None:
    """A manifest that carries the current resourceVersion (a `get -o yaml` kept) is written
    as it is, the record left as stored, as kukectl apply does: a label it lacks goes."""
    read_back = _cell()
    read_back["metadata"]["resourceVersion"] = "41"
    status, answer = await _ask(client, {"document": read_back, "current": _stored(owner="ops")})
    assert status == 200, answer
    update = answer["update"]
    assert update["metadata"]["labels"] == {"app": "web"}
    assert update["metadata"]["annotations"] == _stored()["metadata"]["annotations"]


async def test_a_stale_manifest_version_is_a_conflict_naming_the_field(client: Client) -> None:
    stale = _cell(desiredState="Stopped")
    stale["metadata"]["resourceVersion"] = "7"
    status, answer = await _ask(client, {"document": stale, "current": _stored()})
    assert status == 409
    assert answer["reason"] == "Conflict"
    assert "metadata.resourceVersion" in answer["message"]
    # As kukectl apply: a stale manifest that would change nothing is `unchanged`.
    same = _cell()
    same["metadata"]["resourceVersion"] = "7"
    status, answer = await _ask(client, {"document": same, "current": _stored()})
    assert (status, answer) == (200, {"update": None})


async def test_an_invalid_document_goes_to_the_write_that_names_its_fields(
    client: Client,
) -> None:
    broken = _cell()
    broken["spec"]["containers"][0]["restartPolicy"] = "sometimes"
    status, answer = await _ask(client, {"document": broken, "current": _stored()})
    assert status == 200
    assert answer["update"]["spec"]["containers"][0]["restartPolicy"] == "sometimes"
    assert answer["update"]["metadata"]["resourceVersion"] == "41"
    status, answer = await _ask(client, {"document": broken, "current": None})
    assert (status, answer) == (200, {"create": broken})


async def test_bad_bodies_are_400s_and_the_route_needs_a_token(client: Client) -> None:
    other = _cell()
    other["metadata"]["name"] = "other"
    bodies: list[Any] = [
        [],
        {"document": _cell()},
        {"document": _cell(), "current": "x"},
        {"document": "x", "current": None},
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
