"""Why a container ended is in its status: `OOMKilled` from its memory cgroup, a killed
shim counted as a restart (`TaskLost`), the ended instance kept in `lastState`."""

from __future__ import annotations

import os
import signal

import pytest

from kukeon.api import AnyResource, Cell, ContainerStatus, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

# dd's 64 MiB buffer, filled from /dev/zero, cannot fit under a 16 MiB limit.
HOG = "dd if=/dev/zero of=/dev/null bs=64M count=4"


def _first(cell: AnyResource) -> object:
    assert isinstance(cell, Cell)
    return cell.status.containers[0] if cell.status.containers else None


async def _ended(k: Kukeond, key: tuple[str, ...]) -> ContainerStatus:
    """The status of the cell's first container once it has an exit code."""

    def ended(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        return bool(cell.status.containers) and cell.status.containers[0].exit_code is not None

    cell = await k.wait_for(Kind.CELL, key, until=ended, within=60)
    assert isinstance(cell, Cell)
    return cell.status.containers[0]


async def test_oom_killed_container_says_so(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "hog")
    app = container(
        k,
        "app",
        script=HOG,
        restartPolicy="never",
        resources={"memoryLimitBytes": 16 * 1024 * 1024},
    )
    await k.apply(cell_doc(k, "hog", [app]))

    status = await _ended(k, key)
    assert status.exit_code == 137
    assert status.reason == "OOMKilled"


async def test_a_failed_exit_says_the_last_line_it_wrote(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "says")
    script = "echo starting; echo 'fatal: no config at /etc/app.conf' >&2; exit 3"
    await k.apply(cell_doc(k, "says", [container(k, "app", script=script)]))

    status = await _ended(k, key)
    assert (status.exit_code, status.reason) == (3, "Error")
    assert status.message == "fatal: no config at /etc/app.conf"


async def test_a_killed_shim_is_a_restart(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "lost")
    app = container(k, "app", restartPolicy="always", restartBackoffSeconds=1)
    await k.apply(cell_doc(k, "lost", [app]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(ready, Cell)
    pid = ready.status.containers[0].pid
    assert pid is not None
    shim = _shim_of(pid)
    os.kill(shim, signal.SIGKILL)

    def restarted(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        first = cell.status.containers[0] if cell.status.containers else None
        return first is not None and first.restart_count >= 1 and first.pid not in (None, pid)

    cell = await k.wait_for(Kind.CELL, key, until=restarted, within=60)
    assert isinstance(cell, Cell)
    status = cell.status.containers[0]
    assert status.last_state is not None
    assert status.last_state.reason in {"TaskLost", "Error"}
    assert status.last_state.finished_at is not None
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)


def _shim_of(pid: int) -> int:
    """The containerd-shim process that is the container's init's parent."""
    with open(f"/proc/{pid}/stat") as stat:
        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
        assert b"containerd-shim" in cmdline.read()
    return parent
