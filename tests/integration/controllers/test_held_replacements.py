"""An update of a running container that its node refuses only when the new task is made (a
bind source that is not there, a tmpfs option the kernel refuses) is tried before the old
task is stopped: the old container keeps serving (same pid, its readiness probe going on),
the cell is Degraded naming the field; the fix rolls forward, a spec put back is Ready with
no restart. Before, the old container was stopped first and the cell ended Failed, its
service gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, ContainerSpec, Kind
from kukeon.api.container import containerd_container_id
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in, get_cell, update_cell
from .test_refused_values import _absent_numa_node

pytestmark = pytest.mark.integration

FIRST_RETRY_SECONDS = 0.5
PROBED = {
    "exec": {"command": ["sh", "-c", "echo x >> /tmp/probed"]},
    "periodSeconds": 1,
    "failureThreshold": 1,
}
"""A readiness probe each of whose checks leaves a line in the container."""


async def _probes_counted(k: Kukeond, name: str) -> int:
    cid = containerd_container_id(space="s1", stack="st1", cell=name, container="app")
    code, output = await exec_in(k, cid, "sh", "-c", "wc -l < /tmp/probed")
    assert code == 0, output
    return int(output.strip())


async def _running(k: Kukeond, name: str) -> tuple[Cell, int]:
    await k.hierarchy()
    await k.apply(cell_doc(k, name, [container(k, "app", readinessProbe=PROBED)]))
    ready = await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready", within=30)
    assert isinstance(ready, Cell)
    pid = ready.status.containers[0].pid
    assert pid
    return ready, pid


async def _changed(k: Kukeond, name: str, **fields: Any) -> None:
    key = cell_key(k, name)
    cell = await get_cell(k, key)
    app = ContainerSpec.model_validate(
        {**cell.spec.containers[0].model_dump(by_alias=True, exclude_none=True), **fields}
    )
    await update_cell(k, key, spec={"containers": [app]})


async def _held(k: Kukeond, name: str, reason: str, pid: int) -> Cell:
    """The cell Degraded with ``reason``, its old container serving all along."""
    held = await k.wait_for(
        Kind.CELL, cell_key(k, name), until=lambda c: c.status.reason == reason, within=30
    )
    assert isinstance(held, Cell)
    assert str(held.status.state) == "Degraded", held.status  # it was Failed, app gone
    app = held.status.containers[0]
    assert (str(app.state), app.ready, app.pid) == ("Running", True, pid), app
    before = await _probes_counted(k, name)
    await asyncio.sleep(3 * FIRST_RETRY_SECONDS + 2)  # retried meanwhile, the probe going on
    assert await _probes_counted(k, name) >= before + 2
    again = await get_cell(k, cell_key(k, name))
    assert (str(again.status.state), again.status.reason) == ("Degraded", reason)
    assert (again.status.containers[0].pid, again.status.containers[0].ready) == (pid, True)
    return again


async def _ready(k: Kukeond, name: str, pid: Callable[[int | None], bool]) -> Cell:
    """The cell Ready, with no reason said, its container's pid as ``pid`` wants."""
    done = await k.wait_for(
        Kind.CELL,
        cell_key(k, name),
        until=lambda c: (
            str(c.status.state) == "Ready"
            and c.status.reason is None
            and pid(c.status.containers[0].pid)
        ),
        within=30,
    )
    assert isinstance(done, Cell)
    return done


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_an_update_to_a_missing_bind_source_keeps_the_old_container(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    _, pid = await _running(k, "bind")
    source = tmp_path / "later"
    await _changed(k, "bind", volumes=[{"source": str(source), "target": "/data"}])
    held = await _held(k, "bind", "BindSourceRefused", pid)
    assert "volumes[0].source" in (held.status.message or ""), held.status.message
    assert str(source) in (held.status.message or ""), held.status.message

    source.mkdir()  # the fix: the update rolls forward at its next retry
    done = await _ready(k, "bind", lambda new: new not in (None, pid))
    assert done.status.reason is None


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_an_update_runc_refuses_keeps_the_old_container(kukeond: Kukeond) -> None:
    k = kukeond
    ready, pid = await _running(k, "tmpfs")
    refused = [{"path": "/t", "options": [f"mpol=bind:{_absent_numa_node()}"]}]
    await _changed(k, "tmpfs", tmpfs=refused)
    held = await _held(k, "tmpfs", "InvalidSpec", pid)
    assert "tmpfs[0].options" in (held.status.message or ""), held.status.message

    # Put back: Ready again, the same container (never restarted).
    await update_cell(k, cell_key(k, "tmpfs"), spec={"containers": ready.spec.containers})
    back = await _ready(k, "tmpfs", lambda _: True)
    assert (back.status.reason, back.status.containers[0].pid) == (None, pid)

    # A spec the node takes rolls forward.
    await _changed(k, "tmpfs", tmpfs=[{"path": "/t"}])
    done = await _ready(k, "tmpfs", lambda new: new not in (None, pid))
    assert done.status.reason is None
