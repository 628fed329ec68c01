"""kube-apiserver's common query parameters have their effect or are a 400 naming them
(they were accepted and ignored): ``pretty`` indents, a ``fieldValidation`` other than
kube-apiserver's three and a ``fieldManager`` kube-apiserver would refuse are refused, and
nothing is written."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.integration.apiserver.conftest import realm_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def _refused(response: aiohttp.ClientResponse, name: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == 400, body
    assert [c["field"] for c in body["details"]["causes"]] == [name], body
    assert name in body["message"], body
    return body


async def test_pretty_indents_answers_and_errors(http: aiohttp.ClientSession) -> None:
    made = await http.post(f"{V}/realms", params={"pretty": "true"}, json=realm_doc("p"))
    assert made.status == 201
    text = await made.text()
    assert text.startswith('{\n  "'), text[:80]
    assert text.endswith("}\n"), text[-80:]
    assert json.loads(text)["metadata"]["name"] == "p"
    listed = await (await http.get(f"{V}/realms", params={"pretty": "1"})).text()
    assert '\n  "items": [' in listed, listed[:200]
    missing = await http.get(f"{V}/realms/nope", params={"pretty": "true"})
    assert missing.status == 404
    assert (await missing.text()).startswith('{\n  "')
    compact = await (await http.get(f"{V}/realms/p", params={"pretty": "false"})).text()
    assert "\n" not in compact
    await _refused(await http.get(f"{V}/realms", params={"pretty": "sure"}), "pretty")


async def test_field_validation_is_one_of_kubes_levels(http: aiohttp.ClientSession) -> None:
    strict = await http.post(
        f"{V}/realms", params={"fieldValidation": "Strict"}, json=realm_doc("s")
    )
    assert strict.status == 201, await strict.text()
    for value in ("strict", "Loose"):
        await _refused(
            await http.post(f"{V}/realms", params={"fieldValidation": value}, json=realm_doc("u")),
            "fieldValidation",
        )
    patch = await http.patch(
        f"{V}/realms/s",
        params={"fieldValidation": "ignore"},
        data=b'{"metadata":{"labels":{"a":"b"}}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    await _refused(patch, "fieldValidation")
    assert (await http.get(f"{V}/realms/u")).status == 404  # nothing written
    # Warn and Ignore are carried out: test_field_validation_api.py


async def test_field_manager_is_checked_as_kube_does(http: aiohttp.ClientSession) -> None:
    good = await http.post(
        f"{V}/realms", params={"fieldManager": "kubectl-client-side-apply"}, json=realm_doc("m")
    )
    assert good.status == 201, await good.text()
    for value in ("x" * 129, "tab\there"):
        await _refused(
            await http.post(f"{V}/realms", params={"fieldManager": value}, json=realm_doc("n")),
            "fieldManager",
        )
    assert (await http.get(f"{V}/realms/n")).status == 404
