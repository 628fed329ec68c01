"""`kukectl top`'s figures (the stats routes and the kukeon_cell_* series) agree with the
cells' cgroup files, read here directly, within 5 % (issue 16, item 10).

Two cells run on a real kukeond: one holds a known amount of memory (40 MiB written to
its /dev/shm, a tmpfs charged to its memory cgroup) under a 256 MiB limit, one burns a
CPU. The files are read through the driver kukeond holds (v1 on a hybrid host, v2 on a
unified one), at the path the driver names, so the test holds on either.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.runtime.cgroups import CgroupPath, CgroupV1Driver, CgroupV2Driver
from tests.fixtures.kukeond import Kukeond, metrics_headers

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
MiB = 1024 * 1024
FILL = 40 * MiB
LIMIT = 256 * MiB
TOLERANCE = 0.05


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def _cell(k: Kukeond, name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "realmId": k.realm,
            "spaceId": "s1",
            "stackId": "st1",
            "containers": [
                {
                    "id": "main",
                    "image": k.image.name,
                    "command": "sh",
                    "args": ["-c", script],
                    **extra,
                }
            ],
        },
    }


class CgroupFiles:
    """The cell's cgroup files as the kernel shows them, v1 or v2."""

    def __init__(self, k: Kukeond, cell: str) -> None:
        controllers = k.daemon.controllers
        assert controllers is not None
        self.driver = controllers.host.cgroups
        self.path = CgroupPath((k.realm, "s1", "st1", cell))

    def _dir(self, controller: str) -> Path:
        driver = self.driver
        if isinstance(driver, CgroupV2Driver):
            return driver.directory(self.path)
        assert isinstance(driver, CgroupV1Driver)
        hierarchy = next(h for h in driver.managed if controller in h.controllers)
        return driver.directory(hierarchy, self.path)

    def _keyed(self, file: Path, key: str) -> int:
        for line in file.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
        raise AssertionError(f"{file} has no {key}")

    def memory_usage(self) -> int:
        name = "memory.current" if self.driver.version == 2 else "memory.usage_in_bytes"
        return int((self._dir("memory") / name).read_text())

    def working_set(self) -> int:
        inactive = "inactive_file" if self.driver.version == 2 else "total_inactive_file"
        usage = self.memory_usage()
        return max(0, usage - self._keyed(self._dir("memory") / "memory.stat", inactive))

    def cpu_seconds(self) -> float:
        if self.driver.version == 2:
            return self._keyed(self._dir("cpu") / "cpu.stat", "usage_usec") / 1e6
        return int((self._dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9

    def pids(self) -> int:
        return int((self._dir("pids") / "pids.current").read_text())


def _mem_total() -> int:
    found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    assert found is not None
    return int(found.group(1)) * 1024


def close(value: float, expected: float) -> bool:
    return abs(value - expected) <= TOLERANCE * expected


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with http.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def _stamp(document: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(document["timestamp"]).replace("Z", "+00:00")).timestamp()


def _series(text: str, name: str, cell: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'cell="{cell}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_stats_agree_with_the_cgroup_files(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        _cell(
            k,
            "mem",
            f"head -c {FILL} /dev/zero > /dev/shm/fill && exec sleep 3600",
            resources={"memoryLimitBytes": LIMIT},
        )
    )
    await k.apply(_cell(k, "burn", "while :; do :; done"))
    for name in ("mem", "burn"):
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", name), state="Ready")
    cells = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    mem_files, burn_files = CgroupFiles(k, "mem"), CgroupFiles(k, "burn")

    async with session(k) as http:
        # The fill is written once the container runs: wait until the cgroup holds it and
        # head has gone (the fill is charged while head still runs: pids was 2 under load).
        deadline = time.monotonic() + 30
        while mem_files.working_set() < FILL or mem_files.pids() != 1:
            assert time.monotonic() < deadline, (
                f"the fill never arrived: {mem_files.working_set()}, {mem_files.pids()} pids"
            )
            await asyncio.sleep(0.2)

        mem = await _get(http, f"{cells}/mem/stats", containers="true")
        assert mem["kind"] == "CellStats"
        assert (mem["realm"], mem["space"], mem["stack"], mem["cell"]) == (
            k.realm,
            "s1",
            "st1",
            "mem",
        )
        assert mem["node"] == k.config.node_name
        assert mem["cgroup"] == f"{k.config.cgroup_root}/{k.realm}/s1/st1/mem"
        assert close(mem["memoryWorkingSetBytes"], mem_files.working_set())
        assert close(mem["memoryUsageBytes"], mem_files.memory_usage())
        # the known footprint: the 40 MiB fill plus a little (sleep, the page tables)
        assert FILL <= mem["memoryWorkingSetBytes"] <= FILL + 8 * MiB
        assert mem["pids"] == mem_files.pids() == 1
        assert mem["memoryLimitBytes"] == LIMIT
        [main] = mem["containers"]
        assert main["name"] == "main"
        assert main["memoryLimitBytes"] == LIMIT
        assert close(main["memoryWorkingSetBytes"], mem["memoryWorkingSetBytes"])

        # CPU: a cumulative counter, read between two reads of the file
        before = burn_files.cpu_seconds()
        burn = await _get(http, f"{cells}/burn/stats")
        after = burn_files.cpu_seconds()
        assert before <= burn["cpuUsageSeconds"] <= after
        assert burn["memoryLimitBytes"] is None
        assert "containers" not in burn
        await asyncio.sleep(1.0)
        again = await _get(http, f"{cells}/burn/stats")
        cores = (again["cpuUsageSeconds"] - burn["cpuUsageSeconds"]) / (
            _stamp(again) - _stamp(burn)
        )
        # one shell loop: at most one core, and clearly busy even on a shared host
        assert 0.05 < cores < 1.1, cores

        # The node's form: the node's own figures and both cells, the same numbers.
        node = await _get(http, f"{API}/nodes/{k.config.node_name}/stats", realm=k.realm)
        assert node["kind"] == "NodeStats"
        assert node["node"] == k.config.node_name
        assert node["cpus"] == len(os.sched_getaffinity(0))
        total = _mem_total()
        assert node["memoryTotalBytes"] == total
        assert 0 < node["memoryAvailableBytes"] <= total
        assert len(node["loadAverage"]) == 3
        listed = {cell["cell"]: cell for cell in node["cells"]}
        assert set(listed) == {"mem", "burn"}
        assert close(listed["mem"]["memoryWorkingSetBytes"], mem_files.working_set())
        assert listed["burn"]["cpuUsageSeconds"] >= again["cpuUsageSeconds"]
        # a narrower scope, and one with no cell
        narrow = await _get(
            http,
            f"{API}/nodes/{k.config.node_name}/stats",
            realm=k.realm,
            space="s1",
            stack="st1",
        )
        assert {cell["cell"] for cell in narrow["cells"]} == {"mem", "burn"}
        other = await _get(http, f"{API}/nodes/{k.config.node_name}/stats", realm="nosuch")
        assert other["cells"] == []
        own = await _get(http, f"{API}/nodes/{k.config.node_name}/stats", cells="false")
        assert "cells" not in own

        # Refusals: no such cell, a stack without its space.
        async with http.get(f"{cells}/nosuch/stats") as response:
            assert response.status == 404
        async with http.get(
            f"{API}/nodes/{k.config.node_name}/stats", params={"stack": "st1"}
        ) as response:
            assert response.status == 400

        # A stopped cell keeps its cgroup (no task, no container leaf): nothing runs there.
        async with http.patch(
            f"{cells}/burn",
            json={"spec": {"desiredState": "Stopped"}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status == 200, await response.text()
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "burn"), state="Stopped")
        stopped = await _get(http, f"{cells}/burn/stats", containers="true")
        assert stopped["pids"] == burn_files.pids() == 0
        assert stopped["containers"] == []
        assert stopped["memoryLimitBytes"] is None

        # /metrics: the same figures, only this node's running cells.
        assert k.daemon.metrics_url is not None
        async with (
            aiohttp.ClientSession(headers=metrics_headers(k.config)) as plain,
            plain.get(k.daemon.metrics_url) as response,
        ):
            text = await response.text()
    memory = _series(text, "kukeon_cell_memory_bytes", "mem")
    assert memory is not None
    assert close(memory, mem_files.working_set())
    assert _series(text, "kukeon_cell_memory_limit_bytes", "mem") == LIMIT
    assert _series(text, "kukeon_cell_pids", "mem") == 1
    cpu = _series(text, "kukeon_cell_cpu_seconds_total", "mem")
    assert cpu is not None
    assert cpu >= 0
    assert _series(text, "kukeon_cell_pids", "burn") == 0
    assert _series(text, "kukeon_cell_memory_limit_bytes", "burn") is None
    assert f'node="{k.config.node_name}"' in text
