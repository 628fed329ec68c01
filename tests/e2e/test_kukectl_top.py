"""``kukectl top cells|nodes`` as a user runs it, against a real kukeond with running cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import Kind
from tests.fixtures.kukectl import kukectl, parent_manifests
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e

FILL_MIB = 32


def cells(k: Kukeond) -> str:
    def cell(name: str, script: str) -> str:
        return f"""
---
apiVersion: v1beta1
kind: Cell
metadata: {{name: {name}}}
spec:
  realmId: {k.realm}
  spaceId: web
  stackId: site
  containers:
    - id: main
      image: {k.image.name}
      command: sh
      args: ["-c", {script!r}]
"""

    fill = f"head -c {FILL_MIB * 1024 * 1024} /dev/zero > /dev/shm/fill && exec sleep 3600"
    return cell("hold", fill) + cell("burn", "while :; do :; done")


def table(out: str) -> list[dict[str, str]]:
    lines = out.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[1:]]


def mebibytes(text: str) -> int:
    assert text.endswith("Mi"), text
    return int(text.removesuffix("Mi"))


def millicores(text: str) -> int:
    assert text.endswith("m"), text
    return int(text.removesuffix("m"))


async def test_top_cells_and_nodes(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    scope = ["--realm", k.realm, "--space", "web", "--stack", "site"]
    (tmp_path / "parents.yaml").write_text(parent_manifests(k))
    (tmp_path / "cells.yaml").write_text(cells(k))
    code, _, err = await kukectl(k, "apply", "-f", str(tmp_path / "parents.yaml"))
    assert code == 0, err
    code, _, err = await kukectl(k, "image", "import", str(k.image.archive), "--realm", k.realm)
    assert code == 0, err
    code, _, err = await kukectl(k, "apply", "-f", str(tmp_path / "cells.yaml"))
    assert code == 0, err
    for name in ("hold", "burn"):
        await k.wait_for(Kind.CELL, (k.realm, "web", "site", name), state="Ready", within=90)

    # The fill is written as the container starts: wait until top shows it.
    for _attempt in range(30):
        code, out, err = await kukectl(k, "top", "cells", *scope)
        assert code == 0, err
        rows = {row["NAME"]: row for row in table(out)}
        if mebibytes(rows["hold"]["MEMORY(bytes)"]) >= FILL_MIB:
            break
    assert out.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)", "PIDS"]
    assert set(rows) == {"hold", "burn"}
    assert FILL_MIB <= mebibytes(rows["hold"]["MEMORY(bytes)"]) <= FILL_MIB + 8
    assert rows["hold"]["PIDS"] == "1"
    assert millicores(rows["hold"]["CPU(cores)"]) < 100  # asleep
    # one busy shell loop: at most a core, and clearly busy even on a shared host
    assert 50 <= millicores(rows["burn"]["CPU(cores)"]) <= 1100

    # -A adds the parents; --sort-by cpu puts the burner first
    code, out, err = await kukectl(k, "top", "cells", "-A", "--sort-by", "cpu")
    assert code == 0, err
    ours = [row for row in table(out) if row["REALM"] == k.realm]
    assert [row["NAME"] for row in ours] == ["burn", "hold"]
    assert (ours[0]["SPACE"], ours[0]["STACK"]) == ("web", "site")

    # by name, one line per container
    code, out, err = await kukectl(k, "top", "cells", "hold", "--containers", *scope)
    assert code == 0, err
    [row] = table(out)
    assert (row["CELL"], row["NAME"]) == ("hold", "main")
    assert mebibytes(row["MEMORY(bytes)"]) >= FILL_MIB

    # a cell that does not exist is the server's 404, in its words
    code, _, err = await kukectl(k, "top", "cells", "nosuch", *scope)
    assert code == 1
    assert "nosuch" in err

    code, out, err = await kukectl(k, "top", "nodes")
    assert code == 0, err
    nodes = {row["NAME"]: row for row in table(out)}
    node = nodes[k.config.node_name]
    assert millicores(node["CPU(cores)"]) >= 50  # the burner at least
    assert node["CPU%"].endswith("%")
    assert mebibytes(node["MEMORY(bytes)"]) > 0
    assert float(node["LOAD(1m)"]) >= 0

    # kubectl's singular (`top pod`, `top node`); a stopped cell is no row, by name its zeros
    code, _, err = await kukectl(k, "stop", "hold", *scope)
    assert code == 0, err
    code, out, err = await kukectl(k, "top", "cell", *scope)
    assert code == 0, err
    assert {row["NAME"] for row in table(out)} == {"burn"}
    code, out, err = await kukectl(k, "top", "cell", "hold", *scope)
    assert code == 0, err
    assert [row["PIDS"] for row in table(out)] == ["0"]
    code, out, err = await kukectl(k, "top", "node")
    assert code == 0, err
    assert k.config.node_name in out
