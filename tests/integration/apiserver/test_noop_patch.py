"""A merge patch that changes nothing is not written, as kube-apiserver writes none: the
object keeps its resourceVersion and a watch sees no event (``kukectl patch`` then says
"patched (no change)", as kubectl's). A realm with registry credentials is checked too:
their sealed values must not be sealed again into new bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from kukeon.store import Registry
from tests.integration.apiserver.conftest import realm_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def registry(sealing_registry: Registry) -> Registry:
    """The API's registry holds a keyring, as kukeond's does (it seals registry passwords)."""
    return sealing_registry


async def _patched(http: aiohttp.ClientSession, patch: dict[str, Any]) -> dict[str, Any]:
    async with http.patch(f"{V}/realms/quiet", data=json.dumps(patch), headers=MERGE) as answer:
        assert answer.status == 200, await answer.text()
        document: dict[str, Any] = await answer.json()
        return document


async def test_a_patch_that_changes_nothing_writes_nothing(http: aiohttp.ClientSession) -> None:
    realm = realm_doc("quiet", tier="web")
    credential = {"username": "bot", "password": "s3cret", "serverAddress": "reg.example"}
    realm["spec"] = {"registryCredentials": [credential]}
    async with http.post(f"{V}/realms", json=realm) as created:
        assert created.status == 201, await created.text()
        version = (await created.json())["metadata"]["resourceVersion"]
    watched = {"watch": "true", "resourceVersion": version, "fieldSelector": "metadata.name=quiet"}
    async with http.get(f"{V}/realms", params=watched) as stream:
        no_ops: list[dict[str, Any]] = [
            {},
            {"metadata": {"labels": {"tier": "web"}}},
            {"metadata": {"annotations": None}},
            {"spec": {"registryCredentials": [credential]}},
        ]
        for patch in no_ops:
            answer = await _patched(http, patch)
            assert answer["metadata"]["resourceVersion"] == version, patch
        changed = await _patched(http, {"metadata": {"labels": {"tier": "db"}}})
        assert changed["metadata"]["resourceVersion"] != version
        async with asyncio.timeout(10):
            while True:  # the first event after the creation is the real change's
                event = json.loads(await stream.content.readline())
                if event["type"] != "BOOKMARK":
                    break
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"]["labels"] == {"tier": "db"}
    async with http.delete(f"{V}/realms/quiet") as deleted:
        assert deleted.status in (200, 202)
