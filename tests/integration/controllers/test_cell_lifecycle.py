"""Cells end to end through the registry: real etcd, containerd, runc, CNI, cgroups."""

from __future__ import annotations

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import exec_in

pytestmark = pytest.mark.integration

HTTPD = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"


def cell_doc(
    k: Kukeond, name: str, containers: list[dict[str, object]], **spec: object
) -> dict[str, object]:
    return {
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "containers": containers,
            **spec,
        },
    }


async def test_two_container_cell_becomes_ready(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        cell_doc(
            k,
            "web",
            [
                {
                    "id": "httpd",
                    "image": k.image.name,
                    "command": "sh",
                    "args": ["-c", HTTPD],
                },
                {"id": "sidecar", "image": k.image.name, "command": "sleep", "args": ["3600"]},
            ],
        )
    )
    key = (k.realm, "s1", "st1", "web")
    cell = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(cell, Cell)
    assert cell.status.ready_observed
    assert cell.status.node_name == k.config.node_name
    assert cell.status.network.ip
    assert cell.status.network.bridge_name
    assert [c.state for c in cell.status.containers] == ["Running", "Running"]

    # containerd sees the tasks under kukeon's names
    tasks = {t.id for t in await k.containerd.tasks(k.namespace).list()}
    assert tasks == {"s1_st1_web_httpd", "s1_st1_web_sidecar"}

    # the sidecar reaches httpd over localhost (one network namespace per cell)
    code, output = await exec_in(
        k, "s1_st1_web_sidecar", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"
    )
    assert code == 0, output
    assert "hello" in output

    # every task sits in the cell's cgroup subtree
    driver = k.daemon.controllers.host.cgroups  # type: ignore[union-attr]
    from kukeon.runtime.cgroups import CgroupPath

    pids = await driver.list_processes(CgroupPath(key))
    assert {c.pid for c in cell.status.containers} <= set(pids)

    # another cell of the same space reaches it over the bridge
    await k.apply(
        cell_doc(
            k, "client", [{"id": "c", "image": k.image.name, "command": "sleep", "args": ["3600"]}]
        )
    )
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "client"), state="Ready")
    code, output = await exec_in(
        k, "s1_st1_client_c", "wget", "-q", "-O", "-", f"http://{cell.status.network.ip}:8080/"
    )
    assert code == 0, output
    assert "hello" in output
