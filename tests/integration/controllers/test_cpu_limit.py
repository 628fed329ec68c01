"""`resources.cpuLimitMillicores`: a CFS quota on the container's own cgroup (cgroup v1's
cpu.cfs_quota_us, v2's cpu.max), so a busy loop gets no more than its share of a CPU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

BUSY = "while :; do :; done"


def _quota(k: Kukeond, *parts: str) -> tuple[str, Path] | None:
    """The container cgroup's quota and period, and its CPU usage file."""
    relative = "/".join((k.config.cgroup_root.strip("/"), *parts))
    v2 = Path("/sys/fs/cgroup") / relative
    if (v2 / "cpu.max").exists():
        return (v2 / "cpu.max").read_text().strip(), v2 / "cpu.stat"
    hierarchies = list(Path("/sys/fs/cgroup").iterdir())
    for leaf in (h / relative for h in hierarchies):
        if (leaf / "cpu.cfs_quota_us").exists():
            quota = (leaf / "cpu.cfs_quota_us").read_text().strip()
            period = (leaf / "cpu.cfs_period_us").read_text().strip()
            usage = next(
                h / relative / "cpuacct.usage"
                for h in hierarchies
                if (h / relative / "cpuacct.usage").exists()
            )
            return f"{quota} {period}", usage
    return None


def _usage_seconds(where: Path) -> float:
    if where.name == "cpu.stat":  # v2: usage_usec
        fields = dict(line.split() for line in where.read_text().splitlines())
        return int(fields["usage_usec"]) / 1e6
    return int(where.read_text()) / 1e9  # v1: cpuacct.usage, in ns


async def test_a_cpu_limit_caps_a_busy_loop(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "busy")
    app = container(k, "app", script=BUSY, resources={"cpuLimitMillicores": 200})
    await k.apply(cell_doc(k, "busy", [app]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(ready, Cell)
    found = _quota(k, *key, "app")
    assert found is not None, "the container's cgroup has no CPU quota file"
    quota, usage_file = found
    assert quota == "20000 100000"
    before = _usage_seconds(usage_file)
    await asyncio.sleep(2)
    used = _usage_seconds(usage_file) - before
    # 20 ms per 100 ms period: at most ~0.4 s of CPU in 2 s (a period's slack allowed);
    # unlimited, the loop takes a whole CPU.
    assert used < 0.6, f"{used:.2f} s of CPU in 2 s under a 0.2 CPU limit"
