"""An attachable container's terminal log is rotated (containerLogMaxSize,
containerLogMaxFiles) on real containerd and runc, and an attach session and `logs
--follow` both go across the rotations: every line in order, the exit status once the
logger has closed the log (a rotation's close is no end)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.daemon import attach
from kukeon.runtime.containerd.crilog import rotated_logs
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key
from tests.integration.daemon.test_attach import Attached, cell_url, session, shell

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(container_log_max_size=65536, container_log_max_files=10),
]

LINES = 60_000  # ~470 KB at the terminal: 7 rotations of 64 KiB, none removed (a follower
# that lags by more than the kept files misses what was removed)


def _numbers(lines: list[bytes]) -> list[bytes]:
    """The numbers printed, one a line (the first after the shell's prompt)."""
    last_words = (line.rsplit(b" ", 1)[-1] for line in lines)
    return [word for word in last_words if word.isdigit()]


async def _follow_log(http: aiohttp.ClientSession, url: str, into: list[bytes]) -> None:
    async with http.get(url, params={"container": "a", "follow": "true"}) as stream:
        assert stream.status == 200
        async for line in stream.content:
            into.append(line)
            if b"the-end" in line:
                return


async def test_attach_and_logs_follow_the_terminal_log_across_rotations(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long fallbacks: only the logger's close can end the session quickly.
    monkeypatch.setattr(attach, "AFTER_EXIT_MAX_SECONDS", 30.0)
    monkeypatch.setattr(attach, "AFTER_EXIT_QUIET_SECONDS", 30.0)
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "tty", [shell(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "tty"), state="Ready")
    log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "tty")).log("a")
    followed: list[bytes] = []
    async with (
        session(k) as http,
        http.ws_connect(f"{cell_url(k, 'tty')}/attach") as socket,
    ):
        follower = asyncio.ensure_future(_follow_log(http, f"{cell_url(k, 'tty')}/log", followed))
        term = Attached(socket)
        # The shell expands ready-$((1+1)): the typed line's echo never matches.
        await term.send("stty -echo; echo ready-$((1+1))\n")
        await term.expect("ready-2")
        loop = asyncio.get_running_loop()
        await term.send(f"seq 1 {LINES}; echo the-end; exit 4\n")
        sent = loop.time()
        assert await term.wait_exit(within=90) == {"exitCode": 4}
        took = loop.time() - sent
        await asyncio.wait_for(follower, 30)
    expected = [str(n).encode() for n in range(1, LINES + 1)]
    assert _numbers(term.output.replace(b"\r\n", b"\n").split(b"\n")) == expected
    assert b"the-end" in term.output
    assert took < 20, took  # ended by the logger's close, not by a rotation or a fallback
    assert _numbers([line.rstrip(b"\r\n") for line in followed]) == expected
    # The exited instance's files, moved aside if the shell was started again already.
    logs = [path for path in log.parent.iterdir() if path.name.startswith("a.")]
    rotated = [*rotated_logs(log), *rotated_logs(log.parent / "a.previous.log")]
    assert len(rotated) >= 6
    assert len(logs) <= 20
    assert all(path.stat().st_size <= 65536 for path in logs)
