"""A write likely not meant as written is stored and warned of (``Warning: 299``), as
kube-apiserver's warnings; kukectl prints them."""

from __future__ import annotations

import aiohttp
import pytest

from kukeon.client.apiclient import warning_texts
from tests.integration.apiserver.conftest import cell_doc, create_tree

pytestmark = pytest.mark.integration

CELLS = "/apis/kukeon.io/v1beta1/realms/team/spaces/s/stacks/st/cells"


def _warnings(response: aiohttp.ClientResponse) -> list[str]:
    return [
        text for value in response.headers.getall("Warning", []) for text in warning_texts(value)
    ]


async def test_a_command_line_as_the_program_is_stored_and_warned_of(
    http: aiohttp.ClientSession,
) -> None:
    await create_tree(http)
    cell = cell_doc("web")
    cell["spec"]["containers"][0]["command"] = "sh -c 'exec httpd -f'"
    async with http.post(CELLS, json=cell) as created:
        assert created.status == 201, await created.text()
        [text] = _warnings(created)
    assert text.startswith("spec.containers[0].command: \"sh -c 'exec httpd -f'\" is run"), text
    # Written the way the warning says: no warning.
    cell["metadata"]["name"] = "web2"
    cell["spec"]["containers"][0].update(command="sh", args=["-c", "exec httpd -f"])
    async with http.post(CELLS, json=cell) as created:
        assert created.status == 201, await created.text()
        assert _warnings(created) == []
