"""Contract tests of the resource routes against a real registry on etcd."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from kukeon.api import parse_resource
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


async def _ok(response: aiohttp.ClientResponse, code: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _status(response: aiohttp.ClientResponse, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"]
    assert body["message"]
    return body


async def _defaults(http: aiohttp.ClientSession) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    await _ok(await http.post(f"{V}/realms/default/spaces", json=space_doc("default")), 201)
    await _ok(
        await http.post(f"{V}/realms/default/spaces/default/stacks", json=stack_doc("default")), 201
    )


async def test_create_get_list_every_level(http: aiohttp.ClientSession) -> None:
    await _defaults(http)
    created = await _ok(await http.post(CELLS, json=cell_doc("web", tier="front")), 201)
    assert created["metadata"]["resourceVersion"]
    assert created["metadata"]["uid"]
    assert created["spec"]["realmId"] == "default"
    assert created["spec"]["stackId"] == "default"

    got = await _ok(await http.get(f"{CELLS}/web"))
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    status = await _ok(await http.get(f"{CELLS}/web/status"))
    assert status["status"]["state"]

    for path in (
        f"{V}/realms/default",
        f"{V}/realms/default/spaces/default",
        f"{V}/realms/default/spaces/default/stacks/default",
    ):
        assert (await _ok(await http.get(path)))["metadata"]["name"] == "default"

    listing = await _ok(await http.get(CELLS))
    assert listing["kind"] == "CellList"
    assert int(listing["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in listing["items"]] == ["web"]
    for plural in ("spaces", "stacks", "cells"):
        across = await _ok(await http.get(f"{V}/{plural}"))
        assert len(across["items"]) == 1
    realms = await _ok(await http.get(f"{V}/realms"))
    assert [r["metadata"]["name"] for r in realms["items"]] == ["default"]


async def test_label_selector(http: aiohttp.ClientSession) -> None:
    await _defaults(http)
    await _ok(await http.post(CELLS, json=cell_doc("a", tier="front")), 201)
    await _ok(await http.post(CELLS, json=cell_doc("b", tier="back")), 201)
    front = await _ok(await http.get(CELLS, params={"labelSelector": "tier=front"}))
    assert [i["metadata"]["name"] for i in front["items"]] == ["a"]
    not_front = await _ok(await http.get(f"{V}/cells", params={"labelSelector": "tier!=front"}))
    assert [i["metadata"]["name"] for i in not_front["items"]] == ["b"]
    bad = await _status(await http.get(CELLS, params={"labelSelector": "=x"}), 400)
    assert "labelSelector" in bad["message"] or bad["details"]["causes"]


async def test_set_based_label_selectors_list_and_watch(http: aiohttp.ClientSession) -> None:
    """Kubernetes' set-based terms, on a LIST and a WATCH (the watch cache's index too)."""
    await _defaults(http)
    for name, tier in (("a", "front"), ("b", "back"), ("c", "db")):
        await _ok(await http.post(CELLS, json=cell_doc(name, tier=tier)), 201)
    await _ok(await http.post(CELLS, json=cell_doc("d")), 201)
    for selector, names in (
        ("tier in (front,back)", ["a", "b"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("tier, tier notin (db)", ["a", "b"]),
        ("!tier", ["d"]),
    ):
        listed = await _ok(await http.get(CELLS, params={"labelSelector": selector}))
        assert [i["metadata"]["name"] for i in listed["items"]] == names, selector
        watched = await http.get(
            CELLS, params={"labelSelector": selector, "watch": "1", "timeoutSeconds": "0.3"}
        )
        events = [json.loads(line) for line in (await watched.read()).splitlines()]
        added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
        assert sorted(added) == names, selector
    bad = await _status(await http.get(CELLS, params={"labelSelector": "tier in (a,b"}), 400)
    assert "'tier in (a,b'" in bad["message"]
    assert "expected ',' or ')'" in bad["details"]["causes"][0]["message"]


async def test_parent_ids_come_from_the_url_and_must_agree(http: aiohttp.ClientSession) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("team")), 201)
    made = await _ok(await http.post(f"{V}/realms/team/spaces", json=space_doc("dev")), 201)
    assert made["spec"]["realmId"] == "team"
    clash = await _status(
        await http.post(f"{V}/realms/team/spaces", json=space_doc("ops", realm="other")), 400
    )
    assert clash["details"]["causes"][0]["field"] == "spec.realmId"
    renamed = await _status(await http.put(f"{V}/realms/team", json=realm_doc("elsewhere")), 400)
    assert renamed["details"]["causes"][0]["field"] == "metadata.name"
    wrong_kind = await _status(await http.post(f"{V}/realms", json=stack_doc("x")), 400)
    assert wrong_kind["details"]["causes"][0]["field"] == "kind"


async def test_invalid_lists_every_field(http: aiohttp.ClientSession) -> None:
    await _defaults(http)
    doc = cell_doc("web")
    doc["spec"]["containers"] = [{"id": "Bad_Id"}, {"id": "b", "image": "x", "bogus": 1}]
    body = await _status(await http.post(CELLS, json=doc), 422)
    assert body["reason"] == "Invalid"
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert "spec.containers[0].image" in fields
    assert "spec.containers[0].id" in fields
    assert "spec.containers[1].bogus" in fields
    assert (await _ok(await http.get(CELLS)))["items"] == []


async def test_not_found_already_exists_conflict(http: aiohttp.ClientSession) -> None:
    missing = await _status(await http.get(f"{V}/realms/nope"), 404)
    assert missing["reason"] == "NotFound"
    assert missing["details"]["name"] == "nope"
    assert missing["details"]["kind"] == "Realm"
    await _status(await http.get(f"{V}/no/such/path"), 404)
    orphan = await _status(await http.post(f"{V}/realms/nope/spaces", json=space_doc("s")), 404)
    assert "nope" in orphan["message"]

    first = await _ok(await http.post(f"{V}/realms", json=realm_doc("r1")), 201)
    dup = await _status(await http.post(f"{V}/realms", json=realm_doc("r1")), 409)
    assert dup["reason"] == "AlreadyExists"

    doc = dict(first)
    doc["metadata"] = {**first["metadata"], "labels": {"a": "1"}}
    updated = await _ok(await http.put(f"{V}/realms/r1", json=doc))
    assert updated["metadata"]["labels"] == {"a": "1"}
    assert updated["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    stale = await _status(await http.put(f"{V}/realms/r1", json=doc), 409)
    assert stale["reason"] == "Conflict"

    # without a resourceVersion an update applies to whatever is stored now
    doc["metadata"] = {"name": "r1", "labels": {"a": "2"}}
    unconditional = await _ok(await http.put(f"{V}/realms/r1", json=doc))
    assert unconditional["metadata"]["labels"] == {"a": "2"}


async def test_a_write_naming_another_uid_is_a_conflict(http: aiohttp.ClientSession) -> None:
    """A body whose uid is not the object's is about an earlier object of that name: a 409
    (Kubernetes' uid precondition), never applied to the one stored now."""
    old = await _ok(await http.post(f"{V}/realms", json=realm_doc("u1")), 201)
    await _ok(await http.delete(f"{V}/realms/u1"))
    new = await _ok(await http.post(f"{V}/realms", json=realm_doc("u1")), 201)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]

    stale = {"metadata": {"name": "u1", "uid": old["metadata"]["uid"], "labels": {"a": "1"}}}
    refused = await _status(await http.put(f"{V}/realms/u1", json={**old, **stale}), 409)
    assert refused["reason"] == "Conflict"
    assert old["metadata"]["uid"] in refused["message"]
    headers = {"Content-Type": "application/merge-patch+json"}
    refused = await _status(
        await http.patch(f"{V}/realms/u1", data=json.dumps(stale).encode(), headers=headers), 409
    )
    assert refused["reason"] == "Conflict"
    assert not (await _ok(await http.get(f"{V}/realms/u1")))["metadata"].get("labels")

    # The object's own uid, or none, is no precondition to fail.
    own = {"metadata": {"name": "u1", "uid": new["metadata"]["uid"], "labels": {"a": "2"}}}
    patched = await _ok(
        await http.patch(f"{V}/realms/u1", data=json.dumps(own).encode(), headers=headers)
    )
    assert patched["metadata"]["labels"] == {"a": "2"}
    replaced = await _ok(await http.put(f"{V}/realms/u1", json={**new, **own}))
    assert replaced["metadata"]["uid"] == new["metadata"]["uid"]


async def test_merge_patch(http: aiohttp.ClientSession) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("r", keep="yes", drop="me")), 201)
    headers = {"Content-Type": "application/merge-patch+json"}
    patched = await _ok(
        await http.patch(
            f"{V}/realms/r",
            data=b'{"metadata": {"labels": {"drop": null, "new": "1"}}}',
            headers=headers,
        )
    )
    assert patched["metadata"]["labels"] == {"keep": "yes", "new": "1"}
    bad_type = await _status(
        await http.patch(f"{V}/realms/r", json={"metadata": {"labels": {}}}), 415
    )
    assert "merge-patch" in bad_type["message"]
    stale = await _status(
        await http.patch(
            f"{V}/realms/r",
            data=b'{"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}',
            headers=headers,
        ),
        409,
    )
    assert stale["reason"] == "Conflict"
    invalid = await _status(
        await http.patch(f"{V}/realms/r", data=b'{"spec": {"nonsense": true}}', headers=headers),
        422,
    )
    assert invalid["details"]["causes"][0]["field"] == "spec.nonsense"
    renamed = await _status(
        await http.patch(f"{V}/realms/r", data=b'{"metadata": {"name": "other"}}', headers=headers),
        400,
    )
    assert renamed["details"]["causes"][0]["field"] == "metadata.name"


async def test_status_subresource(http: aiohttp.ClientSession) -> None:
    created = await _ok(await http.post(f"{V}/realms", json=realm_doc("r")), 201)
    headers = {"Content-Type": "application/merge-patch+json"}
    patched = await _ok(
        await http.patch(
            f"{V}/realms/r/status",
            data=b'{"status": {"state": "Ready", "message": "fine"},'
            b' "metadata": {"labels": {"x": "y"}}}',
            headers=headers,
        )
    )
    assert patched["status"]["state"] == "Ready"
    assert patched["metadata"]["labels"] == {}  # a status write never touches metadata/spec
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]
    # and a spec write never touches status
    spec_write = await _ok(
        await http.patch(
            f"{V}/realms/r",
            data=b'{"status": {"state": "Failed"}, "metadata": {"labels": {"x": "y"}}}',
            headers=headers,
        )
    )
    assert spec_write["status"]["state"] == "Ready"
    # nor does a PUT of the object, whatever status it carries (a client of another
    # version may send status fields this server does not have)
    whole = await _ok(await http.get(f"{V}/realms/r"))
    whole["status"] = {"state": "Failed", "fieldOfANewerVersion": 3, "nodes": "garbage"}
    put = await _ok(await http.put(f"{V}/realms/r", json=whole))
    assert put["status"]["state"] == "Ready"
    assert "fieldOfANewerVersion" not in put["status"]
    doc = await _ok(await http.get(f"{V}/realms/r/status"))
    doc["status"]["message"] = "replaced"
    replaced = await _ok(await http.put(f"{V}/realms/r/status", json=doc))
    assert replaced["status"]["message"] == "replaced"


async def test_dry_run_writes_nothing(http: aiohttp.ClientSession, api: Api) -> None:
    dry = {"dryRun": "All"}
    made = await _ok(await http.post(f"{V}/realms", json=realm_doc("ghost"), params=dry), 201)
    assert made["metadata"]["name"] == "ghost"
    await _status(await http.get(f"{V}/realms/ghost"), 404)
    await _status(await http.post(f"{V}/realms", json=realm_doc("bad_name"), params=dry), 422)

    real = await _ok(await http.post(f"{V}/realms", json=realm_doc("real")), 201)
    await _status(await http.post(f"{V}/realms", json=realm_doc("real"), params=dry), 409)
    doc = {**real, "metadata": {**real["metadata"], "labels": {"z": "1"}}}
    preview = await _ok(await http.put(f"{V}/realms/real", json=doc, params=dry))
    assert preview["metadata"]["labels"] == {"z": "1"}
    headers = {"Content-Type": "application/merge-patch+json"}
    await _ok(
        await http.patch(
            f"{V}/realms/real",
            data=b'{"metadata":{"labels":{"p":"1"}}}',
            headers=headers,
            params=dry,
        )
    )
    await _ok(await http.delete(f"{V}/realms/real", params=dry))
    after = await _ok(await http.get(f"{V}/realms/real"))
    assert after["metadata"]["labels"] == {}
    assert after["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]
    assert "deletionTimestamp" not in after["metadata"]
    await _status(
        await http.post(f"{V}/realms", json=realm_doc("x"), params={"dryRun": "Some"}), 400
    )


async def test_delete_refuses_children_unless_cascade(http: aiohttp.ClientSession) -> None:
    await _defaults(http)
    await _ok(await http.post(CELLS, json=cell_doc("web")), 201)
    refused = await _status(await http.delete(f"{V}/realms/default"), 409)
    assert "space" in refused["message"].lower() or "children" in refused["message"].lower()
    await _status(await http.delete(f"{V}/realms/default", params={"dryRun": "All"}), 409)
    await _status(
        await http.delete(f"{V}/realms/default", params={"propagationPolicy": "Orphan"}), 400
    )
    gone = await http.delete(f"{CELLS}/web")
    assert gone.status in (200, 202)
    # The cascade is answered at once with the realm marked; its children go after.
    marked = await _ok(await http.delete(f"{V}/realms/default", params={"cascade": "true"}), 202)
    assert marked["metadata"]["deletionTimestamp"]
    for _ in range(100):
        response = await http.get(f"{V}/realms/default")
        if response.status == 404:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("realm not deleted by cascade")
    await _status(await http.delete(f"{V}/realms/default"), 404)


async def test_body_limit_and_bad_bodies(http: aiohttp.ClientSession) -> None:
    big = b'{"kind": "Realm", "metadata": {"name": "r"}, "x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    too_big = await _status(
        await http.post(f"{V}/realms", data=big, headers={"Content-Type": "application/json"}),
        413,
    )
    assert "limit" in too_big["message"]
    await _status(
        await http.post(
            f"{V}/realms", data=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    await _status(
        await http.post(
            f"{V}/realms", data=b"[1, 2]", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    yaml_made = await http.post(
        f"{V}/realms",
        data=b"kind: Realm\napiVersion: v1beta1\nmetadata:\n  name: from-yaml\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml_made.status == 201
    await _status(await http.request("POST", f"{V}/realms/x"), 405)


async def test_health_version_metrics(http: aiohttp.ClientSession, api: Api) -> None:
    assert (await http.get("/healthz")).status == 200
    ready = await http.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert "[+]etcd ok" in await ready.text()
    version = await _ok(await http.get("/version"))
    import kukeon

    assert version["gitVersion"] == kukeon.__version__
    metrics = await http.get("/metrics")
    assert metrics.status == 200
    assert "kukeon_apiserver_requests_total" in await metrics.text()
    discovery = await _ok(await http.get(V))
    served = {r["name"] for r in discovery["resources"]}
    assert {"realms", "spaces", "stacks", "cells"} <= served


LEVELS = [
    ("realm", f"{V}/realms", realm_doc("lvl")),
    ("space", f"{V}/realms/default/spaces", space_doc("lvl")),
    ("stack", f"{V}/realms/default/spaces/default/stacks", stack_doc("lvl")),
    ("cell", CELLS, cell_doc("lvl")),
]


@pytest.mark.parametrize(("level", "collection", "doc"), LEVELS, ids=[lv[0] for lv in LEVELS])
async def test_every_verb_at_every_level(
    http: aiohttp.ClientSession, level: str, collection: str, doc: dict[str, Any]
) -> None:
    await _defaults(http)
    path = f"{collection}/lvl"
    created = await _ok(await http.post(collection, json=doc), 201)
    assert (await _ok(await http.get(path)))["metadata"]["uid"] == created["metadata"]["uid"]
    assert (await _ok(await http.get(f"{path}/status")))["kind"] == created["kind"]

    replaced = await _ok(
        await http.put(
            path, json={**created, "metadata": {**created["metadata"], "labels": {"v": "1"}}}
        )
    )
    assert replaced["metadata"]["labels"] == {"v": "1"}
    merge = {"Content-Type": "application/merge-patch+json"}
    patched = await _ok(
        await http.patch(path, data=b'{"metadata":{"annotations":{"note":"x"}}}', headers=merge)
    )
    assert patched["metadata"]["annotations"] == {"note": "x"}
    assert patched["metadata"]["labels"] == {"v": "1"}
    status = await _ok(
        await http.patch(f"{path}/status", data=b'{"status":{"message":"observed"}}', headers=merge)
    )
    assert status["status"]["message"] == "observed"
    full = await _ok(await http.get(path))
    full["status"]["reason"] = "Because"
    assert (await _ok(await http.put(f"{path}/status", json=full)))["status"]["reason"] == "Because"

    plural = collection.rsplit("/", 1)[-1]
    across = await _ok(await http.get(f"{V}/{plural}"))
    assert "lvl" in [item["metadata"]["name"] for item in across["items"]]

    deleted = await http.delete(path)
    assert deleted.status in (200, 202), await deleted.text()
    for _ in range(50):
        if (await http.get(path)).status == 404:
            break
    else:
        pytest.fail(f"{level} was not deleted")


async def test_clients_cannot_add_finalizers(http: aiohttp.ClientSession) -> None:
    doc = realm_doc("fin")
    doc["metadata"]["finalizers"] = ["example.com/never-released"]
    refused = await _status(await http.post(f"{V}/realms", json=doc), 422)
    assert "metadata.finalizers" in refused["message"]
    assert refused["details"]["causes"][0]["field"] == "metadata.finalizers"
    await _status(await http.get(f"{V}/realms/fin"), 404)

    await _ok(await http.post(f"{V}/realms", json=realm_doc("fin")), 201)
    before = await _ok(await http.get(f"{V}/realms/fin"))
    patch = {"metadata": {"finalizers": [*before["metadata"]["finalizers"], "example.com/x"]}}
    refused = await _status(
        await http.patch(
            f"{V}/realms/fin",
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        ),
        422,
    )
    assert "example.com/x" in refused["message"]
    after = await _ok(await http.get(f"{V}/realms/fin"))
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # A deletion is never held by a client's promise.
    gone = await http.delete(f"{V}/realms/fin")
    assert gone.status == 200


async def test_fields_kukeond_would_ignore_are_refused(
    http: aiohttp.ClientSession, api: Api
) -> None:
    """A containerdId is kukeon's, and a port entry kukeond cannot publish (no host port) is
    refused: a write that sets one is a 422 naming it, while a document stored before the
    rule stays writable as long as the write leaves the value as it was."""
    await _defaults(http)
    for field, value, where in (
        ("ports", ["80"], "spec.containers[0].ports[0]"),
        ("containerdId", "mine", "spec.containers[0].containerdId"),
    ):
        doc = cell_doc(f"c-{field.lower()}")
        doc["spec"]["containers"][0][field] = value
        refused = await _status(await http.post(CELLS, json=doc), 422)
        assert refused["details"]["causes"][0]["field"] == where
    derived = cell_doc("derived")
    derived["spec"]["containers"][0]["containerdId"] = "default_default_derived_main"
    await _ok(await http.post(CELLS, json=derived), 201)

    # Stored before the rule (written through the registry, as an older kukeond did).
    old = cell_doc("old")
    old["spec"]["containers"][0]["ports"] = ["80"]
    old["spec"]["realmId"] = old["spec"]["spaceId"] = old["spec"]["stackId"] = "default"
    await api.registry.create(parse_resource(old))
    merge = {"Content-Type": "application/merge-patch+json"}
    stop = {"spec": {"desiredState": "Stopped"}}
    await _ok(await http.patch(f"{CELLS}/old", data=json.dumps(stop), headers=merge))
    change = {"spec": {"containers": [{"id": "main", "image": "busybox:latest", "root": True,
                                        "ports": ["90"]}]}}  # fmt: skip
    await _status(await http.patch(f"{CELLS}/old", data=json.dumps(change), headers=merge), 422)


async def test_a_deletes_grace_period_is_checked_and_kept_for_cells_only(
    http: aiohttp.ClientSession,
) -> None:
    await _defaults(http)
    await _ok(await http.post(CELLS, json=cell_doc("web")), 201)
    for bad in ("-1", "abc", "3601", "1e3", "99999999999"):
        refused = await _status(
            await http.delete(f"{CELLS}/web", params={"gracePeriodSeconds": bad}), 400
        )
        assert refused["details"]["causes"][0]["field"] == "gracePeriodSeconds"
    for body in (
        {"gracePeriodSeconds": "5"},
        {"gracePeriodSeconds": True},
        {"gracePeriodSeconds": -2},
    ):
        await _status(await http.delete(f"{CELLS}/web", json=body), 400)
    refused = await _status(
        await http.delete(f"{V}/realms/default", params={"gracePeriodSeconds": "5"}), 400
    )
    assert "only a cell" in refused["message"]
    # Nothing of it was written: the cell is not being deleted.
    current = await _ok(await http.get(f"{CELLS}/web"), 200)
    assert current["metadata"].get("deletionTimestamp") is None
    # A client cannot write the field itself.
    current["metadata"]["deletionGracePeriodSeconds"] = 0
    updated = await _ok(await http.put(f"{CELLS}/web", json=current), 200)
    assert updated["metadata"].get("deletionGracePeriodSeconds") is None
    # Given by the body, as DeleteOptions carry it (the cell has no node: it goes at once
    # or waits for its finalizers; either way the answer is no error).
    gone = await http.delete(f"{CELLS}/web", json={"gracePeriodSeconds": 3})
    assert gone.status in (200, 202), await gone.text()
    if gone.status == 202:
        assert (await gone.json())["metadata"]["deletionGracePeriodSeconds"] == 3


async def test_a_delete_options_body_is_honoured_or_refused(http: aiohttp.ClientSession) -> None:
    """client-go sends a delete's options as a DeleteOptions body: its dryRun deleted for
    real and its preconditions were ignored (kubectl delete --dry-run=server deleted)."""
    await _defaults(http)
    created = await _ok(await http.post(CELLS, json=cell_doc("web")), 201)
    uid, version = created["metadata"]["uid"], created["metadata"]["resourceVersion"]
    dry = {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}
    await _ok(await http.delete(f"{CELLS}/web", json=dry))
    background = {"propagationPolicy": "Background"}
    cases: list[tuple[dict[str, Any], dict[str, str], int, str | None]] = [
        ({"preconditions": {"uid": "another"}}, {}, 409, None),
        ({"preconditions": {"resourceVersion": "1"}}, {}, 409, None),
        ({"preconditions": {"resourceVersion": "1"}, "dryRun": ["All"]}, {}, 409, None),
        ({"preconditions": {"uid": 5}}, {}, 400, "preconditions.uid"),
        ({"preconditions": {"name": "web"}}, {}, 400, "preconditions.name"),
        ({"orphanDependents": "yes"}, {}, 400, "orphanDependents"),
        ({"orphanDependents": False, **background}, {}, 400, "orphanDependents"),
        ({"orphanDependents": True}, {}, 400, "propagationPolicy"),  # a cell has no dependents
        ({"propagationPolicy": "Foreground"}, background, 400, "propagationPolicy"),
        ({"gracePeriodSeconds": 5}, {"gracePeriodSeconds": "6"}, 400, "gracePeriodSeconds"),
        ({"ignoreStoreReadErrorWithClusterBreakingPotential": True}, {}, 400, None),
        ({"kind": "Pod"}, {}, 400, "kind"),
        ({"dryRun": ["Some"]}, {}, 400, "dryRun"),
    ]
    for body, params, code, field in cases:
        refused = await _status(await http.delete(f"{CELLS}/web", json=body, params=params), code)
        if field is not None:
            assert refused["details"]["causes"][0]["field"] == field, refused
    json_type = {"Content-Type": "application/json"}
    await _status(await http.delete(f"{CELLS}/web", data=b"[1]", headers=json_type), 400)
    # None of it was written: the cell is as it was made.
    current = await _ok(await http.get(f"{CELLS}/web"))
    assert current["metadata"]["resourceVersion"] == version
    assert current["metadata"].get("deletionTimestamp") is None
    # A cascade checks them too, on the version it marks.
    realm = await _ok(await http.get(f"{V}/realms/default"))
    cascade = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
    await _status(await http.delete(f"{V}/realms/default", json=cascade), 409)
    assert (await _ok(await http.get(f"{V}/realms/default")))["metadata"] == realm["metadata"]
    # Preconditions that hold: deleted.
    holding = {"preconditions": {"uid": uid, "resourceVersion": version}}
    gone = await http.delete(f"{CELLS}/web", json=holding)
    assert gone.status in (200, 202), await gone.text()
