"""An attach session sends a container's last output, all of it, before its exit status:
the shim's logger copies the terminal's output after the exit and then closes the log,
and the session waits for that close (inotify), not for a fixed pause."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind
from kukeon.daemon import attach
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key
from tests.integration.daemon.test_attach import Attached, cell_url, session, shell

pytestmark = pytest.mark.integration

LINES = 20_000


async def test_attach_gets_the_whole_output_printed_just_before_the_exit(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long fallbacks: only the logger's close can end the session quickly.
    monkeypatch.setattr(attach, "AFTER_EXIT_MAX_SECONDS", 30.0)
    monkeypatch.setattr(attach, "AFTER_EXIT_QUIET_SECONDS", 30.0)
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "loud", [shell(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "loud"), state="Ready")
    async with (
        session(k) as http,
        http.ws_connect(f"{cell_url(k, 'loud')}/attach") as socket,
    ):
        term = Attached(socket)
        # The shell expands ready-$((1+1)): the typed line's echo never matches.
        await term.send("stty -echo; echo ready-$((1+1))\n")
        await term.expect("ready-2")
        loop = asyncio.get_running_loop()
        await term.send(f"seq 1 {LINES}; echo the-end; exit 4\n")
        sent = loop.time()
        assert await term.wait_exit(within=60) == {"exitCode": 4}
        took = loop.time() - sent
    lines = term.output.replace(b"\r\n", b"\n").split(b"\n")
    numbers = [line for line in lines if line.isdigit()]
    assert numbers[-3:] == [str(n).encode() for n in range(LINES - 2, LINES + 1)]
    assert b"the-end" in term.output
    # Ended by the logger's close, not by a fallback.
    assert took < 10, took
