"""Random mutations of a valid cell written for real through kukeond's API: no 5xx, nothing
stored that was refused, and no controller ever raises (no `UnexpectedError`, no traceback)
on what was accepted."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.apiserver.test_hostile_requests import _PATHS, _VALUES, _mutate

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
EXAMPLES = 2000


async def test_accepted_mutants_never_crash_a_controller(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    await k.hierarchy()
    cells_url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    base: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "mutant"},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [{"id": "app", "image": k.image.name, "command": "true"}],
        },
    }
    accepted: list[str] = []
    refused: list[str] = []
    counter = iter(range(10**6))
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    caplog.set_level(logging.WARNING, logger="kukeon")

    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(doc: dict[str, Any], as_yaml: bool) -> None:
            # A fresh name each time unless the mutation set its own (then it may clash).
            if doc.get("metadata", {}).get("name") == "mutant":
                doc["metadata"]["name"] = f"m{next(counter)}"
            body = yaml.safe_dump(doc).encode() if as_yaml else json.dumps(doc).encode()
            content_type = "application/yaml" if as_yaml else "application/json"
            async with http.post(
                cells_url, data=body, headers={"Content-Type": content_type}
            ) as response:
                payload = await response.read()
                assert response.status < 500, payload[:500]
                name = doc.get("metadata", {}).get("name")
                if response.status == 201:
                    accepted.append(json.loads(payload)["metadata"]["name"])
                elif isinstance(name, str) and response.status != 409:
                    refused.append(name)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(path=st.sampled_from(_PATHS), value=_VALUES, as_yaml=st.booleans())
        def run(path: tuple[Any, ...], value: Any, as_yaml: bool) -> None:
            doc = _mutate(base, path, value)
            future = asyncio.run_coroutine_threadsafe(post(doc, as_yaml), loop)
            future.result(timeout=30)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(run)

    assert accepted, "no mutant was valid: the test exercised nothing"
    stored = {c.metadata.name for c in (await k.registry.list(Kind.CELL, (k.realm,))).items}
    assert stored == set(accepted)
    assert not set(refused) & stored

    # Every accepted cell gets a verdict from its controller, never an unexpected error.
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        cells = [c for c in (await k.registry.list(Kind.CELL, (k.realm,))).items]
        assert all(isinstance(c, Cell) for c in cells)
        unexpected = [c.metadata.name for c in cells if c.status.reason == "UnexpectedError"]
        assert not unexpected, [c.status.message for c in cells if c.metadata.name in unexpected]
        settled = [c for c in cells if str(c.status.state) != "Pending"]
        if len(settled) == len(cells) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)
    tracebacks = [
        r.getMessage() for r in caplog.records if r.exc_info and r.name.startswith("kukeon")
    ]
    assert not tracebacks, tracebacks[:3]
