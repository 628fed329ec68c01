"""`kukectl attach` as a user runs it: in a terminal (a pseudo-terminal here), then piped.

kukectl is a subprocess whose stdin, stdout and stderr are the slave side of a pty, made
its controlling terminal by `setsid --ctty` (no Python runs between fork and exec, which
matters next to the in-process kukeond's gRPC threads), so a window-size change on the
pty reaches it as SIGWINCH exactly as in a terminal emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import sys
import termios
from pathlib import Path

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, get_cell

pytestmark = pytest.mark.e2e

KUKECTL = str(Path(sys.executable).with_name("kukectl"))


def set_window(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Terminal:
    """The master side of the pty: what kukectl printed, and typing into it."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = b""

    async def expect(self, text: str, within: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while text.encode() not in self.seen:
            if loop.time() > deadline:
                raise AssertionError(f"{text!r} not seen; the terminal shows {self.seen!r}")
            try:
                self.seen += os.read(self.master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
            except OSError:  # EIO: every slave fd is closed, kukectl is gone
                await asyncio.sleep(0.05)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)


async def test_attach_in_a_terminal_then_detach(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        cell_doc(
            k, "term", [{"id": "sh", "image": k.image.name, "command": "sh", "attachable": True}]
        )
    )
    key = cell_key(k, "term")
    await k.wait_for(Kind.CELL, key, state="Ready")
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    argv = [KUKECTL, "attach", "term", "--realm", k.realm, "--space", "s1", "--stack", "st1"]

    master, slave = pty.openpty()
    os.set_blocking(master, False)
    set_window(slave, 24, 80)
    before = termios.tcgetattr(slave)
    process = await asyncio.create_subprocess_exec(
        "setsid", "--ctty", *argv, stdin=slave, stdout=slave, stderr=slave, env=env
    )
    terminal = Terminal(master)
    try:
        await terminal.expect("detach with Ctrl-] Ctrl-]")
        terminal.type(b"echo hi-$((40+2))\r")
        await terminal.expect("hi-42")
        set_window(slave, 40, 100)  # SIGWINCH to kukectl, which resizes the container's TTY
        # kukectl sends the size when its loop handles the signal: at load that may come
        # after the keys typed next, so ask until the shell has the new size.
        for _ in range(10):
            terminal.type(b"stty size\r")
            with contextlib.suppress(AssertionError):
                await terminal.expect("40 100", within=2)
                break
        else:
            raise AssertionError(f"no resize seen; the terminal shows {terminal.seen!r}")
        terminal.type(b"\x1d")  # a lone Ctrl-] is not a detach...
        await asyncio.sleep(0.3)
        assert process.returncode is None
        terminal.type(b"\x15\x1d\x1d")  # ...two are (after ^U clears the line)
        await terminal.expect("detached from cell/term")
        assert await asyncio.wait_for(process.wait(), 20) == 0
        # kukectl put the terminal back as it found it
        assert termios.tcgetattr(slave) == before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
        os.close(slave)
    cell = await get_cell(k, key)
    assert str(cell.status.state) == "Ready"
    assert cell.status.containers[0].restart_count == 0

    # piped stdin: sent as is; kukectl detaches once the output has gone quiet
    piped = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(piped.communicate(b"echo piped-$((2*3))\n"), 30)
    assert piped.returncode == 0, err.decode()
    assert b"piped-6" in out

    # not attachable: the server's reason, exit code 1
    await k.apply(
        cell_doc(
            k, "plain", [{"id": "p", "image": k.image.name, "command": "sleep", "args": ["3600"]}]
        )
    )
    await k.wait_for(Kind.CELL, cell_key(k, "plain"), state="Ready")
    refused = await asyncio.create_subprocess_exec(
        *[*argv[:2], "plain", *argv[3:]],
        "-c",
        "p",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 1
    assert "container 'p' of cell plain is not attachable" in err.decode()
    assert "Traceback" not in err.decode()
