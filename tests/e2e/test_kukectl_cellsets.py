"""CellSets through kukectl, as a user drives them: apply, rollout status, history and
undo, get, scale, describe, delete --cascade=orphan and adoption, delete (the cells go
with the set)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kukeon.api import CELLSET_LABEL, Cell, CellSet, CellState, Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukectl import kukectl, parent_manifests
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e


def set_manifest(k: Kukeond, *, version: str = "1") -> str:
    return f"""
---
apiVersion: kukeon.io/v1beta1
kind: CellSet
metadata:
  name: web
  annotations: {{kukeon.io/change-cause: "version {version}"}}
spec:
  realmId: {k.realm}
  spaceId: web
  stackId: site
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - id: main
          image: {k.image.name}
          command: sh
          args: ["-c", "{SLEEPER_SCRIPT}"]
          env: ["V={version}"]
"""


async def _wait_for_events_of_the_set(k: Kukeond, scope: list[str], names: set[str]) -> None:
    """The set's Events: each cell it made, and those its rollouts deleted (written beside
    the passes, so waited for)."""
    async with asyncio.timeout(20):
        while True:
            code, out, err = await kukectl(k, "events", "--for", "cellset/web", *scope)
            assert code == 0, err
            if "SuccessfulDelete" in out and all(f"created cell {n}" in out for n in names):
                return
            await asyncio.sleep(0.2)


async def test_a_cellset_through_kukectl(kukeond: Kukeond) -> None:
    k = kukeond
    scope = ["--realm", k.realm, "--space", "web", "--stack", "site"]
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=parent_manifests(k).encode())
    assert code == 0, err
    code, out, err = await kukectl(k, "image", "import", str(k.image.archive), "--realm", k.realm)
    assert code == 0, err
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=set_manifest(k).encode())
    assert code == 0, err
    assert "cellset/web created" in out

    code, out, err = await kukectl(
        k, "rollout", "status", "cellset/web", "--timeout", "90s", *scope
    )
    assert code == 0, err
    assert "successfully rolled out" in out

    code, out, err = await kukectl(k, "get", "cellsets", *scope)
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    assert row.split()[:4] == ["web", "2/2", "2", "2"]

    await history_and_undo(k, scope)

    code, out, err = await kukectl(k, "scale", "cellset/web", "--replicas", "3", *scope)
    assert code == 0, err
    code, out, err = await kukectl(k, "rollout", "status", "cellset/web", *scope)
    assert code == 0, err
    assert "3 of 3 updated, 3 ready" in out

    code, out, err = await kukectl(k, "describe", "cellset", "web", *scope)
    assert code == 0, err
    assert "Ready:               3" in out
    cells_table = out[out.index("Cells:") :].splitlines()
    assert cells_table[1].split() == ["NAME", "STATE", "NODE", "TEMPLATE"]
    assert len([line for line in cells_table if "(current)" in line]) == 3
    assert all(k.config.node_name in line for line in cells_table if "(current)" in line)
    assert "Available" in out

    # kubectl's `exec deploy/web`, `logs deploy/web`: one of the set's cells, said on stderr
    names = {line.split()[0] for line in cells_table if "(current)" in line}
    await _wait_for_events_of_the_set(k, scope, names)
    code, out, err = await kukectl(k, "exec", "cellset/web", *scope, "--", "hostname")
    assert code == 0, err
    assert out.strip() in names
    assert err.startswith("Found 3 cells, using cell/")
    code, _, err = await kukectl(k, "logs", "cellset/web", *scope)
    assert code == 0, err
    assert "Found 3 cells" in err
    code, _, err = await kukectl(k, "logs", "cellset/nosuch", *scope)
    assert code == 1
    assert "nosuch" in err

    await orphan_and_adopt(k, scope)
    await restart_rolls_every_cell(k, scope)
    await set_env_rolls_the_cells(k, scope)

    code, out, err = await kukectl(k, "delete", "cellset", "web", *scope)
    assert code == 0, err
    deadline = time.monotonic() + 60
    while True:
        listed = await k.registry.list(
            Kind.CELL, (k.realm, "web", "site"), label_selector=f"{CELLSET_LABEL}=web"
        )
        if not listed.items:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)

    code, out, err = await kukectl(k, "scale", "pod/web", "--replicas", "1", *scope)
    assert code == 2


async def history_and_undo(k: Kukeond, scope: list[str]) -> None:
    """A second template, its revision with the change cause, undo back to the first."""
    manifest = set_manifest(k, version="2")
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=manifest.encode())
    assert code == 0, err
    rollout = ("rollout", "status", "cellset/web", "--timeout", "60s", *scope)
    code, out, err = await kukectl(k, *rollout)
    assert code == 0, err
    code, out, err = await kukectl(k, "rollout", "history", "cellset/web", *scope)
    assert code == 0, err
    rows = [line.split(maxsplit=2) for line in out.splitlines()]
    assert rows[0] == ["REVISION", "HASH", "CHANGE-CAUSE"]
    assert [(row[0], row[2]) for row in rows[1:]] == [("1", "version 1"), ("2", "version 2")]
    first = rows[1][1]

    code, out, err = await kukectl(k, "rollout", "undo", "cellset/web", *scope)
    assert code == 0, err
    assert "rolled back to revision 1" in out
    code, out, err = await kukectl(k, *rollout)
    assert code == 0, err
    code, out, err = await kukectl(k, "rollout", "history", "cellset/web", *scope)
    rows = [line.split(maxsplit=2) for line in out.splitlines()]
    assert [(row[0], row[1], row[2]) for row in rows[1:]][-1] == ("3", first, "version 1")
    code, out, err = await kukectl(
        k, "rollout", "undo", "cellset/web", "--to-revision", "9", *scope
    )
    assert code == 1
    assert "no revision 9" in err


async def set_env_rolls_the_cells(k: Kukeond, scope: list[str]) -> None:
    """kubectl's `set env` and `set image`: the template changes, the set rolls to it, the
    history says why; a container the set does not have is a usage error."""
    code, out, err = await kukectl(k, "set", "env", "cellset/web", "V=9", "EXTRA=x", *scope)
    assert (code, out.strip()) == (0, "cellset/web env updated"), err
    code, out, err = await kukectl(
        k, "rollout", "status", "cellset/web", "--timeout", "90s", *scope
    )
    assert code == 0, err
    code, out, err = await kukectl(k, "rollout", "history", "cellset/web", *scope)
    assert out.splitlines()[-1].split(maxsplit=2)[2] == "set env V=9 EXTRA=x"
    current = [c for c in await set_cells(k) if c.metadata.deletion_timestamp is None]
    assert current
    assert all(c.spec.containers[0].env == ["V=9", "EXTRA=x"] for c in current)
    code, out, err = await kukectl(k, "set", "env", "cellset/web", "V=9", *scope)
    assert (code, out.strip()) == (0, "cellset/web unchanged"), err
    code, out, err = await kukectl(k, "set", "image", "cellset/web", "nope=busybox", *scope)
    assert code == 2
    assert "no container nope (it has main)" in err


async def set_cells(k: Kukeond) -> list[Cell]:
    listed = await k.registry.list(Kind.CELL, (k.realm, "web", "site"))
    return [c for c in listed.items if isinstance(c, Cell) and c.metadata.name.startswith("web-")]


async def _set_cells(k: Kukeond) -> set[str]:
    listed = await k.registry.list(
        Kind.CELL, (k.realm, "web", "site"), label_selector=f"{CELLSET_LABEL}=web"
    )
    return {cell.metadata.name for cell in listed.items if cell.metadata.deletion_timestamp is None}


async def _template_hash(k: Kukeond, key: tuple[str, ...]) -> str:
    found = await k.registry.get(Kind.CELL_SET, key)
    assert isinstance(found, CellSet)
    return found.template_hash()


async def restart_rolls_every_cell(k: Kukeond, scope: list[str]) -> None:
    """`rollout restart` replaces each cell by a new one; an apply of the manifest, which
    does not name the restart's stamp, changes nothing after it."""
    before = await _set_cells(k)
    code, out, err = await kukectl(k, "rollout", "restart", "cellset/web", *scope)
    assert code == 0, err
    assert out == "cellset/web restarted\n"
    rollout = ("rollout", "status", "cellset/web", "--timeout", "60s", *scope)
    code, out, err = await kukectl(k, *rollout)
    assert code == 0, err
    after = await _set_cells(k)
    assert len(after) == 2
    assert not after & before
    code, out, err = await kukectl(k, "rollout", "history", "cellset/web", *scope)
    assert "rollout restart at" in out.splitlines()[-1]
    key = (k.realm, "web", "site", "web")
    restarted = await _template_hash(k, key)
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=set_manifest(k).encode())
    assert code == 0, err
    assert "cellset/web configured" in out  # its change cause, not its template
    assert await _template_hash(k, key) == restarted
    assert await _set_cells(k) == after


async def orphan_and_adopt(k: Kukeond, scope: list[str]) -> None:
    """`delete --cascade=orphan`: the set goes, its 3 cells stay running without its label;
    the set applied again (2 replicas) adopts them and removes one."""
    before = {c.metadata.name for c in await set_cells(k)}
    code, _, err = await kukectl(k, "delete", "cellset", "web", "--cascade=orphan", *scope)
    assert code == 0, err
    assert not (await k.registry.list(Kind.CELL_SET, (k.realm, "web", "site"))).items
    cells = await set_cells(k)
    assert {c.metadata.name for c in cells} == before
    assert all(CELLSET_LABEL not in c.metadata.labels for c in cells)
    assert all(c.status.state == CellState.READY for c in cells)

    code, _, err = await kukectl(k, "apply", "-f", "-", stdin=set_manifest(k).encode())
    assert code == 0, err
    code, _, err = await kukectl(k, "rollout", "status", "cellset/web", *scope)
    assert code == 0, err
    deadline = time.monotonic() + 30
    while True:
        cells = [c for c in await set_cells(k) if c.metadata.deletion_timestamp is None]
        if len(cells) == 2:
            break
        assert time.monotonic() < deadline, [c.metadata.name for c in cells]
        await asyncio.sleep(0.3)
    assert {c.metadata.name for c in cells} < before  # adopted, none made
    assert all(c.metadata.labels[CELLSET_LABEL] == "web" for c in cells)
