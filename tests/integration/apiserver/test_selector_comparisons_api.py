"""Kubernetes' ``key>N`` and ``key<N`` label selector terms (``Gt``, ``Lt``) on a LIST and a
WATCH, from the watch cache and from etcd alike: an object is chosen when its value reads
as an integer past the operand, never when it does not read as one; an operand that is no
integer is a 400 naming the term (it was a 400 for every ``>``)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.integration.apiserver.conftest import cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


async def _ok(response: aiohttp.ClientResponse, code: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def test_greater_and_less_than_list_and_watch(http: aiohttp.ClientSession) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    await _ok(await http.post(f"{V}/realms/default/spaces", json=space_doc("default")), 201)
    stacks = f"{V}/realms/default/spaces/default/stacks"
    await _ok(await http.post(stacks, json=stack_doc("default")), 201)
    for name, rank in (("a", "1"), ("b", "10"), ("c", "007"), ("d", "x"), ("e", "2.5")):
        await _ok(await http.post(CELLS, json=cell_doc(name, rank=rank)), 201)
    await _ok(await http.post(CELLS, json=cell_doc("f")), 201)
    for selector, names in (
        ("rank>5", ["b", "c"]),
        ("rank<7", ["a"]),
        ("rank > 0, rank < 10", ["a", "c"]),
        ("rank>1,rank notin (10)", ["c"]),
        ("rank<9223372036854775807", ["a", "b", "c"]),
        ("!rank", ["f"]),
    ):
        listed = await _ok(await http.get(CELLS, params={"labelSelector": selector}))
        assert [i["metadata"]["name"] for i in listed["items"]] == names, selector
        watched = await http.get(
            CELLS, params={"labelSelector": selector, "watch": "1", "timeoutSeconds": "0.3"}
        )
        events = [json.loads(line) for line in (await watched.read()).splitlines()]
        added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
        assert sorted(added) == names, selector
    for bad, why in (
        ("rank>x", "'x' after > or <"),
        ("rank<2.5", "'2.5' after > or <"),
        ("rank>", "'' after > or <"),
        ("rank>99999999999999999999", "must be an integer"),
        ("rank>=1", "expected an integer"),
        ("rank>-1", "invalid label value '-1'"),  # as apimachinery: a label value first
    ):
        for params in ({"labelSelector": bad}, {"labelSelector": bad, "watch": "1"}):
            refused = await http.get(CELLS, params=params)
            body = await refused.json()
            assert refused.status == 400, (bad, body)
            assert [c["field"] for c in body["details"]["causes"]] == ["labelSelector"], body
            assert why in body["details"]["causes"][0]["message"], body
