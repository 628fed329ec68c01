"""An attachable (TTY) container's terminal logger SIGKILLed while the container runs is
replaced, as a plain container's copier is: at once while kukeond runs, and at the cell's
first pass when it died while kukeond was down. The terminal's output waits in the shim's
pipe meanwhile, so none of it is lost. Before, the container's later output reached neither
`logs` nor attach, and the container hung on its writes once the pipe and the terminal
were full (more than 64 KiB: the burst below).

The `kukeond` fixture deletes the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import os
import signal

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.daemon.app import Daemon
from kukeon.runtime.containerd.logcopier import alive
from tests.fixtures.kukeond import Kukeond
from tests.integration.daemon.test_attach import Attached, cell_url, session, shell

from .helpers import cell_doc, cell_key
from .test_log_copiers import _copier_of, _reaped, _replaced, _replaced_events, _until

pytestmark = pytest.mark.integration

BURST = 200_000  # more than the pipe (64 KiB) and the terminal hold together


async def test_a_killed_terminal_logger_is_replaced_and_nothing_is_lost(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "term", [shell(k, "a")]))
    key = cell_key(k, "term")
    cell = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    files = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "term"))
    log = files.log("a")
    url = cell_url(k, "term")
    original = await _copier_of(status.pid, log)

    async with session(k) as http, http.ws_connect(f"{url}/attach") as socket:
        term = Attached(socket)
        await term.send("stty -echo; echo ready-$((1+1))\n")
        await term.expect("ready-2")
        os.kill(original.pid, signal.SIGKILL)
        # Typed and printed while no logger may run yet: it waits in the shim's pipe.
        await term.send(f"head -c {BURST} /dev/zero | tr '\\0' y; echo; echo after-$((2+3))\n")
        await term.expect("after-5", within=30)
        assert term.output.count(b"y") >= BURST
        replacement = await _copier_of(status.pid, log)
        assert replacement != original
        assert _replaced(k) == 1
        [event] = await _replaced_events(k, "term", at_least=1)
        assert event.type == "Warning"
        assert "terminal" in event.message

    async with session(k) as http, http.get(f"{url}/log") as response:
        text = await response.text()
    assert "ready-2" in text
    assert text.count("y") >= BURST
    assert "after-5" in text

    # Killed while kukeond is down: the next kukeond finds the pipe from its record.
    await k.daemon.stop()
    os.kill(replacement.pid, signal.SIGKILL)
    await _until(lambda: not alive(replacement), "the replacement killed")
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    async with session(k) as http:
        async with http.ws_connect(f"{url}/attach") as socket:
            term = Attached(socket)
            await term.send(f"head -c {BURST} /dev/zero | tr '\\0' z; echo; echo back-$((3+4))\n")
            await term.expect("back-7", within=60)
            assert term.output.count(b"z") >= BURST
        async with http.get(f"{url}/log") as response:
            text = await response.text()
    assert text.count("z") >= BURST
    assert "back-7" in text
    assert _replaced(k) == 1  # this kukeond's count
    third = await _copier_of(status.pid, log)
    assert third not in (original, replacement)
    cell = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(cell, Cell)
    assert cell.status.containers[0].restart_count == 0

    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key)
    await _reaped(third)
