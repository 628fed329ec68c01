"""A cell's `networks` and `cniConfigPath` at the API: what the cell cannot have is a 422
naming the field (an unknown space, the cell's own space, a non-root container's
`cniConfigPath`), what it can is stored."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.integration.apiserver.conftest import cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


async def _answer(response: aiohttp.ClientResponse, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _hierarchy(http: aiohttp.ClientSession) -> None:
    await _answer(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    for space in ("default", "other"):
        await _answer(await http.post(f"{V}/realms/default/spaces", json=space_doc(space)), 201)
    stacks = f"{V}/realms/default/spaces/default/stacks"
    await _answer(await http.post(stacks, json=stack_doc("default")), 201)


def _fields(body: dict[str, Any]) -> list[str]:
    return [cause["field"] for cause in body["details"]["causes"]]


async def test_an_unknown_space_is_refused_naming_the_field(http: aiohttp.ClientSession) -> None:
    await _hierarchy(http)
    doc = cell_doc("joins")
    doc["spec"]["containers"].append({"id": "side", "image": "busybox:latest"})
    doc["spec"]["containers"][1]["networks"] = ["other", "no-such-space"]
    refused = await _answer(await http.post(CELLS, json=doc), 422)
    assert _fields(refused) == ["spec.containers[1].networks[1]"]
    assert "no space 'no-such-space'" in refused["message"]

    # A space of the realm is joined (by any container: they share one namespace).
    doc["spec"]["containers"][1]["networks"] = ["other"]
    stored = await _answer(await http.post(CELLS, json=doc), 201)
    assert stored["spec"]["containers"][1]["networks"] == ["other"]

    # The same check on a later write, for the names it adds.
    change = {"spec": {"containers": [doc["spec"]["containers"][0],
                                      {**doc["spec"]["containers"][1],
                                       "networks": ["other", "gone"]}]}}  # fmt: skip
    merge = {"Content-Type": "application/merge-patch+json"}
    refused = await _answer(
        await http.patch(f"{CELLS}/joins", data=json.dumps(change), headers=merge), 422
    )
    assert _fields(refused) == ["spec.containers[1].networks[1]"]


async def test_what_the_cell_cannot_have_is_refused(http: aiohttp.ClientSession) -> None:
    await _hierarchy(http)
    own = cell_doc("own")
    own["spec"]["containers"][0]["networks"] = ["default"]
    refused = await _answer(await http.post(CELLS, json=own), 422)
    assert _fields(refused) == ["spec.containers[0].networks[0]"]
    assert "own space" in refused["message"]

    side = cell_doc("side")
    side["spec"]["containers"].append(
        {"id": "side", "image": "busybox:latest", "cniConfigPath": "/etc/cni/net.d/x.conflist"}
    )
    refused = await _answer(await http.post(CELLS, json=side), 422)
    assert _fields(refused) == ["spec.containers[1].cniConfigPath"]
    assert "root container" in refused["message"]

    host = cell_doc("host")
    host["spec"]["containers"][0].update(hostNetwork=True, networks=["other"])
    refused = await _answer(await http.post(CELLS, json=host), 422)
    assert _fields(refused) == ["spec.containers[0].networks[0]"]

    root = cell_doc("root")
    root["spec"]["containers"][0]["cniConfigPath"] = "/etc/cni/net.d/x.conflist"
    stored = await _answer(await http.post(CELLS, json=root), 201)
    assert stored["spec"]["containers"][0]["cniConfigPath"] == "/etc/cni/net.d/x.conflist"
