"""A boolean or an integer field takes JSON's type, as kube-apiserver decodes it: text
("yes", "true", "5"), a number for a boolean, a boolean or a number with a decimal point
(5.5, 5.0) for an integer are a 422 naming the field, and nothing is written; a merge
patch too. A plain YAML ``yes``/``off`` in a YAML body is its boolean (kubectl's YAML
reader reads YAML 1.1), the same word quoted is text and refused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.apiserver.conftest import cell_doc, create_tree, realm_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/team/spaces/s/stacks/st/cells"
YAML = {"Content-Type": "application/yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


async def _refusal(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    assert response.status == 422, body
    causes: list[dict[str, Any]] = body["details"]["causes"]
    return causes


def _cell(name: str, **spec: Any) -> dict[str, Any]:
    document = cell_doc(name)
    document["spec"].update(spec)
    return document


async def test_text_and_numbers_are_refused_where_json_types_are_asked(
    http: aiohttp.ClientSession,
) -> None:
    await create_tree(http)
    refused_booleans: tuple[str | int, ...] = ("yes", "true", "1", "off", 1, 0)
    for boolean in refused_booleans:
        causes = await _refusal(await http.post(CELLS, json=_cell("b", autoDelete=boolean)))
        assert [c["field"] for c in causes] == ["spec.autoDelete"], causes
        assert "must be a boolean, true or false" in causes[0]["message"], causes
    refused_integers: tuple[str | bool | float, ...] = ("5", True, 5.5, 64.0)
    for integer in refused_integers:
        resources = {"pidsLimit": integer}
        container = {"id": "main", "image": "busybox:latest", "resources": resources}
        causes = await _refusal(await http.post(CELLS, json=_cell("i", containers=[container])))
        assert [c["field"] for c in causes] == ["spec.containers[0].resources.pidsLimit"]
        assert "must be a JSON integer" in causes[0]["message"], causes
    realm = realm_doc("q")
    realm["spec"] = {"limits": {"pids": "64"}}
    causes = await _refusal(await http.post(f"{V}/realms", json=realm))
    assert [c["field"] for c in causes] == ["spec.limits.pids"], causes
    for name in ("b", "i"):
        assert (await http.get(f"{CELLS}/{name}")).status == 404
    assert (await http.get(f"{V}/realms/q")).status == 404


async def test_a_plain_yaml_yes_is_its_boolean_where_one_is_asked(
    http: aiohttp.ClientSession,
) -> None:
    await create_tree(http)
    container = {"id": "main", "image": "busybox:latest", "resources": {"pidsLimit": 64}}
    async with http.post(CELLS, json=_cell("f", containers=[container])) as made:
        assert made.status == 201, await made.text()
    patch = {"spec": {"autoDelete": "yes"}}
    causes = await _refusal(await http.patch(f"{CELLS}/f", json=patch, headers=MERGE))
    assert [c["field"] for c in causes] == ["spec.autoDelete"], causes
    plain = (
        b"apiVersion: kukeon.io/v1beta1\nkind: Cell\nmetadata: {name: y, labels: {on: yes}}\n"
        b"spec:\n  autoDelete: yes\n"
        b"  containers: [{id: main, image: 'busybox:latest', root: on, privileged: off}]\n"
    )
    async with http.post(CELLS, data=plain, headers=YAML) as made:
        assert made.status == 201, await made.text()
    stored = await (await http.get(f"{CELLS}/y")).json()
    assert stored["spec"]["autoDelete"] is True
    assert stored["spec"]["containers"][0]["root"] is True
    assert stored["metadata"]["labels"] == {"on": "yes"}  # text where text is asked
    quoted = plain.replace(b"autoDelete: yes", b"autoDelete: 'yes'").replace(b"name: y", b"name: q")
    causes = await _refusal(await http.post(CELLS, data=quoted, headers=YAML))
    assert [c["field"] for c in causes] == ["spec.autoDelete"], causes
