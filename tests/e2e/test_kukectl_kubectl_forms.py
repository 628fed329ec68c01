"""kubectl's forms against a running kukeond: `apply -o yaml|json` (the objects as the
server wrote them), `-o=FORMAT` (a short option's value after `=`), `get -w
--output-watch-events` and `rollout history --revision N`; each was refused before."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from kukeon.api import Kind
from kukeon.store import NotFound
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_key, get_cell

pytestmark = pytest.mark.e2e


def _cell(k: Kukeond, name: str) -> str:
    """Cell `name` in s1/st1 of `k`'s realm, never placed (nothing runs)."""
    return f"""
apiVersion: kukeon.io/v1beta1
kind: Cell
metadata: {{name: {name}}}
spec:
  realmId: {k.realm}
  spaceId: s1
  stackId: st1
  nodeName: no-such-node
  containers: [{{id: main, image: {k.image.name}}}]
"""


async def test_apply_output_and_watch_events(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    code, out, err = await kukectl(
        k, "apply", "-f", "-", "-o", "json", "--dry-run=server", stdin=_cell(k, "a").encode()
    )
    assert code == 0, err
    assert json.loads(out)["metadata"]["name"] == "a"  # the object, not "cell/a created"
    with pytest.raises(NotFound):
        await get_cell(k, cell_key(k, "a"))
    two = _cell(k, "a") + "---" + _cell(k, "b")
    code, out, err = await kukectl(k, "apply", "-f", "-", "-o=yaml", stdin=two.encode())
    assert code == 0, err
    listed = yaml.safe_load(out)
    assert listed["kind"] == "List"
    version = (await get_cell(k, cell_key(k, "a"))).metadata.resource_version
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    assert listed["items"][0]["metadata"]["resourceVersion"] == version

    code, out, err = await kukectl(k, "get", "cell/a", "-o=jsonpath={.metadata.name}", *scope)
    assert (code, out) == (0, "a"), err
    template = '-o=jsonpath={.type} {.object.metadata.name}{"\\n"}'
    watch = ["get", "cells", "-w", "--output-watch-events", "--watch-timeout", "4s", template]
    watching = asyncio.create_task(kukectl(k, *watch, "-l=x=1", *scope))
    await asyncio.sleep(1.5)
    code, _, err = await kukectl(k, "label", "cell/b", "x=1", *scope)
    assert code == 0, err
    code, out, err = await watching
    assert (code, out) == (0, "ADDED b\n"), err  # b came into the selection: ADDED
    code, out, err = await kukectl(k, "delete", "cells", "--all", *scope)
    assert code == 0, err
    assert not (await k.registry.list(Kind.CELL, (k.realm, "s1", "st1"))).items


async def test_rollout_history_of_one_revision(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    manifest = f"""
apiVersion: kukeon.io/v1beta1
kind: CellSet
metadata: {{name: w, annotations: {{kukeon.io/change-cause: first}}}}
spec:
  realmId: {k.realm}
  spaceId: s1
  stackId: st1
  replicas: 0
  selector: {{matchLabels: {{app: w}}}}
  template:
    metadata: {{labels: {{app: w}}}}
    spec: {{containers: [{{id: main, image: {k.image.name}}}]}}
"""
    code, _, err = await kukectl(k, "apply", "-f", "-", stdin=manifest.encode())
    assert code == 0, err
    try:
        async with asyncio.timeout(30):  # the set controller records the revision
            while True:
                code, out, err = await kukectl(k, "rollout", "history", "cellset/w", *scope)
                assert code == 0, err
                if len(out.splitlines()) > 1:
                    break
                await asyncio.sleep(0.2)
        code, out, err = await kukectl(
            k, "rollout", "history", "cellset/w", "--revision", "1", *scope
        )
        assert code == 0, err
        assert out.splitlines()[:3] == [
            "cellset/w with revision #1",
            "Change cause: first",
            "Cell template:",
        ]
        code, out, err = await kukectl(
            k, "rollout", "history", "cellset/w", "--revision=1", "-o=json", *scope
        )
        assert code == 0, err
        assert json.loads(out)["metadata"]["labels"] == {"app": "w"}
        code, _, err = await kukectl(
            k, "rollout", "history", "cellset/w", "--revision", "7", *scope
        )
        assert code == 1
        assert "has no revision 7 (kept: 1)" in err
    finally:
        code, _, err = await kukectl(k, "delete", "cellset/w", *scope)
        assert code == 0, err
