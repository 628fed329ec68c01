"""Labels are there to be selected: one no selector can name is refused on write (422
naming it), in an object's labels and in a set's template; a legacy one stored before does
not block the object's other changes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from kukeon.api import parse_resource
from kukeon.api.meta import quote
from kukeon.store import Registry
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc
from tests.integration.apiserver.test_cellsets_api import set_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
STACK = f"{V}/realms/team/spaces/s/stacks/st"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return response.status, await response.json()


def _fields(body: dict[str, Any]) -> list[str]:
    return [cause["field"] for cause in body.get("details", {}).get("causes", [])]


@pytest.fixture
async def stack(api: Api, http: aiohttp.ClientSession) -> None:
    for path, doc in (
        (f"{V}/realms", realm_doc("team")),
        (f"{V}/realms/team/spaces", space_doc("s")),
        (f"{V}/realms/team/spaces/s/stacks", stack_doc("st")),
    ):
        status, body = await _answer(await http.post(path, json=doc))
        assert status == 201, body


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("a b", "c"),  # a space: `-l 'a b=c'` is no selector
        ("tier", "x,y"),  # a comma splits a selector's terms
        ("tier", "v" * 64),  # Kubernetes' 63
        ("-tier", "x"),
        ("tier", "new\nline"),
        ("tier\n", "x"),  # a final newline: Go's `$` is the end of the text, Python's not
        ("tier", "x\n"),
        ("p" * 254 + "/name", "x"),
    ],
)
async def test_a_label_no_selector_can_name_is_refused(
    stack: None, http: aiohttp.ClientSession, key: str, value: str
) -> None:
    status, body = await _answer(
        await http.post(f"{STACK}/cells", json=cell_doc("c", **{key: value}))
    )
    assert status == 422, body
    assert _fields(body) == [f"metadata.labels[{quote(key)}]"]
    # Nothing was written.
    status, _ = await _answer(await http.get(f"{STACK}/cells/c"))
    assert status == 404


async def test_labels_are_checked_in_patches_and_set_templates(
    stack: None, http: aiohttp.ClientSession
) -> None:
    status, body = await _answer(await http.post(f"{STACK}/cells", json=cell_doc("c", app="web")))
    assert status == 201, body
    patch = {"metadata": {"labels": {"bad key": "x"}}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/c", json=patch, headers=MERGE))
    assert status == 422, body
    assert _fields(body) == ["metadata.labels['bad key']"]

    cellset = set_doc()
    cellset["spec"]["template"]["metadata"]["labels"]["team name"] = "a"
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    assert status == 422, body
    assert _fields(body) == ["spec.template.metadata.labels['team name']"]


async def test_a_legacy_label_does_not_block_other_changes(
    stack: None, api: Api, http: aiohttp.ClientSession, registry: Registry
) -> None:
    document = cell_doc("old", **{"legacy key": "x"})
    document["spec"] = {**document["spec"], "realmId": "team", "spaceId": "s", "stackId": "st"}
    await registry.create(parse_resource(document))  # as stored before the check existed
    patch = {"metadata": {"labels": {"app": "web"}}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/old", json=patch, headers=MERGE))
    assert status == 200, body
    assert body["metadata"]["labels"] == {"legacy key": "x", "app": "web"}


async def test_annotations_have_kubernetes_keys_and_size(
    stack: None, api: Api, http: aiohttp.ClientSession, registry: Registry
) -> None:
    for key in ("bad key", "", "a/b/c", "-x", "x\n"):
        document = cell_doc("c")
        document["metadata"]["annotations"] = {key: "v"}
        status, body = await _answer(await http.post(f"{STACK}/cells", json=document))
        assert status == 422, body
        assert _fields(body) == [f"metadata.annotations[{quote(key)}]"]
    document = cell_doc("c")
    document["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    status, body = await _answer(await http.post(f"{STACK}/cells", json=document))
    assert status == 422, body
    assert _fields(body) == ["metadata.annotations"]
    status, _ = await _answer(await http.get(f"{STACK}/cells/c"))
    assert status == 404

    cellset = set_doc()
    cellset["spec"]["template"]["metadata"]["annotations"] = {"team name": "a"}
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    assert status == 422, body
    assert _fields(body) == ["spec.template.metadata.annotations['team name']"]

    # a legacy annotation stays through other changes; a new bad one beside it is refused
    document = cell_doc("old")
    document["metadata"]["annotations"] = {"legacy key": "x", "example.com/note": "a b\nc"}
    document["spec"] = {**document["spec"], "realmId": "team", "spaceId": "s", "stackId": "st"}
    await registry.create(parse_resource(document))
    patch = {"metadata": {"labels": {"app": "web"}, "annotations": {"ok": "1"}}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/old", json=patch, headers=MERGE))
    assert status == 200, body
    assert body["metadata"]["annotations"]["legacy key"] == "x"
    patch = {"metadata": {"annotations": {"new key": "1"}}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/old", json=patch, headers=MERGE))
    assert status == 422, body
    assert _fields(body) == ["metadata.annotations['new key']"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("a/b/c", "x"),  # two slashes: no label key has them
        ("", "x"),
        ("zone", "a b"),
        ("zone", "v" * 64),
    ],
)
async def test_a_node_selector_no_node_label_can_match_is_refused(
    stack: None, http: aiohttp.ClientSession, key: str, value: str
) -> None:
    """Node labels are label keys and values: such a term would leave the cell unscheduled
    for good (the scheduler says only that no node matches), so it is a 422 naming it, in
    a cell, a set and a set's template; nothing is written."""
    field = f"[{quote(key)}]"
    document = cell_doc("c")
    document["spec"]["nodeSelector"] = {key: value}
    status, body = await _answer(await http.post(f"{STACK}/cells", json=document))
    assert status == 422, body
    assert _fields(body) == [f"spec.nodeSelector{field}"]
    assert "no node's label can match it" in body["message"]
    status, _ = await _answer(await http.get(f"{STACK}/cells/c"))
    assert status == 404

    status, body = await _answer(await http.post(f"{STACK}/cells", json=cell_doc("c")))
    assert status == 201, body
    patch = {"spec": {"nodeSelector": {key: value}}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/c", json=patch, headers=MERGE))
    assert status == 422, body
    assert _fields(body) == [f"spec.nodeSelector{field}"]

    for where in ("spec", "template"):
        cellset = set_doc()
        spec = cellset["spec"] if where == "spec" else cellset["spec"]["template"]["spec"]
        spec["nodeSelector"] = {key: value}
        status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
        assert status == 422, body
        prefix = "spec" if where == "spec" else "spec.template.spec"
        assert f"{prefix}.nodeSelector{field}" in _fields(body), body


async def test_a_legacy_node_selector_does_not_block_other_changes(
    stack: None, api: Api, http: aiohttp.ClientSession, registry: Registry
) -> None:
    document = cell_doc("old")
    document["spec"] = {
        **document["spec"],
        "realmId": "team",
        "spaceId": "s",
        "stackId": "st",
        "nodeSelector": {"a/b/c": "x"},
    }
    await registry.create(parse_resource(document))  # as stored before the check existed
    patch = {"metadata": {"labels": {"app": "web"}}, "spec": {"desiredState": "Stopped"}}
    status, body = await _answer(await http.patch(f"{STACK}/cells/old", json=patch, headers=MERGE))
    assert status == 200, body
    assert body["spec"]["nodeSelector"] == {"a/b/c": "x"}


@pytest.mark.parametrize("key", ["kukeon.io/cellset", "kukeon.io/template-hash"])
async def test_a_sets_template_may_not_carry_its_controllers_labels(
    stack: None, api: Api, http: aiohttp.ClientSession, registry: Registry, key: str
) -> None:
    """The set's controller puts its own values of these labels on each cell: a template's
    were stored and silently replaced. Refused on create and on an update adding one; a set
    stored with one before stays writable while it keeps it."""
    field = f"spec.template.metadata.labels[{quote(key)}]"
    cellset = set_doc()
    cellset["spec"]["template"]["metadata"]["labels"][key] = "mine"
    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=cellset))
    assert status == 422, body
    assert _fields(body) == [field]
    assert key in body["message"]

    status, body = await _answer(await http.post(f"{STACK}/cellsets", json=set_doc()))
    assert status == 201, body
    added = {"spec": {"template": {"metadata": {"labels": {key: "mine"}}}}}
    path = f"{STACK}/cellsets/web"
    status, body = await _answer(await http.patch(path, json=added, headers=MERGE))
    assert status == 422, body
    assert _fields(body) == [field]
    status, body = await _answer(await http.delete(path))
    assert status == 200, body

    legacy = set_doc()
    legacy["apiVersion"] = "kukeon.io/v1beta1"
    legacy["metadata"]["name"] = "old"
    legacy["spec"] = {**legacy["spec"], "realmId": "team", "spaceId": "s", "stackId": "st"}
    legacy["spec"]["template"]["metadata"]["labels"][key] = "mine"
    await registry.create(parse_resource(legacy))  # as stored before the check existed
    path = f"{STACK}/cellsets/old"
    scaled = {"spec": {"replicas": 3}}
    status, body = await _answer(await http.patch(path, json=scaled, headers=MERGE))
    assert status == 200, body
    assert body["spec"]["template"]["metadata"]["labels"][key] == "mine"
    changed = {"spec": {"template": {"metadata": {"labels": {key: "other"}}}}}
    status, body = await _answer(await http.patch(path, json=changed, headers=MERGE))
    assert status == 422, body
    removed = {"spec": {"template": {"metadata": {"labels": {key: None}}}}}
    status, body = await _answer(await http.patch(path, json=removed, headers=MERGE))
    assert status == 200, body
    assert key not in body["spec"]["template"]["metadata"]["labels"]
