"""``fieldValidation`` as kube-apiserver's (KEP-2885): ``Strict`` (the default) refuses an
unknown field or a repeated key naming each; ``Warn`` drops them, keeps a repeated key's
last value and names each in a ``Warning: 299`` header; ``Ignore`` drops them silently.
On create, replace, merge patch, the status subresource and a profile run; anything else
invalid is refused at every level, and a refusal writes nothing."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from kukeon.client.apiclient import ApiClient, warning_texts
from tests.integration.apiserver.conftest import Api, realm_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _warnings(response: aiohttp.ClientResponse) -> list[str]:
    return [
        text for value in response.headers.getall("Warning", []) for text in warning_texts(value)
    ]


async def _created(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status in (200, 201), body
    return body


def _typo(name: str) -> bytes:
    """A realm with an unknown field in spec and in metadata, and a label given twice."""
    return (
        b'{"apiVersion":"kukeon.io/v1beta1","kind":"Realm",'
        b'"metadata":{"name":"' + name.encode() + b'","labels":{"tier":"a","tier":"b"},'
        b'"namespace":"x"},"spec":{"bogus_field":1}}'
    )


async def test_strict_is_the_default_and_names_every_field(http: aiohttp.ClientSession) -> None:
    for params in ({}, {"fieldValidation": "Strict"}, {"fieldValidation": ""}):
        unknown = realm_doc("s")
        unknown["spec"] = {"bogus_field": 1}
        refused = await http.post(f"{V}/realms", params=params, json=unknown)
        body = await refused.json()
        assert refused.status == 422, body
        assert [c["field"] for c in body["details"]["causes"]] == ["spec.bogus_field"], body
        twice = await http.post(
            f"{V}/realms",
            params=params,
            data=b'{"kind":"Realm","metadata":{"name":"s","name":"s","labels":{"a":"1","a":"2"}}}',
            headers={"Content-Type": "application/json"},
        )
        body = await twice.json()
        assert twice.status == 422, body
        fields = sorted(c["field"] for c in body["details"]["causes"])
        assert fields == ["metadata.labels.a", "metadata.name"], body
        assert "Warning" not in twice.headers
    yaml_twice = await http.post(
        f"{V}/realms",
        data=b"kind: Realm\nmetadata:\n  name: s\n  labels:\n    1: a\n    '1': b\n",
        headers={"Content-Type": "application/yaml"},
    )
    body = await yaml_twice.json()
    assert yaml_twice.status == 422, body  # keys equal as JSON's text: was a 400 naming none
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.labels.1"], body
    assert (await http.get(f"{V}/realms/s")).status == 404


async def test_warn_drops_and_names_each_field(http: aiohttp.ClientSession) -> None:
    made = await http.post(
        f"{V}/realms",
        params={"fieldValidation": "Warn"},
        data=_typo("w"),
        headers={"Content-Type": "application/json"},
    )
    realm = await _created(made)
    assert _warnings(made) == [
        'duplicate field "metadata.labels.tier"',
        'unknown field "metadata.namespace"',
        'unknown field "spec.bogus_field"',
    ]
    assert made.headers.getall("Warning")[0] == '299 - "duplicate field \\"metadata.labels.tier\\""'
    assert realm["metadata"]["labels"] == {"tier": "b"}  # the last one, as kube keeps it
    stored = await (await http.get(f"{V}/realms/w")).json()
    assert "bogus_field" not in json.dumps(stored)


async def test_ignore_drops_silently(http: aiohttp.ClientSession) -> None:
    made = await http.post(
        f"{V}/realms",
        params={"fieldValidation": "Ignore"},
        data=_typo("i"),
        headers={"Content-Type": "application/json"},
    )
    realm = await _created(made)
    assert "Warning" not in made.headers
    assert realm["metadata"]["labels"] == {"tier": "b"}
    assert "bogus_field" not in json.dumps(realm)


async def test_replace_patch_and_status_at_each_level(http: aiohttp.ClientSession) -> None:
    await _created(await http.post(f"{V}/realms", json=realm_doc("r")))
    current = await (await http.get(f"{V}/realms/r")).json()
    current["spec"]["typo"] = True
    current["metadata"].pop("resourceVersion")
    put = await http.put(f"{V}/realms/r", json=current)
    assert put.status == 422, await put.text()
    put = await http.put(f"{V}/realms/r", params={"fieldValidation": "Warn"}, json=current)
    await _created(put)
    assert _warnings(put) == ['unknown field "spec.typo"']
    patch = b'{"metadata":{"labels":{"x":"1"}},"spec":{"typo":1}}'
    refused = await http.patch(f"{V}/realms/r", data=patch, headers=MERGE)
    assert refused.status == 422, await refused.text()
    for level, expected in (("Warn", ['unknown field "spec.typo"']), ("Ignore", [])):
        patched = await http.patch(
            f"{V}/realms/r", params={"fieldValidation": level}, data=patch, headers=MERGE
        )
        assert (await _created(patched))["metadata"]["labels"] == {"x": "1"}
        assert _warnings(patched) == expected
    status = b'{"status":{"state":"Ready","newerField":{"a":1}}}'
    refused = await http.patch(f"{V}/realms/r/status", data=status, headers=MERGE)
    body = await refused.json()
    assert refused.status == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["status.newerField"], body
    patched = await http.patch(
        f"{V}/realms/r/status", params={"fieldValidation": "Warn"}, data=status, headers=MERGE
    )
    assert (await _created(patched))["status"]["state"] == "Ready"
    assert _warnings(patched) == ['unknown field "status.newerField"']


async def test_other_mistakes_are_refused_at_every_level(http: aiohttp.ClientSession) -> None:
    bad = realm_doc("b")
    bad["spec"] = {"bogus": 1, "securityLevel": "nonsense"}
    for level in ("Warn", "Ignore"):
        refused = await http.post(f"{V}/realms", params={"fieldValidation": level}, json=bad)
        body = await refused.json()
        assert refused.status == 422, body
        assert [c["field"] for c in body["details"]["causes"]] == ["spec.securityLevel"], body
        # the answer still says what was dropped, as kube-apiserver's does
        assert _warnings(refused) == (['unknown field "spec.bogus"'] if level == "Warn" else [])
    assert (await http.get(f"{V}/realms/b")).status == 404


async def test_levels_are_kubes_words_exactly(http: aiohttp.ClientSession) -> None:
    for value in ("strict", "warn", "Loose"):
        refused = await http.post(
            f"{V}/realms", params={"fieldValidation": value}, json=realm_doc("v")
        )
        body = await refused.json()
        assert refused.status == 400, body
        assert [c["field"] for c in body["details"]["causes"]] == ["fieldValidation"], body
    assert (await http.get(f"{V}/realms/v")).status == 404


async def test_a_flood_of_unknown_fields_gets_a_bounded_answer(
    http: aiohttp.ClientSession,
) -> None:
    flood = realm_doc("f")
    flood["spec"] = {f'field{i}\n"x\u00e9': i for i in range(5000)}
    made = await http.post(f"{V}/realms", params={"fieldValidation": "Warn"}, json=flood)
    await _created(made)
    values = made.headers.getall("Warning")
    assert 1 < len(values) <= 33
    assert sum(len(v) for v in values) < 6000
    assert all(v.isascii() and v.isprintable() for v in values)
    texts = _warnings(made)
    assert texts[0] == 'unknown field "spec.field0\\n\\"x\\u00e9"'
    assert texts[-1].endswith("more warnings are not shown")


@pytest.mark.parametrize("pooled", [True, False])
async def test_the_client_asks_for_the_level_and_says_every_warning(api: Api, pooled: bool) -> None:
    """kukectl's client (``pooled=False``) and the pooled one send ``field_validation`` and
    pass each warning of each header on (only the first header was read)."""
    said: list[str] = []
    client = ApiClient(server=f"unix://{api.socket}", pooled=pooled)
    client.on_warning = said.append
    client.field_validation = "Warn"
    name = f"c{int(pooled)}"
    doc = realm_doc(name)
    doc["spec"] = {"newerField": 1, "otherField": {"a": 1}}
    async with client:
        made = await client.request("POST", f"{V}/realms", body=doc)
    assert made["metadata"]["name"] == name
    assert said == ['unknown field "spec.newerField"', 'unknown field "spec.otherField"']


async def test_a_status_patch_with_an_unknown_top_level_field_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    # '{"statuz": ...}' (a typo of status) was a 200 that changed nothing: the status route
    # kept only the patched status and dropped every other key unseen.
    await _created(await http.post(f"{V}/realms", json=realm_doc("t")))
    typo = b'{"statuz":{"state":"Ready"}}'
    refused = await http.patch(f"{V}/realms/t/status", data=typo, headers=MERGE)
    body = await refused.json()
    assert refused.status == 422, body
    assert [c["field"] for c in body["details"]["causes"]] == ["statuz"], body
    patched = await http.patch(
        f"{V}/realms/t/status", params={"fieldValidation": "Warn"}, data=typo, headers=MERGE
    )
    await _created(patched)
    assert _warnings(patched) == ['unknown field "statuz"']
    # What a status write ignores of the object's own fields stays ignored, as Kubernetes'.
    labelled = await http.patch(
        f"{V}/realms/t/status", data=b'{"metadata":{"labels":{"x":"1"}}}', headers=MERGE
    )
    assert (await _created(labelled))["metadata"]["labels"] == {}
