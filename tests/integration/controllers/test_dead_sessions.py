"""What the exec, cp and probe sessions of a kukeond that died left is ended at the next
start: their processes in the containers (with what they started) and their FIFO
directories. Before, a `kukectl exec CELL -- sh` whose kukeond was killed (kill -9, the OOM
killer) left its shell running in the container for ever, and its directory under
<state>/exec; a probe command that hung when kukeond died, the same.

The processes are made here as a dead kukeond's sessions would have left them: exec'd
through containerd with a session's exec id and a FIFO directory, while kukeond is down.
A process exec'd under another id (an operator's `ctr task exec`) is left alone.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.tasks import FifoIO, TaskService
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration

LEFT = {"exec-0123456789ab": "exec", "cp-0123456789ab": "exec", "probe-0123456789ab": "probes"}
"""Session exec ids a dead kukeond left, and where their FIFO directories are."""
OPERATORS = "ctr-by-hand"


async def _exec_sleeper(
    tasks: TaskService, cid: str, exec_id: str, directory: Path, spec: dict[str, object]
) -> FifoIO:
    """`sh -c 'sleep 700 & sleep 701'` exec'd as ``exec_id``, its FIFOs in ``directory``."""
    fifos = FifoIO(directory, terminal=False, stdin=False)
    io = await fifos.open()
    process = dict(spec)
    process.update(args=["sh", "-c", "sleep 700 & sleep 701"], terminal=False)
    await tasks.exec(cid, exec_id, process=process, io=io)
    await tasks.start(cid, exec_id=exec_id)
    return fifos


async def _sleeps(k: Kukeond, cid: str) -> int:
    code, listing = await exec_in(k, cid, "ps", "-o", "args")
    assert code == 0
    return sum(line.startswith("sleep 70") for line in listing.splitlines())


async def test_the_sessions_of_a_dead_kukeond_are_ended_at_start(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "busy", [container(k, "main")]))
    cell = await k.wait_for(Kind.CELL, cell_key(k, "busy"), state="Ready")
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    cid = status.name
    assert cid is not None
    await k.daemon.stop()

    state = Path(k.config.state_dir)
    async with ContainerdClient(str(k.config.containerd_address)) as client:
        tasks = client.tasks(k.namespace)
        spec = dict((await client.containers(k.namespace).get(cid)).spec["process"])
        left = []
        for exec_id, parent in [*LEFT.items(), (OPERATORS, "by-hand")]:
            left.append(await _exec_sleeper(tasks, cid, exec_id, state / parent / exec_id, spec))
        assert set(await tasks.exec_ids(cid)) == {*LEFT, OPERATORS}
        for fifos in left:
            fifos.close()  # their reader, kukeond, is gone

        k.daemon = Daemon(k.config)
        await k.daemon.start()
        assert k.daemon.registry is not None
        k.registry = k.daemon.registry
        try:
            # Ended before kukeond is ready (its start waits for them): nothing to wait for.
            assert await tasks.exec_ids(cid) == (OPERATORS,)
            for exec_id, parent in LEFT.items():
                assert not (state / parent / exec_id).exists()
            assert (state / "by-hand" / OPERATORS).exists()
            # The sessions' sleeps went with their shells: the operator's two are left.
            assert await _sleeps(k, cid) == 2
            # The cell was not touched for it.
            again = await k.registry.get(Kind.CELL, cell_key(k, "busy"))
            assert again.status.containers[0].pid == status.pid
        finally:
            waiting = asyncio.ensure_future(tasks.wait(cid, exec_id=OPERATORS))
            await tasks.end_process(cid, OPERATORS, waiting)
            await asyncio.to_thread(shutil.rmtree, state / "by-hand", True)
